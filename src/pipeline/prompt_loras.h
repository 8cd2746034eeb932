#pragma once
#include <map>
#include <string>
#include <vector>

#include "models/lora.h"
#include "pipeline/prompt_syntax.h"

// AUTOMATIC1111's <lora:NAME:TE[:UNET]> prompt tags: NAME.safetensors (kohya, diffusers or PEFT
// keys, as load_lora reads them) from one folder, attached to a model for one generation with the
// text-encoder multiplier on the text projections and the UNet multiplier on the UNet's.
// Hand `apply` to GenerateOptions::apply_loras.
namespace sine {

class PromptLoras {
 public:
  PromptLoras(StableDiffusion model, std::string dir) : model_(std::move(model)), dir_(std::move(dir)) {}
  ~PromptLoras() { apply({}); }
  PromptLoras(const PromptLoras&) = delete;
  PromptLoras& operator=(const PromptLoras&) = delete;

  // Detaches what the previous call attached, then attaches `tags` (an empty list only detaches).
  // A missing or unreadable file is a sine::Error naming the tag. Files are read once and kept.
  void apply(const std::vector<LoraReference>& tags);
  // For GenerateOptions::apply_loras.
  std::function<void(const std::vector<LoraReference>&)> callback() {
    return [this](const std::vector<LoraReference>& tags) { apply(tags); };
  }
  size_t attached() const { return attached_.size(); }

 private:
  const LoRAWeights& weights(const std::string& name);
  StableDiffusion model_;
  std::string dir_;
  std::map<std::string, LoRAWeights> cache_;
  std::vector<LoRANetwork> attached_;
};

}  // namespace sine
