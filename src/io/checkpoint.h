#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "io/checkpoint_config.h"
#include "io/diffusers_keys.h"
#include "models/config.h"

namespace sine {

// A model as the modules want it, whatever layout the user had.
struct CheckpointData {
  // Canonical (original LDM) names, CPU, the file's dtype: read-only views over the memory-mapped
  // files (SafeTensors::view), so loading a model copies each tensor once, into its parameter.
  std::map<std::string, torch::Tensor> tensors;
  ModelConfig config;
  std::string layout;  // "ldm" or "diffusers"
  std::string source;  // the path given
  std::map<std::string, std::string> metadata;
  std::vector<std::string> dropped;  // file keys that are not model weights (EMA copies, schedule buffers, position_ids)
};

// Loads a single-file `.safetensors` (original LDM layout) or a diffusers folder (unet/, vae/,
// text_encoder/, each a `.safetensors` or `.fp16.safetensors` with its config.json). Keys that
// are not model weights are dropped; a component with no tensors at all is a sine::Error.
// The config is inferred from the shapes, then completed by, in rising priority: a sidecar
// JSON next to a single file (<name>.json, <name>.safetensors.json or config.json, in the
// format of ConfigOverrides::from_file), the diffusers config.json files, the file's
// `sine.config` metadata, and `overrides`.
CheckpointData load_checkpoint(const std::string& path, const ConfigOverrides& overrides = {});

// The sidecar load_checkpoint would read for a single file, or "" if there is none.
std::string find_sidecar(const std::string& checkpoint_file);

// True for keys of a single-file checkpoint that are not weights of the three modules.
bool is_dropped_key(const std::string& key);

// Writes the single-file layout with the full config in the `sine.config` metadata (so heads and
// groups travel with the weights). `config` must agree with the tensor shapes.
void save_checkpoint(const std::string& path, const std::map<std::string, torch::Tensor>& canonical,
                     const ModelConfig& config, std::map<std::string, std::string> metadata = {});

// Writes a diffusers folder: unet/, vae/, text_encoder/ (weights + config.json), a DDIM
// scheduler config with the SD 1.x schedule, and model_index.json (no tokenizer folder).
void save_diffusers(const std::string& dir, const std::map<std::string, torch::Tensor>& canonical,
                    const ModelConfig& config, std::map<std::string, std::string> metadata = {});

}  // namespace sine
