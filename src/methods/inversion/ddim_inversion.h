#pragma once
#include <torch/torch.h>

#include <vector>

#include "diffusion/ddim.h"
#include "pipeline/pipeline.h"

// DDIM inversion (the null-text notebook's / SpecRef's ddim_loop): t runs over the schedule in
// reverse (1, 21, …, 981 for SpecRef's config; 0, 20, …, 980 for the notebook's), eps = UNet(z, t, c)
// and z ← invert_step(eps, t, z). Guidance 1 by default: one conditional pass per step.
namespace sine {

struct InversionOptions {
  int64_t steps = 50;
  double guidance = 1.0;  // != 1: eps_u + g(eps_c − eps_u) with the uncond context
  DDIMConfig ddim = DDIMConfig::null_text_inversion();
};

// z0 [B,4,h,w], context [B,77,C] (cond); uncond [1 or B,77,C] only used when guidance != 1.
// The UNet's step is set to the inversion step index i (0 = least noisy) for hooks.
// Returns z_0..z_T (steps + 1 latents, each [B,4,h,w], fp32).
std::vector<torch::Tensor> ddim_invert(Pipeline& pipe, const torch::Tensor& z0, const torch::Tensor& context,
                                       const InversionOptions& options, const torch::Tensor& uncond = {},
                                       const StepCallback& on_step = {});

// Plain DDIM sampling from z_T with CFG (guidance 1: cond only); uncond_per_step (optional, one
// [1,77,C] per step) replaces `uncond` at step i (null-text). Returns z_0.
torch::Tensor ddim_sample(Pipeline& pipe, const torch::Tensor& z_T, const torch::Tensor& cond,
                          const torch::Tensor& uncond, double guidance, const InversionOptions& options,
                          const std::vector<torch::Tensor>& uncond_per_step = {});

// PSNR (dB) of two images in [-1,1] (any shape), on the [0,1] scale.
double psnr(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace sine
