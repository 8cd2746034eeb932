#include "models/lora_linear.h"

namespace sine {

AdaptableLinearImpl::AdaptableLinearImpl(int64_t in, int64_t out, bool bias)
    : in_features(in), out_features(out), with_bias(bias) {
  reset();
}

void AdaptableLinearImpl::reset() {
  // Same initialization as torch::nn::Linear (kaiming-uniform weight, fan-in uniform bias).
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    bias = register_parameter("bias", torch::empty({out_features}));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

torch::Tensor AdaptableLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::nn::functional::linear(x, weight, with_bias ? bias : torch::Tensor());
  for (const LoRAAdapter& a : adapters) {
    if (a.scale == 0) continue;
    torch::Tensor delta = torch::nn::functional::linear(
        torch::nn::functional::linear(x.to(a.down.scalar_type()), a.down), a.up);
    y = y + (a.scale * delta).to(y.scalar_type());
  }
  return y;
}

torch::Tensor AdaptableLinearImpl::adapter_delta() const {
  torch::Tensor delta = torch::zeros({out_features, in_features}, weight.options().dtype(torch::kFloat32));
  for (const LoRAAdapter& a : adapters)
    delta += a.scale * torch::matmul(a.up.detach().to(torch::kFloat32), a.down.detach().to(torch::kFloat32));
  return delta;
}

void AdaptableLinearImpl::merge_adapters() {
  torch::NoGradGuard no_grad;
  weight.add_(adapter_delta().to(weight.scalar_type()));
  adapters.clear();
}

}  // namespace sine
