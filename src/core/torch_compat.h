#pragma once
// Every difference between the LibTorch versions sine builds against (Debian's 1.13, CPU; PyPI's
// torch 2.11, CUDA 13) lives here, so that models and methods are written once.
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>

namespace sine::compat {

#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
inline constexpr bool has_sdpa = true;  // at::scaled_dot_product_attention (flash / mem-efficient / CPU flash)
#else
inline constexpr bool has_sdpa = false;
#endif

#ifdef SINE_WITH_CUDA
inline constexpr bool cuda_compiled = true;
#else
inline constexpr bool cuda_compiled = false;
#endif

// "1.13.0", "2.11.0": the LibTorch the binary was compiled against.
inline std::string torch_version() {
#if defined(TORCH_VERSION_MAJOR)
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
#else
  return "unknown";
#endif
}

// softmax(q kᵀ / sqrt(d)) v on [B, heads, L, D] tensors: LibTorch's fused kernel where it has one
// (it never materialises the probabilities), else the same formula written out.
inline torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                  const torch::Tensor& v, bool is_causal = false) {
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, {}, 0.0, is_causal);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto scores = torch::matmul(q * scale, k.transpose(-1, -2));
  if (is_causal) {
    const auto n = q.size(-2), m = k.size(-2);
    scores = scores + torch::full({n, m}, -std::numeric_limits<double>::infinity(), scores.options()).triu(1);
  }
  return torch::matmul(torch::softmax(scores, -1), v);
#endif
}

}  // namespace sine::compat
