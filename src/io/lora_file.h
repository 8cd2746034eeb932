#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "io/diffusers_keys.h"

// LoRA weights as data and as files: the three key layouts other tools read and write. The
// adapters themselves (attaching them to a model) are models/lora.h.
namespace sine {

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

// Kohya module name ("lora_unet_..."/"lora_te_...") of an LDM module name.
std::string kohya_module_name(const std::string& ldm_module, const LayoutGeometry& geometry);

// Saves/loads LoRA weights as .safetensors in one of the key layouts (metadata added as given).
void save_lora(const std::string& path, const LoRAWeights& weights, LoRAKeyFormat format,
               const LayoutGeometry& geometry, const std::map<std::string, std::string>& metadata = {});
// Reads any of the layouts; `known_modules` as for lora_from_keys (errors name the file).
LoRAWeights load_lora_file(const std::string& path, const LayoutGeometry& geometry,
                           const std::vector<std::string>& known_modules);

}  // namespace sine
