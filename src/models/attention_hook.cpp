#include "models/attention_hook.h"

#include <cmath>

#include "core/torch_compat.h"

namespace sine {

namespace {

// [B, N, C] -> [B, heads, N, C/heads]
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  auto s = x.sizes();
  return x.reshape({s[0], s[1], heads, s[2] / heads}).transpose(1, 2);
}

torch::Tensor merge_heads(const torch::Tensor& x) {
  auto s = x.sizes();
  return x.transpose(1, 2).reshape({s[0], s[2], s[1] * s[3]});
}

// Without SDPA: a block of queries at a time (all heads together), so that the scores live in a
// reused 16 MB buffer instead of a [B, heads, N, M] tensor (1 GB for SD 1.5 at 512x512 with CFG)
// that is written, scaled, normalised and read back from memory; on CPU this is about twice as
// fast. Heads are strided views of the [B, N, C] inputs and output, which BLAS reads without copies.
torch::Tensor chunked_attention(const torch::Tensor& q_scaled, const torch::Tensor& k, const torch::Tensor& v,
                                int64_t heads) {
  const int64_t batch = q_scaled.size(0), n = q_scaled.size(1), m = k.size(1), d = q_scaled.size(2) / heads;
  const int64_t budget = int64_t(1) << 22;  // score elements per block
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(n, budget / std::max<int64_t>(heads * m, 1)));
  auto out = torch::empty({batch, n, heads * d}, q_scaled.options());
  auto scores = torch::empty({heads, rows, m}, q_scaled.options());
  auto probs = torch::empty({heads, rows, m}, q_scaled.options());
  for (int64_t b = 0; b < batch; ++b) {
    auto qh = q_scaled[b].reshape({n, heads, d}).permute({1, 0, 2});
    auto kt = k[b].reshape({m, heads, d}).permute({1, 2, 0});
    auto vh = v[b].reshape({m, heads, d}).permute({1, 0, 2});
    auto oh = out[b].view({n, heads, d}).permute({1, 0, 2});
    for (int64_t i = 0; i < n; i += rows) {
      const int64_t r = std::min(rows, n - i);
      auto s = scores.narrow(1, 0, r), p = probs.narrow(1, 0, r);
      at::bmm_out(s, qh.narrow(1, i, r), kt);
      at::softmax_out(p, s, -1);
      auto o = oh.narrow(1, i, r);
      at::bmm_out(o, p, vh);
    }
  }
  return out;
}

// The fused path: LibTorch's SDPA kernel where it has one (2.x: flash / memory-efficient on CUDA,
// flash attention on the CPU), else the chunked loop above (inference) or the plain formula (training).
torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t heads) {
  if constexpr (compat::has_sdpa)
    return merge_heads(compat::scaled_dot_product_attention(split_heads(q, heads), split_heads(k, heads),
                                                            split_heads(v, heads)));
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1) / heads));
  const bool records_graph =
      torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (!records_graph) return chunked_attention(q * scale, k, v, heads);
  auto probs = torch::softmax(torch::matmul(split_heads(q * scale, heads), split_heads(k, heads).transpose(-1, -2)), -1);
  return merge_heads(torch::matmul(probs, split_heads(v, heads)));
}

}  // namespace

torch::Tensor attention_probs(const torch::Tensor& q, const torch::Tensor& k, int64_t heads) {
  // Scaling q rather than the scores saves a pass over the [B, heads, N, M] tensor.
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1) / heads));
  return torch::softmax(torch::matmul(split_heads(q * scale, heads), split_heads(k, heads).transpose(-1, -2)), -1);
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
    out = fused_attention(q, k, v, heads);
  }
  if (hook) out = hook->on_output(*site, out, q, k, v);
  return out;
}

}  // namespace sine
