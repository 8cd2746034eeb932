#include "models/presets.h"

#include "core/error.h"

namespace sine {

namespace {

ModelConfig tiny_reference() {
  ModelConfig c;
  c.unet.model_channels = 8;
  c.unet.num_heads = 2;
  c.unet.context_dim = 32;
  c.unet.norm_groups = 4;
  c.unet.sample_size = 16;
  c.vae.ch = 8;
  c.vae.norm_groups = 4;
  c.text.width = 32;
  c.text.layers = 2;
  c.text.heads = 4;
  c.text.mlp_width = 128;
  return c;
}

}  // namespace

const char* model_config_preset_names() { return "sd15, tiny"; }

ModelConfig model_config_preset(const std::string& name) {
  if (name == "sd15") return ModelConfig{};
  if (name == "tiny") return tiny_reference();
  throw Error("--config: unknown model config '" + name + "' (known: " + model_config_preset_names() + ")");
}

}  // namespace sine
