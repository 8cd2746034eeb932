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

// The smallest model of the SD 1.x layout: every key an SD 1.5 checkpoint has, in a file of ~100 KB
// (the fuzzers' seed checkpoint, tests that need only the layout).
ModelConfig micro() {
  ModelConfig c;
  c.unet.model_channels = 4;
  c.unet.channel_mult = {1, 2};
  c.unet.attention_levels = {0, 1};
  c.unet.num_res_blocks = 1;
  c.unet.num_heads = 1;
  c.unet.context_dim = 8;
  c.unet.norm_groups = 2;
  c.unet.sample_size = 8;
  c.vae.ch = 4;
  c.vae.ch_mult = {1, 2};
  c.vae.num_res_blocks = 1;
  c.vae.norm_groups = 2;
  c.text.vocab_size = 64;
  c.text.width = 8;
  c.text.layers = 1;
  c.text.heads = 1;
  c.text.mlp_width = 16;
  return c;
}

}  // namespace

const char* model_config_preset_names() { return "sd15, tiny, micro"; }

ModelConfig model_config_preset(const std::string& name) {
  if (name == "sd15") return ModelConfig{};
  if (name == "tiny") return tiny_reference();
  if (name == "micro") return micro();
  throw Error("config: unknown model config '" + name + "' (known: " + model_config_preset_names() + ")");
}

}  // namespace sine
