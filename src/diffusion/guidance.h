#pragma once
#include <torch/torch.h>

namespace sine {

// ε = ε_u + s·(ε_c − ε_u). s = 1 gives ε_c, s = 0 gives ε_u.
torch::Tensor classifier_free_guidance(const torch::Tensor& eps_uncond, const torch::Tensor& eps_cond, double scale);

}  // namespace sine
