#pragma once
#include <torch/torch.h>

#include <string>

#include "train/ema.h"

namespace sine {

// SingleInsert's image encoder ("I2TNet"): OpenAI CLIP's VisionTransformer (not HF CLIPVision):
// conv1 patch embedding (no bias), class_embedding, positional_embedding, ln_pre, pre-LN
// residual blocks (attn with in_proj/out_proj, mlp c_fc → QuickGELU → c_proj), ln_post on the
// CLS token, bias-free proj to the text width. Its output replaces the '*' token embedding.
struct ImageEncoderConfig {
  int64_t image_size = 224;
  int64_t patch_size = 32;
  int64_t width = 768;
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t output_dim = 768;  // the text encoder's width

  // "vit-b32" (SD 1.5: 224 px, patch 32, width 768, 12 layers, 12 heads) or "tiny" (64 px,
  // patch 8, width 64, 2 layers, 4 heads); output_dim is set to `text_width`.
  static ImageEncoderConfig preset(const std::string& name, int64_t text_width);
  // vit-b32 for a 768-wide text encoder, tiny otherwise.
  static ImageEncoderConfig for_text_width(int64_t text_width);
  nlohmann::json to_json() const;
  static ImageEncoderConfig from_json(const nlohmann::json& j);
};

// nn.MultiheadAttention's layout: packed q/k/v in_proj_weight [3w, w], in_proj_bias, out_proj.
class VisionAttentionImpl : public torch::nn::Module {
 public:
  VisionAttentionImpl(int64_t width, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x);  // [B, N, w], no mask

  torch::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(VisionAttention);

class VisionMLPImpl : public torch::nn::Module {
 public:
  explicit VisionMLPImpl(int64_t width);
  torch::Tensor forward(const torch::Tensor& x);  // c_fc -> QuickGELU -> c_proj

  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(VisionMLP);

class VisionResidualBlockImpl : public torch::nn::Module {
 public:
  VisionResidualBlockImpl(int64_t width, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x);

  VisionAttention attn{nullptr};
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  VisionMLP mlp{nullptr};
};
TORCH_MODULE(VisionResidualBlock);

// Parameter names equal OpenAI CLIP's `visual.*` keys without the prefix (conv1.weight,
// transformer.resblocks.0.attn.in_proj_weight, ..., proj).
class ImageEncoderImpl : public torch::nn::Module {
 public:
  explicit ImageEncoderImpl(const ImageEncoderConfig& config);
  // Official random init (randn·width^-0.5 for class/positional embeddings and proj, PyTorch
  // defaults elsewhere: xavier-uniform in_proj, zero attention biases). Seeded by torch::manual_seed.
  void reset_parameters();

  // [B, 3, image_size, image_size] normalised with mean/std 0.5 -> [B, output_dim].
  torch::Tensor forward(const torch::Tensor& pixels);
  // uint8 [H, W, 3] -> [1, 3, image_size, image_size]: bilinear resize, (x/255 − 0.5)/0.5.
  torch::Tensor preprocess(const torch::Tensor& rgb_u8) const;

  // Loads OpenAI CLIP vision weights (.safetensors with `visual.*` keys, or the same without the
  // prefix). Every shape must match except `proj`, which is re-initialised when its shape
  // differs (the returned note says so). Missing keys are an error naming the file.
  std::string load_weights(const std::string& path);

  NamedTensors named_trainables(const std::string& prefix = "encoder.") const;
  const ImageEncoderConfig& config() const { return config_; }

  torch::nn::Conv2d conv1{nullptr};
  torch::Tensor class_embedding, positional_embedding, proj;
  torch::nn::LayerNorm ln_pre{nullptr}, ln_post{nullptr};
  torch::nn::ModuleList resblocks{nullptr};  // registered as transformer.resblocks

 private:
  ImageEncoderConfig config_;
};
TORCH_MODULE(ImageEncoder);

}  // namespace sine
