#include "train/adamw.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace sine {

namespace {

constexpr int64_t kLow32 = 0xFFFFFFFFLL;

// The 32-bit integer hash x ^= x >> 16; x *= 0x45d9f3b (twice); x ^= x >> 16: on uint32, and on int64
// tensors holding values below 2^32 (every product stays below 2^59: no overflow), bit for bit alike.
uint32_t hash32(uint32_t x) {
  for (int i = 0; i < 2; ++i) x = (x ^ (x >> 16)) * 0x45d9f3bu;
  return x ^ (x >> 16);
}
torch::Tensor hash32(torch::Tensor x) {
  for (int i = 0; i < 2; ++i) x = torch::bitwise_and(torch::bitwise_xor(x, x.__rshift__(16)) * int64_t{0x45d9f3b}, kLow32);
  return torch::bitwise_xor(x, x.__rshift__(16));
}

// splitmix64's finaliser: spreads a seed's bits before it is folded to 32.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint32_t seed_salt(uint64_t seed) { return static_cast<uint32_t>(mix64(seed) & kLow32); }

}  // namespace

torch::ScalarType parse_optimizer_state_dtype(const std::string& name, const std::string& flag) {
  if (name == "fp32") return torch::kFloat32;
  if (name == "bf16") return torch::kBFloat16;
  throw Error(flag + ": optimizer state must be fp32 or bf16 (got '" + name + "')");
}

int64_t adamw_state_bytes_per_element(torch::ScalarType state_dtype) {
  return 2 * static_cast<int64_t>(c10::elementSize(state_dtype));
}

namespace detail {

void stochastic_round_bf16_ops(torch::Tensor& out, const torch::Tensor& x, uint64_t seed) {
  auto flat = x.contiguous().view({-1});
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(x.device());
  const int64_t salt = static_cast<int64_t>(seed_salt(seed));
  auto noise = torch::bitwise_and(hash32(torch::bitwise_and(torch::arange(flat.numel(), i64) + salt, kLow32)),
                                  int64_t{0xFFFF});
  // fp32 bits + a uniform 16-bit integer, the low 16 bits then cut: the carry rounds the magnitude
  // up with probability (cut-off part) / (bf16 step), for either sign (sign-magnitude format).
  auto bits = torch::bitwise_and(flat.view(torch::kInt32).to(torch::kInt64), kLow32);
  bits = torch::bitwise_and(bits + noise, int64_t{0xFFFF0000LL});
  bits = bits - torch::bitwise_and(bits, int64_t{0x80000000LL}) * 2;  // back into int32's signed range
  out.copy_(bits.to(torch::kInt32).view(torch::kFloat32).view(x.sizes()));  // exact: low bits are 0
}

void stochastic_round_bf16_cpu(torch::Tensor& out, const torch::Tensor& x, uint64_t seed) {
  // The same arithmetic as stochastic_round_bf16_ops, one pass per element (unsigned 32-bit).
  const torch::Tensor src = x.contiguous();
  torch::Tensor dst = out.is_contiguous() ? out : torch::empty_like(out, at::MemoryFormat::Contiguous);
  const auto* in = src.data_ptr<float>();
  auto* o = reinterpret_cast<uint16_t*>(dst.data_ptr<at::BFloat16>());
  const uint32_t salt = seed_salt(seed);
  at::parallel_for(0, src.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, in + i, sizeof bits);
      const uint32_t noise = hash32(static_cast<uint32_t>(i) + salt) & 0xFFFFu;
      o[i] = static_cast<uint16_t>((bits + noise) >> 16);
    }
  });
  if (!dst.is_same(out)) out.copy_(dst);
}

}  // namespace detail

void stochastic_round_bf16_(torch::Tensor& out, const torch::Tensor& x, uint64_t seed) {
  if (x.scalar_type() != torch::kFloat32)
    throw Error("stochastic_round_bf16: expects fp32 (got " + std::string(c10::toString(x.scalar_type())) + ")");
  if (out.scalar_type() != torch::kBFloat16 || !out.sizes().equals(x.sizes()) || out.device() != x.device())
    throw Error("stochastic_round_bf16: the output must be bf16 of the input's shape and device");
  torch::NoGradGuard no_grad;
  if (x.device().is_cpu())
    detail::stochastic_round_bf16_cpu(out, x, seed);
  else
    detail::stochastic_round_bf16_ops(out, x, seed);
}

torch::Tensor stochastic_round_bf16(const torch::Tensor& x, uint64_t seed) {
  torch::Tensor out = torch::empty(x.sizes(), x.options().dtype(torch::kBFloat16));
  stochastic_round_bf16_(out, x, seed);
  return out;
}

void adamw_step(torch::Tensor& param, const torch::Tensor& grad_in, AdamWState& s, const AdamWHyper& h,
                uint64_t rounding_seed) {
  torch::NoGradGuard no_grad;
  const bool low = h.state_dtype != torch::kFloat32;
  if (low && h.state_dtype != torch::kBFloat16)
    throw Error("optimizer_state: AdamW moments can be fp32 or bf16 (got " +
                std::string(c10::toString(h.state_dtype)) + ")");
  // The moments' arithmetic: fp32 (fp64 for an fp64 parameter), whatever the parameter's dtype (a
  // bf16 weight updated directly, without a master, still has fp32 or bf16 moments as asked).
  const auto dtype = param.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const torch::Tensor grad = grad_in.scalar_type() == dtype ? grad_in : grad_in.to(dtype);
  if (!s.exp_avg.defined()) {
    s.exp_avg = torch::zeros_like(param, param.options().dtype(low ? h.state_dtype : dtype));
    s.exp_avg_sq = torch::zeros_like(param, param.options().dtype(low ? h.state_dtype : dtype));
  }
  ++s.step;
  // A bf16/fp16 weight without a master is updated in fp32 and rounded to nearest once.
  torch::Tensor target = param.scalar_type() == dtype ? param : param.to(dtype);
  // torch.optim.AdamW (single-tensor path), operation for operation.
  target.mul_(1 - h.lr * h.weight_decay);
  const double bias_correction1 = 1 - std::pow(h.beta1, static_cast<double>(s.step));
  const double bias_correction2 = 1 - std::pow(h.beta2, static_cast<double>(s.step));
  torch::Tensor m = low ? s.exp_avg.to(dtype) : s.exp_avg;
  torch::Tensor v = low ? s.exp_avg_sq.to(dtype) : s.exp_avg_sq;
  m.mul_(h.beta1).add_(grad, 1 - h.beta1);
  v.mul_(h.beta2).addcmul_(grad, grad, 1 - h.beta2);
  torch::Tensor denom = (v.sqrt() / std::sqrt(bias_correction2)).add_(h.eps);
  target.addcdiv_(m, denom, -h.lr / bias_correction1);
  if (!target.is_same(param)) param.copy_(target);
  if (low) {  // in place: the moments keep their memory from step to step
    stochastic_round_bf16_(s.exp_avg, m.to(torch::kFloat32), rounding_seed * 2);
    stochastic_round_bf16_(s.exp_avg_sq, v.to(torch::kFloat32), rounding_seed * 2 + 1);
  }
}

}  // namespace sine
