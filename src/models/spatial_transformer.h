#pragma once
#include <torch/torch.h>

#include <string>

#include "models/attention_hook.h"
#include "models/lora_linear.h"

namespace sine {

// The UNet's per-forward attention state that every attention module needs: the hook (null =
// none, fused path) and the sampling step it reports in AttentionSite.
struct AttentionCall {
  AttentionHook* hook = nullptr;
  int step = 0;
};

// LDM CrossAttention: self-attention when `context_dim` is 0 (attn1), else attention from the
// image tokens to the text context (attn2). q/k/v have no bias; to_out.0 is the output linear.
class CrossAttentionImpl : public torch::nn::Module {
 public:
  CrossAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim);
  // x [B, H*W, C]; context [B, M, context_dim] (ignored for self-attention).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, const AttentionCall& call,
                        int64_t height, int64_t width);

  // Where this module sits, reported to hooks: index among modules of its kind, "down"/"mid"/"up".
  void set_site(int layer, const std::string& place);
  bool is_cross() const { return is_cross_; }

  // Adaptable so LoRA (SingleInsert, SINE's LoRA mode) can attach to q, k, v and out.
  AdaptableLinear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::Sequential to_out{nullptr};  // 0 linear, 1 dropout (0 in SD)
  AdaptableLinear out_linear() const { return out_proj_; }

 private:
  AdaptableLinear out_proj_{nullptr};
  int64_t heads_;
  bool is_cross_;
  int layer_ = 0;
  std::string place_;
};
TORCH_MODULE(CrossAttention);

// proj(x) split in two halves h, gate; h * gelu(gate) with the exact (erf) gelu.
class GEGLUImpl : public torch::nn::Module {
 public:
  GEGLUImpl(int64_t dim_in, int64_t dim_out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear proj{nullptr};
};
TORCH_MODULE(GEGLU);

// net.0 = GEGLU to 4x width, net.1 = dropout (0 in SD), net.2 = linear back.
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t mult = 4);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(FeedForward);

// Pre-LayerNorm block: self-attention, cross-attention, GEGLU feed-forward, each residual.
class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, const AttentionCall& call,
                        int64_t height, int64_t width);

  CrossAttention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

// SD 1.x SpatialTransformer: GroupNorm (eps 1e-6), 1x1-conv proj_in, transformer blocks on the
// H*W tokens, 1x1-conv proj_out, plus the input.
class SpatialTransformerImpl : public torch::nn::Module {
 public:
  SpatialTransformerImpl(int64_t channels, int64_t heads, int64_t depth, int64_t context_dim, int64_t norm_groups);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, const AttentionCall& call);

  // Numbers this transformer's attention modules in forward order, continuing the counters.
  void assign_sites(const std::string& place, int& next_self, int& next_cross);

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d proj_in{nullptr}, proj_out{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr};

 private:
  std::vector<BasicTransformerBlock> blocks_;
};
TORCH_MODULE(SpatialTransformer);

}  // namespace sine
