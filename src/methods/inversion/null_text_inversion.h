#pragma once
#include <torch/torch.h>

#include <vector>

#include "methods/inversion/ddim_inversion.h"

// Null-text inversion (Mokady et al.), as the notebook's null_optimization: for i = 0..T-1
// (noisiest first) a fresh Adam on φ (warm-started from φ_{i-1}) with lr 0.01·(1 − i/100), up to
// `inner_steps` iterations of MSE(DDIM step of eps_u(φ) + g(eps_c − eps_u(φ)), z*_{t-1}), early stop
// below epsilon + i·2e-5; then z advances with CFG under φ_i (not reset to z*).
namespace sine {

struct NullTextOptions {
  int64_t inner_steps = 10;
  double early_stop_epsilon = 1e-5;
  double guidance = 7.5;
  double lr = 1e-2;
};

struct NullTextResult {
  std::vector<torch::Tensor> embeddings;  // φ_0..φ_{T-1}, each [1,77,C]
  std::vector<double> final_loss;         // per step, the last inner loss
  std::vector<int64_t> iterations;        // per step
};

// latents: z*_0..z*_T from ddim_invert (batch 1); cond [1,77,C]; uncond_init: "" embedding.
NullTextResult null_text_inversion(Pipeline& pipe, const std::vector<torch::Tensor>& latents,
                                   const torch::Tensor& cond, const torch::Tensor& uncond_init,
                                   const InversionOptions& inversion, const NullTextOptions& options,
                                   const StepCallback& on_step = {});

}  // namespace sine
