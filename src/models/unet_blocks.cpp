#include "models/unet_blocks.h"

#include <cmath>

namespace sine {

namespace nn = torch::nn;

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2));
}

// LDM's UNet GroupNorms (resnets and the output head) use eps 1e-5.
nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return nn::GroupNorm(nn::GroupNormOptions(groups, channels).eps(1e-5));
}

}  // namespace

torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, double max_period) {
  const int64_t half = dim / 2;
  auto f32 = timesteps.options().dtype(torch::kFloat32);
  // Same float32 operation order as the reference: (-ln(P) * k) / half, then exp.
  auto freqs = torch::exp(torch::arange(half, f32) * (-std::log(max_period)) / static_cast<double>(half));
  auto args = timesteps.to(torch::kFloat32).reshape({-1, 1}) * freqs.unsqueeze(0);
  auto emb = torch::cat({torch::cos(args), torch::sin(args)}, 1);
  if (dim % 2) emb = torch::nn::functional::pad(emb, torch::nn::functional::PadFuncOptions({0, 1}));
  return emb;
}

torch::Tensor silu_on_temporary(torch::Tensor x) {
  if (x.requires_grad()) return torch::silu(x);
  return torch::silu_(x);
}

ResBlockImpl::ResBlockImpl(int64_t channels, int64_t emb_channels, int64_t out_channels, int64_t norm_groups) {
  in_norm_ = group_norm(norm_groups, channels);
  in_conv_ = conv(channels, out_channels, 3);
  in_layers = register_module("in_layers", nn::Sequential(in_norm_, nn::SiLU(), in_conv_));
  emb_proj_ = nn::Linear(emb_channels, out_channels);
  emb_layers = register_module("emb_layers", nn::Sequential(nn::SiLU(), emb_proj_));
  out_norm_ = group_norm(norm_groups, out_channels);
  out_conv_ = conv(out_channels, out_channels, 3);
  out_layers = register_module("out_layers", nn::Sequential(out_norm_, nn::SiLU(), nn::Identity(), out_conv_));
  if (channels != out_channels) skip_connection = register_module("skip_connection", conv(channels, out_channels, 1));
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& emb) {
  auto h = in_conv_(silu_on_temporary(in_norm_(x)));
  auto e = emb_proj_(torch::silu(emb));
  // In-place adds on conv outputs are safe for autograd: conv's backward needs only its inputs.
  h.add_(e.view({e.size(0), e.size(1), 1, 1}));
  h = out_conv_(silu_on_temporary(out_norm_(h)));
  return h.add_(skip_connection ? skip_connection(x) : x);
}

DownsampleImpl::DownsampleImpl(int64_t channels) { op = register_module("op", conv(channels, channels, 3, 2)); }

torch::Tensor DownsampleImpl::forward(const torch::Tensor& x) { return op(x); }

UpsampleImpl::UpsampleImpl(int64_t channels) { conv = register_module("conv", sine::conv(channels, channels, 3)); }

torch::Tensor UpsampleImpl::forward(const torch::Tensor& x, c10::optional<std::vector<int64_t>> size) {
  std::vector<int64_t> out_size = size ? *size : std::vector<int64_t>{x.size(2) * 2, x.size(3) * 2};
  namespace F = torch::nn::functional;
  return conv(F::interpolate(x, F::InterpolateFuncOptions().size(out_size).mode(torch::kNearest)));
}

}  // namespace sine
