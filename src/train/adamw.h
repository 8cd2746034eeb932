#pragma once
#include <torch/torch.h>

#include <cstdint>

// AdamW (Loshchilov & Hutter, decoupled weight decay) computed exactly as torch.optim.AdamW does
// (same operations in the same order, so fp32 runs match it bit for bit), with the two things
// LibTorch's optimizer lacks for training a large model in little memory:
//  * the parameter it updates may be an fp32 master copy of a bf16/fp16 model weight (the Trainer
//    keeps those), the gradient any floating dtype;
//  * the moments may be stored in bf16. Rounding them to nearest would stall the second moment
//    (v·0.999 rounds back to v: 1e-3 is below half a bf16 step), so they are updated in fp32 and
//    rounded stochastically (unbiased: E[round(x)] = x), from a hash of the element index and a
//    seed, which needs no generator state and gives a resumed run the same bits.
namespace sine {

struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 1e-2;
  torch::ScalarType state_dtype = torch::kFloat32;  // kFloat32 or kBFloat16
};

// One parameter's moments; undefined until its first step.
struct AdamWState {
  int64_t step = 0;
  torch::Tensor exp_avg, exp_avg_sq;
};

// "fp32" / "bf16" -> the moments' dtype; anything else is a sine::Error naming `flag`.
torch::ScalarType parse_optimizer_state_dtype(const std::string& name, const std::string& flag = "optimizer_state");

// fp32 `x` rounded to bf16 stochastically: up with probability equal to the fraction of a bf16
// step that was cut off. The random bits are a 32-bit integer hash of (element index, seed), so the
// same seed gives the same result on every device.
torch::Tensor stochastic_round_bf16(const torch::Tensor& x, uint64_t seed);
// The same into `out` (bf16, x's shape and device): one pass per element on the CPU, tensor
// operations elsewhere, the same bits either way.
void stochastic_round_bf16_(torch::Tensor& out, const torch::Tensor& x, uint64_t seed);

namespace detail {  // the two implementations, for the test that they agree
void stochastic_round_bf16_ops(torch::Tensor& out, const torch::Tensor& x, uint64_t seed);
void stochastic_round_bf16_cpu(torch::Tensor& out, const torch::Tensor& x, uint64_t seed);
}  // namespace detail

// One AdamW update of `param` (in place; normally an fp32 master, or a bf16/fp16 weight updated
// directly) with gradient `grad`; the moments are computed in fp32 (fp64 for an fp64 parameter) and
// stored in that dtype or, with state_dtype bf16, rounded stochastically to bf16.
// `rounding_seed` is used only with bf16 moments and should differ per parameter and step.
void adamw_step(torch::Tensor& param, const torch::Tensor& grad, AdamWState& state, const AdamWHyper& hyper,
                uint64_t rounding_seed);

// Bytes of AdamW state per trainable element: 8 (fp32 moments) or 4 (bf16).
int64_t adamw_state_bytes_per_element(torch::ScalarType state_dtype);

}  // namespace sine
