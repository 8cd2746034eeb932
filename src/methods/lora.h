#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "io/diffusers_keys.h"
#include "models/lora_linear.h"
#include "models/stable_diffusion.h"
#include "train/ema.h"

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

// One adapted projection: its tensors and its own scale (kohya's alpha / rank; 1 otherwise).
struct LoRAModule {
  torch::Tensor down, up;  // [rank, in], [out, rank]
  double scale = 1.0;
};

// LoRA weights detached from any model, addressed by the LDM module name of the projection,
// e.g. "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q" or
// "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj".
struct LoRAWeights {
  std::map<std::string, LoRAModule> modules;
  int64_t rank() const;  // of the first module (0 when empty)
  int64_t num_parameters() const;
};

// The key layouts other tools read and write:
//   native:    <ldm module>.lora_down, <ldm module>.lora_up, <ldm module>.alpha (sine's own)
//   kohya:     lora_unet_<diffusers path with _>.lora_down.weight / .lora_up.weight / .alpha,
//              lora_te_text_model_encoder_layers_0_self_attn_q_proj.* (A1111, ComfyUI, kohya-ss)
//   diffusers: unet.<diffusers path>.lora_A.weight / .lora_B.weight, text_encoder.<path>.lora_*
//              (PEFT layout of diffusers >= 0.21; per-module scales are folded into lora_B).
//              Import also reads diffusers 0.20's processor.to_q_lora.down.weight and
//              lora_linear_layer.down.weight (what the official SingleInsert code saves).
enum class LoRAKeyFormat { Native, Kohya, Diffusers };
LoRAKeyFormat parse_lora_key_format(const std::string& name);  // "native", "kohya", "diffusers"
const char* lora_key_format_name(LoRAKeyFormat format);

std::map<std::string, torch::Tensor> lora_to_keys(const LoRAWeights& weights, LoRAKeyFormat format,
                                                  const LayoutGeometry& geometry);
// Detects the layout from the keys; `known_modules` (the model's adaptable projections, LDM names)
// resolves kohya's underscore names. Unknown keys are a sine::Error naming `source` and the key.
LoRAWeights lora_from_keys(const std::map<std::string, torch::Tensor>& tensors, const LayoutGeometry& geometry,
                           const std::vector<std::string>& known_modules, const std::string& source = "LoRA");
LoRAKeyFormat detect_lora_key_format(const std::map<std::string, torch::Tensor>& tensors);

// The LDM module names of every adaptable projection of `model` (UNet and/or text encoder).
std::vector<std::string> lora_target_modules(StableDiffusion& model, bool unet = true, bool text_encoder = true);
// Kohya module name ("lora_unet_..."/"lora_te_...") of an LDM module name.
std::string kohya_module_name(const std::string& ldm_module, const LayoutGeometry& geometry);

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
  NamedTensors parameters() const;
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

// Saves/loads LoRA weights as .safetensors in one of the key layouts (metadata added as given).
void save_lora(const std::string& path, const LoRAWeights& weights, LoRAKeyFormat format,
               const LayoutGeometry& geometry, const std::map<std::string, std::string>& metadata = {});
LoRAWeights load_lora(const std::string& path, StableDiffusion& model);

}  // namespace sine
