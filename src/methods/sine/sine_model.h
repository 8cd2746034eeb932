#pragma once
#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>

#include "io/safetensors.h"
#include "methods/sine/positional_grid.h"
#include "methods/sine/sine_finetune.h"
#include "pipeline/pipeline.h"

// The saved SINE fine-tune: a compact .safetensors holding only what differs from the base model.
//   storage "delta-f16": (fine-tuned − base) in fp16 for every UNet / text-encoder tensor that
//     changed, under its checkpoint key (an lr-1e-6 update survives fp16 as a delta; it would not
//     as fp16 weights);
//   storage "lora": the LoRA adapters in sine's native key layout.
// Metadata (all strings, "sine.*"): kind, base_model, base_size, base_fingerprint (hash of the
// base UNet + text weights rounded to fp16, checked when loading), prompt, class, template, mode,
// steps, lr, seed, grid (JSON: channels, size, interpolation) or "none", lora_rank, storage,
// training_size.
namespace sine {

struct SineModelInfo {
  std::string base_model;        // the base model path as given at fine-tuning
  int64_t base_size = -1;        // bytes of the base file (-1: not a file)
  std::string base_fingerprint;  // weights_fingerprint() of the base
  std::string prompt, class_word, prompt_template;
  SineMode mode = SineMode::Whole;
  int64_t steps = 0;
  double lr = 0;
  uint64_t seed = 0;
  std::optional<PositionalGridConfig> grid;
  int64_t lora_rank = 0;
  std::string storage = "delta-f16";
  int64_t training_size = 0;

  std::map<std::string, std::string> to_metadata() const;
  static SineModelInfo from_metadata(const std::map<std::string, std::string>& metadata, const std::string& source);
};

// A 16-hex-digit hash of the UNet and text-encoder weights (rounded to fp16, so a base loaded
// in fp32 or fp16 hashes the same).
std::string weights_fingerprint(StableDiffusion& model);

// Writes the fine-tune of `finetuner` (atomically). base_model: the base's path for the metadata.
void save_sine_model(const std::string& path, SineFinetuner& finetuner, const std::string& base_model);

// Applies a saved fine-tune to `pipeline`, which must hold its base model (checked by
// fingerprint unless check_base is false). Returns the file's info.
SineModelInfo apply_sine_model(Pipeline& pipeline, const std::string& path, bool check_base = true);
// The same from a file already open (named `path` in errors).
SineModelInfo apply_sine_model(Pipeline& pipeline, const SafeTensors& file, const std::string& path,
                               bool check_base = true);

// The metadata alone (e.g. the base model a fine-tune names). Edits load fine-tunes as
// methods/sine/sine_branches.h's SineBranches, on a copy of the loaded base.
SineModelInfo read_sine_model_info(const std::string& path);

}  // namespace sine
