#include "models/vae.h"

#include "core/error.h"
#include "models/attention_hook.h"

namespace sine {

namespace F = torch::nn::functional;

namespace {

// Every GroupNorm of the LDM VAE uses eps 1e-6 (the UNet's use 1e-5).
constexpr double kNormEps = 1e-6;

// silu(norm(x)). Without autograd (inference: decode, encode for a latent) the SiLU runs in place
// on the normalised copy: at 512x512 the decoder's last levels hold 134-268 MB per tensor in fp32,
// and one such tensor less is the decoder's peak memory minus a third.
torch::Tensor norm_silu(torch::nn::GroupNorm& norm, const torch::Tensor& x) {
  auto h = norm->forward(x);
  return torch::GradMode::is_enabled() ? torch::silu(h) : torch::silu_(h);
}

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(kNormEps));
}

torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  const int64_t padding = kernel == 3 && stride == 1 ? 1 : 0;
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
}

void check_config(const VAEConfig& c) {
  if (c.ch_mult.empty()) throw Error("VAE config: ch_mult must not be empty");
  for (int64_t m : c.ch_mult)
    if (m <= 0 || (c.ch * m) % c.norm_groups != 0)
      throw Error("VAE config: channel count " + std::to_string(c.ch * m) + " (ch " + std::to_string(c.ch) +
                  " x ch_mult) is not a positive multiple of norm_groups " + std::to_string(c.norm_groups));
  if (c.num_res_blocks < 1) throw Error("VAE config: num_res_blocks must be at least 1");
}

}  // namespace

DiagonalGaussian::DiagonalGaussian(const torch::Tensor& moments) {
  auto parts = moments.chunk(2, 1);
  mean = parts[0];
  logvar = parts[1].clamp(-30.0, 20.0);
  std = torch::exp(0.5 * logvar);
}

torch::Tensor DiagonalGaussian::sample(c10::optional<torch::Generator> gen) const {
  return mean + std * torch::randn(mean.sizes(), gen, mean.options());
}

torch::Tensor DiagonalGaussian::kl() const {
  return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum({1, 2, 3});
}

VAEResnetBlockImpl::VAEResnetBlockImpl(int64_t in_channels, int64_t out_channels, int64_t groups) {
  norm1 = register_module("norm1", group_norm(groups, in_channels));
  conv1 = register_module("conv1", conv2d(in_channels, out_channels, 3));
  norm2 = register_module("norm2", group_norm(groups, out_channels));
  conv2 = register_module("conv2", conv2d(out_channels, out_channels, 3));
  if (in_channels != out_channels) nin_shortcut = register_module("nin_shortcut", conv2d(in_channels, out_channels, 1));
}

torch::Tensor VAEResnetBlockImpl::forward(const torch::Tensor& x) {
  auto h = conv1->forward(norm_silu(norm1, x));
  h = conv2->forward(norm_silu(norm2, h));
  if (!torch::GradMode::is_enabled()) return h.add_(nin_shortcut ? nin_shortcut->forward(x) : x);
  return (nin_shortcut ? nin_shortcut->forward(x) : x) + h;
}

VAEAttentionImpl::VAEAttentionImpl(int64_t channels, int64_t groups) {
  norm = register_module("norm", group_norm(groups, channels));
  q = register_module("q", conv2d(channels, channels, 1));
  k = register_module("k", conv2d(channels, channels, 1));
  v = register_module("v", conv2d(channels, channels, 1));
  proj_out = register_module("proj_out", conv2d(channels, channels, 1));
}

torch::Tensor VAEAttentionImpl::forward(const torch::Tensor& x) {
  const auto b = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
  auto h = norm->forward(x);
  // [B, C, H, W] -> [B, HW, C]: one token per pixel, one head over all channels.
  auto tokens = [&](const torch::Tensor& t) { return t.flatten(2).transpose(1, 2); };
  auto out = multi_head_attention(tokens(q->forward(h)), tokens(k->forward(h)), tokens(v->forward(h)), 1);
  out = out.transpose(1, 2).reshape({b, c, height, width});
  return x + proj_out->forward(out);
}

VAEDownsampleImpl::VAEDownsampleImpl(int64_t channels) {
  conv = register_module("conv", conv2d(channels, channels, 3, 2));
}

torch::Tensor VAEDownsampleImpl::forward(const torch::Tensor& x) {
  return conv->forward(F::pad(x, F::PadFuncOptions({0, 1, 0, 1})));
}

VAEUpsampleImpl::VAEUpsampleImpl(int64_t channels) {
  conv = register_module("conv", conv2d(channels, channels, 3));
}

torch::Tensor VAEUpsampleImpl::forward(const torch::Tensor& x) {
  auto up = F::interpolate(x, F::InterpolateFuncOptions()
                                  .scale_factor(std::vector<double>{2.0, 2.0})
                                  .mode(torch::kNearest));
  return conv->forward(up);
}

VAELevelImpl::VAELevelImpl(int64_t in_channels, int64_t out_channels, int64_t num_blocks, int64_t groups,
                           bool with_downsample, bool with_upsample) {
  block = register_module("block", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_blocks; ++i)
    block->push_back(VAEResnetBlock(i == 0 ? in_channels : out_channels, out_channels, groups));
  if (with_downsample) downsample = register_module("downsample", VAEDownsample(out_channels));
  if (with_upsample) upsample = register_module("upsample", VAEUpsample(out_channels));
}

torch::Tensor VAELevelImpl::forward(torch::Tensor x) {
  for (const auto& b : *block) x = b->as<VAEResnetBlock>()->forward(x);
  if (downsample) x = downsample->forward(x);
  if (upsample) x = upsample->forward(x);
  return x;
}

