#pragma once
#include <torch/torch.h>

#include <string>

namespace sine {

// Where an attention call happens. Editing methods (P2P, SpecRef, mask extraction) decide what
// to do from this alone; the UNet knows nothing about them.
struct AttentionSite {
  int step = 0;           // sampling step index, set by the caller through UNet::set_step
  int layer = 0;          // index among attention modules of this kind (self: 0..15 for SD 1.x)
  bool is_cross = false;  // attn2 (text context) vs attn1 (self)
  int64_t height = 0, width = 0;  // spatial size of the query feature map
  int64_t heads = 1;
  std::string place;      // "down", "mid" or "up"
};

// The seam editing methods hook into (like diffusers' attention processors). Every tensor is
// per batch element; q is [B, N, C] and k, v are [B, M, C] after the projections and before the
// head split; probabilities are [B, heads, N, M]; the output is [B, N, C] before to_out.
class AttentionHook {
 public:
  virtual ~AttentionHook() = default;
  // If false for this site, attention takes the fused path and on_probs is not called.
  virtual bool needs_probs(const AttentionSite& site) { return false; }
  // May read or replace q, k, v (e.g. swap in a reference image's keys and values).
  virtual void on_qkv(const AttentionSite& site, torch::Tensor& q, torch::Tensor& k, torch::Tensor& v) {}
  // May read or replace the softmax probabilities (P2P stores and edits them here).
  virtual torch::Tensor on_probs(const AttentionSite& site, torch::Tensor probs) { return probs; }
  // May read or replace the attention output; q, k, v are the (possibly replaced) inputs.
  virtual torch::Tensor on_output(const AttentionSite& site, torch::Tensor out, const torch::Tensor& q,
                                  const torch::Tensor& k, const torch::Tensor& v) {
    return out;
  }
};

// Multi-head scaled dot-product attention on [B, N, C] tensors with an optional hook. Uses the
// fused kernel (SDPA on LibTorch 2.x) unless the hook needs the probabilities.
torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   int64_t heads, AttentionHook* hook = nullptr,
                                   const AttentionSite* site = nullptr);

// Probabilities [B, heads, N, M] for [B, N, C] inputs (used by hooks that need them).
torch::Tensor attention_probs(const torch::Tensor& q, const torch::Tensor& k, int64_t heads);

}  // namespace sine
