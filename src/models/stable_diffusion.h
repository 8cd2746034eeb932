#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

#include "models/clip_text.h"
#include "models/config.h"
#include "models/unet.h"
#include "models/vae.h"

namespace sine {

// The three networks of SD 1.x under the single-file LDM names, so that named_parameters() equals
// the checkpoint keys: model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.*.
class StableDiffusionImpl : public torch::nn::Module {
 public:
  // Called with each network and its checkpoint prefix as soon as it is built, before the next one
  // is: a loader that frees a network's random weights there holds one network at a time.
  using OnBuilt = std::function<void(torch::nn::Module& network, const std::string& prefix)>;
  explicit StableDiffusionImpl(const ModelConfig& config, const OnBuilt& on_built = {});

  ModelConfig config;
  UNetModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  CLIPTextModel text_encoder{nullptr};

  static constexpr const char* kUNetPrefix = "model.diffusion_model.";
  static constexpr const char* kVAEPrefix = "first_stage_model.";
  static constexpr const char* kTextPrefix = "cond_stage_model.transformer.";
};
TORCH_MODULE(StableDiffusion);

}  // namespace sine
