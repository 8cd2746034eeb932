#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "models/attention_hook.h"
#include "models/config.h"
#include "models/spatial_transformer.h"
#include "models/unet_blocks.h"

namespace sine {

// One entry of input_blocks / middle_block / output_blocks (LDM's TimestepEmbedSequential): its
// layers run in order, each registered under its position ("0", "1", "2") as in the checkpoint.
class UNetBlockImpl : public torch::nn::Module {
 public:
  void add(ResBlock layer);
  void add(SpatialTransformer layer);
  void add(Downsample layer);
  void add(Upsample layer);

  // `upsample_size` is the spatial size an upsampler must produce (that of the next skip).
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& emb, const torch::Tensor& context,
                        const AttentionCall& call, bool checkpointed,
                        c10::optional<std::vector<int64_t>> upsample_size = c10::nullopt);

  std::vector<SpatialTransformer> transformers() const;

 private:
  struct Layer {
    ResBlock res{nullptr};
    SpatialTransformer transformer{nullptr};
    Downsample down{nullptr};
    Upsample up{nullptr};
  };
  std::string next_name() const { return std::to_string(layers_.size()); }
  std::vector<Layer> layers_;
};
TORCH_MODULE(UNetBlock);

// Called with an intermediate's name and value (names as in the reference fixture
// unet_intermediates.safetensors: time_proj, time_embedding, conv_in, down_blocks.i, mid_block,
// up_blocks.i, conv_norm_out, conv_out).
using UNetTap = std::function<void(const std::string& name, const torch::Tensor& value)>;

// The SD 1.x noise-prediction UNet. Submodule names are the single-file LDM keys without the
// "model.diffusion_model." prefix, so named_parameters() equals the checkpoint's UNet keys.
class UNetModelImpl : public torch::nn::Module {
 public:
  explicit UNetModelImpl(const UNetConfig& config);

  // x [B, in_channels, h, w]; timesteps int64 [B], [1] or a scalar; context [B or 1, M, context_dim].
  // conv_in_addition (optional, [B or 1, model_channels, h, w]) is added to conv_in's output before
  // it becomes the first skip connection (SINE's positional grid). Returns eps [B, out_channels, h, w].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& context,
                        const torch::Tensor& conv_in_addition = {});

  // The hook every attention module calls (nullptr = none: fused attention). Not owned.
  void set_attention_hook(AttentionHook* hook) { call_.hook = hook; }
  AttentionHook* attention_hook() const { return call_.hook; }
  // The sampling step reported to hooks in AttentionSite::step.
  void set_step(int step) { call_.step = step; }
  int step() const { return call_.step; }
  // Attention modules of each kind (self = cross): AttentionSite::layer runs over 0..n-1. 16 for SD 1.x.
  int64_t num_attention_layers() const { return num_attention_layers_; }
  // Gradient checkpointing of every ResBlock and SpatialTransformer; it takes effect in training
  // mode with grad enabled. Initially config.use_checkpoint.
  void set_gradient_checkpointing(bool on) { config_.use_checkpoint = on; }
  bool gradient_checkpointing() const { return config_.use_checkpoint; }
  // Debug tap on intermediates (empty = none).
  void set_tap(UNetTap tap) { tap_ = std::move(tap); }
  // Channels-last (NHWC) memory for the convolution weights (converted here) and the activations
  // (the input is converted in forward): oneDNN's and cuDNN's preferred layout, and a transformer's
  // tokens [B, HW, C] are then a view instead of a copy. The output is NCHW-contiguous either way.
  void set_channels_last(bool on);
  bool channels_last() const { return channels_last_; }

  const UNetConfig& config() const { return config_; }

  torch::nn::Sequential time_embed{nullptr};  // 0 linear, 1 SiLU, 2 linear
  torch::nn::ModuleList input_blocks{nullptr};
  UNetBlock middle_block{nullptr};
  torch::nn::ModuleList output_blocks{nullptr};
  torch::nn::Sequential out{nullptr};  // 0 GroupNorm, 1 SiLU, 2 conv3x3

 private:
  UNetConfig config_;
  torch::nn::Conv2d conv_in_{nullptr};  // input_blocks.0.0
  std::vector<UNetBlock> down_;         // input_blocks.1..
  std::vector<UNetBlock> up_;           // output_blocks
  torch::nn::GroupNorm out_norm_{nullptr};
  torch::nn::Conv2d out_conv_{nullptr};
  AttentionCall call_;
  int64_t num_attention_layers_ = 0;
  UNetTap tap_;
  bool channels_last_ = false;
};
TORCH_MODULE(UNetModel);

// Installs an attention hook on a UNet for the guard's lifetime and puts back the one that was
// installed before, also when an exception leaves the scope:
//   ScopedAttentionHook guard(unet, &controller);
class ScopedAttentionHook {
 public:
  ScopedAttentionHook(UNetModel unet, AttentionHook* hook)
      : unet_(std::move(unet)), previous_(unet_->attention_hook()) {
    unet_->set_attention_hook(hook);
  }
  ~ScopedAttentionHook() { unet_->set_attention_hook(previous_); }
  ScopedAttentionHook(const ScopedAttentionHook&) = delete;
  ScopedAttentionHook& operator=(const ScopedAttentionHook&) = delete;

 private:
  UNetModel unet_;
  AttentionHook* previous_;
};

}  // namespace sine
