#pragma once
#include <torch/torch.h>

namespace sine {

// Sinusoidal embedding of integer timesteps [B] -> float32 [B, dim], cos half first (LDM's
// timestep_embedding, diffusers' flip_sin_to_cos=True, freq_shift=0).
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, double max_period = 10000.0);

// SiLU of a temporary that nothing else holds (a norm's output): computed in place when no
// gradient flows through it, since a fresh buffer per activation of a 512x512 UNet costs time.
torch::Tensor silu_on_temporary(torch::Tensor x);

// LDM ResBlock: GroupNorm-SiLU-conv, plus the projected time embedding, then GroupNorm-SiLU-conv,
// added to the (1x1-projected when the width changes) input.
class ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int64_t channels, int64_t emb_channels, int64_t out_channels, int64_t norm_groups);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);

  torch::nn::Sequential in_layers{nullptr};   // 0 GroupNorm, 1 SiLU, 2 conv3x3
  torch::nn::Sequential emb_layers{nullptr};  // 0 SiLU, 1 linear
  torch::nn::Sequential out_layers{nullptr};  // 0 GroupNorm, 1 SiLU, 2 dropout (0 in SD), 3 conv3x3
  torch::nn::Conv2d skip_connection{nullptr};  // only when channels != out_channels

 private:
  torch::nn::GroupNorm in_norm_{nullptr}, out_norm_{nullptr};
  torch::nn::Conv2d in_conv_{nullptr}, out_conv_{nullptr};
  torch::nn::Linear emb_proj_{nullptr};
};
TORCH_MODULE(ResBlock);

// 3x3 stride-2 conv with padding 1.
class DownsampleImpl : public torch::nn::Module {
 public:
  explicit DownsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d op{nullptr};
};
TORCH_MODULE(Downsample);

// Nearest-neighbour x2 (or to `size`, so that odd skip sizes still line up) then a 3x3 conv.
class UpsampleImpl : public torch::nn::Module {
 public:
  explicit UpsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x, c10::optional<std::vector<int64_t>> size = c10::nullopt);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

}  // namespace sine
