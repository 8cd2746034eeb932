#include "models/attention_hook.h"

#include <cmath>

namespace sine {

namespace {

// [B, N, C] -> [B, heads, N, C/heads]
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  auto s = x.sizes();
  return x.view({s[0], s[1], heads, s[2] / heads}).transpose(1, 2);
}

torch::Tensor merge_heads(const torch::Tensor& x) {
  auto s = x.sizes();
  return x.transpose(1, 2).reshape({s[0], s[2], s[1] * s[3]});
}

torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto probs = torch::softmax(torch::matmul(q, k.transpose(-1, -2)) * scale, -1);
  return torch::matmul(probs, v);
#endif
}

}  // namespace

torch::Tensor attention_probs(const torch::Tensor& q, const torch::Tensor& k, int64_t heads) {
  auto qh = split_heads(q, heads), kh = split_heads(k, heads);
  const double scale = 1.0 / std::sqrt(static_cast<double>(qh.size(-1)));
  return torch::softmax(torch::matmul(qh, kh.transpose(-1, -2)) * scale, -1);
}

torch::Tensor multi_head_attention(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
                                   int64_t heads, AttentionHook* hook, const AttentionSite* site) {
  torch::Tensor q = q_in, k = k_in, v = v_in;
  if (hook) hook->on_qkv(*site, q, k, v);
  torch::Tensor out;
  if (hook && hook->needs_probs(*site)) {
    auto probs = hook->on_probs(*site, attention_probs(q, k, heads));
    out = merge_heads(torch::matmul(probs, split_heads(v, heads)));
  } else {
    out = merge_heads(fused_attention(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)));
  }
  if (hook) out = hook->on_output(*site, out, q, k, v);
  return out;
}

}  // namespace sine