VAEMidBlockImpl::VAEMidBlockImpl(int64_t channels, int64_t groups) {
  block_1 = register_module("block_1", VAEResnetBlock(channels, channels, groups));
  attn_1 = register_module("attn_1", VAEAttention(channels, groups));
  block_2 = register_module("block_2", VAEResnetBlock(channels, channels, groups));
}

torch::Tensor VAEMidBlockImpl::forward(const torch::Tensor& x) {
  return block_2->forward(attn_1->forward(block_1->forward(x)));
}

VAEEncoderImpl::VAEEncoderImpl(const VAEConfig& c) {
  check_config(c);
  const auto levels = static_cast<int64_t>(c.ch_mult.size());
  conv_in = register_module("conv_in", conv2d(c.in_channels, c.ch, 3));
  down = register_module("down", torch::nn::ModuleList());
  int64_t channels = c.ch;
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t out = c.ch * c.ch_mult[i];
    down->push_back(VAELevel(channels, out, c.num_res_blocks, c.norm_groups, i + 1 < levels, false));
    channels = out;
  }
  mid = register_module("mid", VAEMidBlock(channels, c.norm_groups));
  norm_out = register_module("norm_out", group_norm(c.norm_groups, channels));
  conv_out = register_module("conv_out", conv2d(channels, 2 * c.z_channels, 3));
}

torch::Tensor VAEEncoderImpl::forward(const torch::Tensor& x, const VAETrace& trace) {
  auto h = conv_in->forward(x);
  if (trace) trace("encoder.conv_in", h);
  for (size_t i = 0; i < down->size(); ++i) {
    h = down[i]->as<VAELevel>()->forward(h);
    if (trace) trace("encoder.down_blocks." + std::to_string(i), h);
  }
  h = mid->forward(h);
  if (trace) trace("encoder.mid_block", h);
  h = conv_out->forward(norm_silu(norm_out, h));
  if (trace) trace("encoder.conv_out", h);
  return h;
}

VAEDecoderImpl::VAEDecoderImpl(const VAEConfig& c) {
  check_config(c);
  const auto levels = static_cast<int64_t>(c.ch_mult.size());
  int64_t channels = c.ch * c.ch_mult.back();
  conv_in = register_module("conv_in", conv2d(c.z_channels, channels, 3));
  mid = register_module("mid", VAEMidBlock(channels, c.norm_groups));
  // Built from the lowest resolution up, then stored so that up.N sits at index N.
  std::vector<VAELevel> levels_low_to_high;
  for (int64_t i = levels - 1; i >= 0; --i) {
    const int64_t out = c.ch * c.ch_mult[i];
    levels_low_to_high.push_back(VAELevel(channels, out, c.num_res_blocks + 1, c.norm_groups, false, i > 0));
    channels = out;
  }
  up = register_module("up", torch::nn::ModuleList());
  for (auto it = levels_low_to_high.rbegin(); it != levels_low_to_high.rend(); ++it) up->push_back(*it);
  norm_out = register_module("norm_out", group_norm(c.norm_groups, channels));
  conv_out = register_module("conv_out", conv2d(channels, c.out_channels, 3));
}

torch::Tensor VAEDecoderImpl::forward(const torch::Tensor& z, const VAETrace& trace) {
  auto h = conv_in->forward(z);
  if (trace) trace("decoder.conv_in", h);
  h = mid->forward(h);
  if (trace) trace("decoder.mid_block", h);
  const auto levels = static_cast<int64_t>(up->size());
  for (int64_t i = levels - 1; i >= 0; --i) {
    h = up[i]->as<VAELevel>()->forward(h);
    if (trace) trace("decoder.up_blocks." + std::to_string(levels - 1 - i), h);
  }
  h = conv_out->forward(norm_silu(norm_out, h));
  if (trace) trace("decoder.conv_out", h);
  return h;
}

AutoencoderKLImpl::AutoencoderKLImpl(const VAEConfig& config) : config_(config) {
  encoder = register_module("encoder", VAEEncoder(config));
  decoder = register_module("decoder", VAEDecoder(config));
  quant_conv = register_module("quant_conv", conv2d(2 * config.z_channels, 2 * config.embed_dim, 1));
  post_quant_conv = register_module("post_quant_conv", conv2d(config.embed_dim, config.z_channels, 1));
}

torch::Tensor AutoencoderKLImpl::encode_moments(const torch::Tensor& image, const VAETrace& trace) {
  if (image.dim() != 4 || image.size(1) != config_.in_channels)
    throw Error("VAE encode: expected an image [B, " + std::to_string(config_.in_channels) + ", H, W], got " +
                c10::str(image.sizes()));
  const int64_t f = config_.downsample_factor();
  if (image.size(2) % f != 0 || image.size(3) % f != 0)
    throw Error("VAE encode: image size " + std::to_string(image.size(2)) + "x" + std::to_string(image.size(3)) +
                " is not a multiple of " + std::to_string(f));
  auto moments = quant_conv->forward(encoder->forward(image, trace));
  if (trace) trace("quant_conv", moments);
  return moments;
}

DiagonalGaussian AutoencoderKLImpl::encode(const torch::Tensor& image, const VAETrace& trace) {
  return DiagonalGaussian(encode_moments(image, trace));
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z, const VAETrace& trace) {
  if (z.dim() != 4 || z.size(1) != config_.embed_dim)
    throw Error("VAE decode: expected a latent [B, " + std::to_string(config_.embed_dim) + ", h, w], got " +
                c10::str(z.sizes()));
  auto h = post_quant_conv->forward(z);
  if (trace) trace("post_quant_conv", h);
  return decoder->forward(h, trace);
}

}  // namespace sine
