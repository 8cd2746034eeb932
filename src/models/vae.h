#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

#include "models/config.h"

namespace sine {

// Receives named activations while a VAE runs (for debugging against reference intermediates).
// Names follow the diffusers vocabulary of the reference fixtures: "encoder.conv_in",
// "encoder.down_blocks.0" (after its downsampler), "encoder.mid_block", "encoder.conv_out",
// "quant_conv", "post_quant_conv", "decoder.conv_in", "decoder.mid_block",
// "decoder.up_blocks.0" (after its upsampler; block 0 is the lowest resolution), "decoder.conv_out".
using VAETrace = std::function<void(const std::string& name, const torch::Tensor& activation)>;

// The VAE's posterior q(z|x) = N(mean, exp(logvar)) over the unscaled latent.
struct DiagonalGaussian {
  torch::Tensor mean, logvar, std;  // logvar clamped to [-30, 20]

  explicit DiagonalGaussian(const torch::Tensor& moments);  // [B, 2*embed_dim, h, w]
  torch::Tensor sample(c10::optional<torch::Generator> gen = c10::nullopt) const;
  torch::Tensor mode() const { return mean; }
  // KL(q || N(0, I)) summed over all but the batch dimension: [B].
  torch::Tensor kl() const;
};

// GroupNorm -> SiLU -> conv3x3, twice, plus a 1x1 nin_shortcut when the channel count changes.
class VAEResnetBlockImpl : public torch::nn::Module {
 public:
  VAEResnetBlockImpl(int64_t in_channels, int64_t out_channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
};
TORCH_MODULE(VAEResnetBlock);

// Single-head spatial self-attention with 1x1-conv projections (LDM's AttnBlock).
class VAEAttentionImpl : public torch::nn::Module {
 public:
  VAEAttentionImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(VAEAttention);

// Asymmetric (right/bottom) zero pad, then a stride-2 3x3 conv without padding, as LDM does.
class VAEDownsampleImpl : public torch::nn::Module {
 public:
  explicit VAEDownsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(VAEDownsample);

class VAEUpsampleImpl : public torch::nn::Module {
 public:
  explicit VAEUpsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(VAEUpsample);

// One resolution level: `block` resnets, then `downsample` (encoder) or `upsample` (decoder),
// either of which is absent at the level that does not change resolution.
class VAELevelImpl : public torch::nn::Module {
 public:
  VAELevelImpl(int64_t in_channels, int64_t out_channels, int64_t num_blocks, int64_t groups,
               bool downsample, bool upsample);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::ModuleList block{nullptr};
  VAEDownsample downsample{nullptr};
  VAEUpsample upsample{nullptr};
};
TORCH_MODULE(VAELevel);

class VAEMidBlockImpl : public torch::nn::Module {
 public:
  VAEMidBlockImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);

  VAEResnetBlock block_1{nullptr}, block_2{nullptr};
  VAEAttention attn_1{nullptr};
};
TORCH_MODULE(VAEMidBlock);

// image [B, in_channels, H, W] -> [B, 2*z_channels, H/f, W/f] (mean and logvar before quant_conv).
class VAEEncoderImpl : public torch::nn::Module {
 public:
  explicit VAEEncoderImpl(const VAEConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const VAETrace& trace = {});

  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down{nullptr};
  VAEMidBlock mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VAEEncoder);

// [B, z_channels, h, w] -> image. `up.N` is numbered like the encoder's levels (0 = full
// resolution), so it runs from the last index down to 0.
class VAEDecoderImpl : public torch::nn::Module {
 public:
  explicit VAEDecoderImpl(const VAEConfig& config);
  torch::Tensor forward(const torch::Tensor& z, const VAETrace& trace = {});

  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  VAEMidBlock mid{nullptr};
  torch::nn::ModuleList up{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VAEDecoder);

// LDM's AutoencoderKL, submodules named like the `first_stage_model.` checkpoint keys. Works in
// unscaled latent space: multiplying by scaling_factor() is the pipeline's job.
class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const VAEConfig& config = {});

  // image [B, 3, H, W] in [-1, 1]; moments = quant_conv(encoder(image)).
  torch::Tensor encode_moments(const torch::Tensor& image, const VAETrace& trace = {});
  DiagonalGaussian encode(const torch::Tensor& image, const VAETrace& trace = {});
  // Unscaled latent [B, embed_dim, h, w] -> image in about [-1, 1].
  torch::Tensor decode(const torch::Tensor& z, const VAETrace& trace = {});
  double scaling_factor() const { return config_.scaling_factor; }
  const VAEConfig& config() const { return config_; }

  VAEEncoder encoder{nullptr};
  VAEDecoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

 private:
  VAEConfig config_;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace sine
