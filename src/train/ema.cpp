#include "train/ema.h"

#include <algorithm>

#include "core/error.h"

namespace sine {

ParameterEMA::ParameterEMA(const NamedTensors& params, double decay) : decay_(decay) {
  if (decay < 0 || decay >= 1) throw Error("EMA decay must be in [0, 1), got " + std::to_string(decay));
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    index_[name] = shadow_.size();
    shadow_.emplace_back(name, p.detach().to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true));
  }
}

double ParameterEMA::decay_at(int64_t updates) const {
  const double n = static_cast<double>(updates);
  return std::min(decay_, (1.0 + n) / (10.0 + n));
}

void ParameterEMA::update(const NamedTensors& params, int64_t updates) {
  torch::NoGradGuard no_grad;
  const double d = decay_at(updates);
  for (const auto& [name, p] : params) {
    torch::Tensor& s = shadow_[slot(name)].second;
    s.mul_(d).add_(p.detach().to(torch::kFloat32), 1.0 - d);
  }
}

size_t ParameterEMA::slot(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error("EMA has no parameter '" + name + "'");
  return it->second;
}

torch::Tensor ParameterEMA::get(const std::string& name) const { return shadow_[slot(name)].second; }

void ParameterEMA::copy_to(const NamedTensors& params) const {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) p.copy_(get(name));
}

void ParameterEMA::load(const std::string& name, const torch::Tensor& value) {
  torch::Tensor& s = shadow_[slot(name)].second;
  if (!s.sizes().equals(value.sizes()))
    throw Error("EMA of '" + name + "': saved shape " + c10::str(value.sizes()) + " differs from " +
                c10::str(s.sizes()));
  torch::NoGradGuard no_grad;
  s.copy_(value);
}

}  // namespace sine
