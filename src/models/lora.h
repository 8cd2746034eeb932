#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "io/lora_file.h"
#include "models/lora_linear.h"
#include "models/stable_diffusion.h"

// LoRA adapters on a model: which projections take them, attaching, training, merging. The
// weights' file layouts are io/lora_file.h.
namespace sine {

// LoRA over the engine's AdaptableLinear projections: UNet attention to_q/to_k/to_v/to_out.0
// (attn1 and attn2 of every transformer block) and CLIP text q_proj/k_proj/v_proj/out_proj.
// ΔW = scale · up · down with down [rank, in], up [out, rank] (diffusers 0.20 / SingleInsert:
// down ~ N(0, std = 1/rank), up = 0, so a fresh network leaves the model unchanged).
struct LoRAConfig {
  int64_t rank = 4;
  bool unet = true;
  bool text_encoder = true;
  double scale = 1.0;
  std::string name = "lora";  // the adapters' owner name; two attached networks need different names
  uint64_t seed = 0;          // of the N(0, 1/rank) draw of `down`
};

// The LDM module names of every adaptable projection of `model` (UNet and/or text encoder).
std::vector<std::string> lora_target_modules(StableDiffusion& model, bool unet = true, bool text_encoder = true);
// A set of adapters attached to a model. Several networks may be attached at once: their
// updates add up, each with its own scale. The network owns its tensors (the adapters hold
// handles to the same storage), so training `parameters()` trains the attached adapters.
class LoRANetwork {
 public:
  LoRANetwork() = default;
  // Fresh adapters (up = 0) on every projection selected by `config`.
  static LoRANetwork attach(StableDiffusion& model, const LoRAConfig& config);
  // Adapters with given weights (a trained concept, an imported file); tensors are copied.
  static LoRANetwork attach(StableDiffusion& model, const LoRAWeights& weights, const std::string& name,
                            double scale = 1.0);

  const std::string& name() const { return name_; }
  double scale() const { return scale_; }
  bool attached() const { return attached_; }
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }

  // The trainable tensors, "<ldm module>.lora_down" / ".lora_up" (requires_grad set).
  std::vector<std::pair<std::string, torch::Tensor>> parameters() const;
  // Copies of the weights (detached).
  LoRAWeights weights() const;
  // The network's own scale multiplies every module's scale.
  void set_scale(double scale);
  // Removes the adapters from the model (the weights stay in this object; attach again with weights()).
  void remove();
  // Folds scale · up · down into each base weight and removes the adapters.
  void merge();

 private:
  struct Entry {
    std::string module;
    AdaptableLinear linear{nullptr};
    LoRAModule lora;
  };
  static LoRANetwork attach_entries(StableDiffusion& model, std::vector<Entry> entries, const std::string& name,
                                    double scale);
  LoRAAdapter* find_adapter(Entry& entry);
  std::vector<Entry> entries_;
  std::string name_;
  double scale_ = 1.0;
  bool attached_ = false;
};

// Marks every parameter of `module` as not requiring gradients (a frozen base model).
void freeze(torch::nn::Module& module);

// load_lora_file with this model's geometry and projections.
LoRAWeights load_lora(const std::string& path, StableDiffusion& model);

}  // namespace sine
