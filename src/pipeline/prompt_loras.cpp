#include "pipeline/prompt_loras.h"

#include <filesystem>

#include "core/error.h"

namespace fs = std::filesystem;

namespace sine {

const LoRAWeights& PromptLoras::weights(const std::string& name) {
  if (auto it = cache_.find(name); it != cache_.end()) return it->second;
  if (name.empty() || name.find('/') != std::string::npos || name.find("..") != std::string::npos)
    throw Error("prompt: <lora:" + name + ">: not a file name");
  if (dir_.empty()) throw Error("prompt: <lora:" + name + ">: no LoRA folder to load it from (--lora-dir)");
  fs::path path;
  for (const char* ext : {".safetensors", ""})
    if (fs::is_regular_file(fs::path(dir_) / (name + ext))) {
      path = fs::path(dir_) / (name + ext);
      break;
    }
  if (path.empty()) throw Error("prompt: <lora:" + name + ">: no " + name + ".safetensors in " + dir_);
  return cache_.emplace(name, load_lora(path.string(), model_)).first->second;
}

void PromptLoras::apply(const std::vector<LoraReference>& tags) {
  for (auto& net : attached_) net.remove();
  attached_.clear();
  for (size_t i = 0; i < tags.size(); ++i) {
    const auto& all = weights(tags[i].name);
    // Text-encoder and UNet projections get their own multipliers: one network for each part.
    LoRAWeights text, unet;
    for (const auto& [module, m] : all.modules)
      (module.rfind("cond_stage_model.", 0) == 0 ? text : unet).modules[module] = m;
    const std::string name = "prompt" + std::to_string(i);
    if (!text.modules.empty() && tags[i].te_multiplier != 0)
      attached_.push_back(LoRANetwork::attach(model_, text, name + "_te", tags[i].te_multiplier));
    if (!unet.modules.empty() && tags[i].unet_multiplier != 0)
      attached_.push_back(LoRANetwork::attach(model_, unet, name + "_unet", tags[i].unet_multiplier));
  }
}

}  // namespace sine
