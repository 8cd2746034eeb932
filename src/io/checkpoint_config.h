#pragma once
#include <torch/torch.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/config.h"

namespace sine {

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

// Reads the hyper-parameters the canonical tensors' shapes determine: UNet channels, levels,
// res-blocks, attention levels, context width, transformer depth; VAE channels, levels,
// res-blocks, latent widths; text width, layers, MLP width, vocab and context length. What the
// shapes cannot tell keeps the SD 1.x defaults (UNet 8 heads, 32 groups; text heads width/64,
// or 0 = unknown when the width is not a multiple of 64). Components with no tensors keep their
// defaults; a tensor the inference needs missing from a present component is a sine::Error
// naming `source` and the key.
ModelConfig infer_config(const ShapeMap& canonical_shapes, const std::string& source = "checkpoint");
ModelConfig infer_config(const std::map<std::string, torch::Tensor>& canonical,
                         const std::string& source = "checkpoint");

// Config values in the LDM vocabulary of models/config.h, as JSON with the struct field names:
// {"unet": {"num_heads": 2, "norm_groups": 4}, "vae": {"norm_groups": 4}, "text": {"heads": 4}}.
// Used for --model-config on the command line, the `sine.config` metadata of our own files, and as
// the common form the other config formats are converted to.
struct ConfigOverrides {
  nlohmann::json values = nlohmann::json::object();
  std::string source;  // where the values came from, for error messages

  bool empty() const;

  // Strict: unknown sections or fields and wrongly typed values are a sine::Error naming `source`.
  static ConfigOverrides parse(const nlohmann::json& json, const std::string& source);
  static ConfigOverrides parse_text(const std::string& json_text, const std::string& source);
  // A JSON file in this vocabulary, or a sidecar like reference/tiny/tiny_config.json (sections
  // "ldm_equivalent" and/or "diffusers" with "unet"/"vae"/"text"; other sections are ignored).
  static ConfigOverrides from_file(const std::string& path);
  // Converters from the other formats. Fields unrelated to the architecture are ignored; values
  // this code cannot represent (per-block head counts, an unknown activation) are errors.
  static ConfigOverrides from_ldm_equivalent(const nlohmann::json& ldm, const std::string& source);
  static ConfigOverrides from_diffusers_unet(const nlohmann::json& config, const std::string& source);
  static ConfigOverrides from_diffusers_vae(const nlohmann::json& config, const std::string& source);
  static ConfigOverrides from_transformers_text(const nlohmann::json& config, const std::string& source);
  // Every field of `config`.
  static ConfigOverrides of(const ModelConfig& config, const std::string& source = "config");

  // Fields of `higher` replace those here.
  ConfigOverrides merged_with(const ConfigOverrides& higher) const;
  // Sets the fields on `config`. A field the tensor shapes determine must equal the value
  // already in `config` (inferred from them): a mismatch is a sine::Error naming the field,
  // both values and `source`.
  void apply_to(ModelConfig& config) const;
};

// Checks what the shapes cannot: head counts divide attention widths, group counts divide
// channels. The error names `source` and says how to give the right value.
void validate_config(const ModelConfig& config, const std::string& source);

// The config.json files of a diffusers folder.
nlohmann::json diffusers_unet_config(const ModelConfig& config);
nlohmann::json diffusers_vae_config(const ModelConfig& config);
nlohmann::json transformers_text_config(const ModelConfig& config);

}  // namespace sine
