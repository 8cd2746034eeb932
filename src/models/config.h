#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sine {

// Hyper-parameters in the original LDM vocabulary. Defaults are SD 1.5; the tiny reference
// model and the shapes-world model differ only in these numbers.
struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  int64_t model_channels = 320;
  std::vector<int64_t> channel_mult{1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  std::vector<int64_t> attention_levels{0, 1, 2};  // levels (0 = highest resolution) with a transformer
  int64_t num_heads = 8;
  int64_t context_dim = 768;
  int64_t norm_groups = 32;
  int64_t transformer_depth = 1;
  int64_t sample_size = 64;     // native latent size (512 px for SD 1.5); not in the tensor shapes
  bool use_checkpoint = false;  // gradient checkpointing of res/transformer blocks during training
};

struct VAEConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t ch = 128;
  std::vector<int64_t> ch_mult{1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  int64_t z_channels = 4;
  int64_t embed_dim = 4;
  int64_t norm_groups = 32;
  double scaling_factor = 0.18215;
  int64_t downsample_factor() const { return int64_t(1) << (ch_mult.size() - 1); }
};

struct TextConfig {
  int64_t vocab_size = 49408;
  int64_t width = 768;
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t mlp_width = 3072;
  int64_t context_length = 77;
  double layer_norm_eps = 1e-5;
  bool quick_gelu = true;  // CLIP's x*sigmoid(1.702x); false = exact GELU
};

struct ModelConfig {
  UNetConfig unet;
  VAEConfig vae;
  TextConfig text;
};

}  // namespace sine
