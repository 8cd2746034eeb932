#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/config.h"

namespace sine {

// Prefixes of the three components in the canonical (original single-file LDM) layout.
inline const std::string kUNetPrefix = "model.diffusion_model.";
inline const std::string kVAEPrefix = "first_stage_model.";
inline const std::string kTextPrefix = "cond_stage_model.transformer.";

// What the key mapping needs besides the names: the original layout numbers UNet blocks
// consecutively (so indices depend on res-blocks per level), puts an up-level's upsampler in
// slot 1 or 2 depending on whether that level has attention, and numbers the VAE decoder's
// levels in reverse.
struct LayoutGeometry {
  int64_t unet_levels = 4;
  int64_t unet_num_res_blocks = 2;
  std::vector<int64_t> unet_attention_levels{0, 1, 2};
  int64_t vae_levels = 4;

  static LayoutGeometry of(const ModelConfig& config);
  // Read from the block indices present in a key list; components absent from it keep the
  // SD 1.x defaults. Diffusers keys carry their folder prefix ("unet.", "vae.", "text_encoder.").
  static LayoutGeometry from_diffusers_keys(const std::vector<std::string>& keys);
  static LayoutGeometry from_original_keys(const std::vector<std::string>& keys);
};

// Diffusers key (prefixed with its folder: "unet.", "vae.", "text_encoder.") to the canonical
// key and back. Keys without a counterpart (another architecture, a typo) throw sine::Error.
std::string diffusers_to_original(const std::string& diffusers_key, const LayoutGeometry& geometry = {});
std::string original_to_diffusers(const std::string& original_key, const LayoutGeometry& geometry = {});
// The same, returning "" for a key without a counterpart.
std::string try_diffusers_to_original(const std::string& diffusers_key, const LayoutGeometry& geometry = {});
std::string try_original_to_diffusers(const std::string& original_key, const LayoutGeometry& geometry = {});

// Tensor layout differences between the two, addressed by the canonical key: the VAE mid-block
// attention q/k/v/proj_out weights are 1x1 convs [C, C, 1, 1] in the original and linears
// [C, C] in diffusers. Other tensors pass unchanged. Accepts either form as input, so
// single-file checkpoints written with linear-shaped VAE attention also normalise.
bool is_vae_attention_projection(const std::string& original_key);
torch::Tensor to_original_tensor(const std::string& original_key, const torch::Tensor& tensor);
torch::Tensor to_diffusers_tensor(const std::string& original_key, const torch::Tensor& tensor);
std::vector<int64_t> to_original_shape(const std::string& original_key, const std::vector<int64_t>& shape);
std::vector<int64_t> to_diffusers_shape(const std::string& original_key, const std::vector<int64_t>& shape);

}  // namespace sine
