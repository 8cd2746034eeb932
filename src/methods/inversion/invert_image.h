#pragma once
#include <torch/torch.h>

#include <limits>
#include <string>

#include "methods/inversion/inversion_file.h"
#include "methods/stage.h"
#include "pipeline/pipeline.h"

// Inverting a real image under its caption, as the null-text inversion notebook does: encode it,
// DDIM-invert it at guidance 1 (z*_0..z*_T), optionally optimise the null-text embeddings φ_t so
// that guided sampling from z*_T rebuilds it, and measure every reconstruction's PSNR.
namespace sine {

struct InvertConfig {
  std::string prompt;           // the image's caption
  int64_t steps = 50;
  std::string schedule = "null-text";
  double cfg_scale = 7.5;       // the reconstruction check's and null-text's guidance
  bool null_text = false;       // optimise φ_t per step (null-text inversion)
  int64_t inner_steps = 10;     // Adam iterations per step
  double early_stop = 1e-5;     // + i·2e-5

  void validate() const;  // errors name the field: "steps: must be in [1, 1000] (got 0)"
};

struct InvertResult {
  Inversion inversion;
  torch::Tensor reconstruction;  // u8 [H,W,3]: guidance 1, or null-text embeddings at cfg_scale
  double psnr_vae = 0;           // the VAE round trip (the ceiling)
  double psnr_guidance1 = 0;     // DDIM from z*_T at guidance 1
  double psnr_guidance = 0;      // ... at cfg_scale (what null-text repairs)
  double psnr_null_text = std::numeric_limits<double>::quiet_NaN();
  int64_t adam_steps = 0;
};

// `image` u8 [H,W,3] at a size the model takes. `on_step` may throw to cancel.
InvertResult invert_image(Pipeline& pipe, const torch::Tensor& image, const InvertConfig& config, bool progress = true,
                          const StageCallback& on_stage = {}, const StepCallback& on_step = {});

}  // namespace sine
