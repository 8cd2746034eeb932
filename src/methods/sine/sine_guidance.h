#pragma once
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "methods/sine/positional_grid.h"
#include "pipeline/pipeline.h"

// SINE stage 2: model-based classifier-free guidance (official DDIMSinSampler). Per DDIM step t
// (DDPM units):
//   ε_u = ε_pre(x_t, ""), ε_c = ε_pre(x_t, EDIT), ε_f,i = ε_ft,i(x_t, DESC_i)
//   t ≥ K_i for some model i:  ε = ε_u + s·((1 − Σβ_i)·ε_c + Σβ_i·ε_f,i − ε_u)   (sum over models with t ≥ K_i)
//   otherwise:                 ε = ε_u + s·(ε_c − ε_u)
// With one fine-tuned model β = 1 − v (v: the paper's weight on the pre-trained branch), which is
// ε_u + s·(v·ε_c + (1 − v)·ε_f − ε_u). The guided steps cost 2 + N UNet evaluations (3 for one
// model), the others 2. DDIM η = 0 over the LDM timesteps (1, 11, …, 991 for 100 steps).
namespace sine {

// One model branch: ε at latent x and DDPM timestep t (the sampler-level EpsFunction mixes them).
using ModelEps = std::function<torch::Tensor(const torch::Tensor& x, int64_t t)>;

struct FinetunedBranch {
  ModelEps eps;  // the fine-tuned model with its training prompt (and its own grid)
  double beta = 0.3;
  int64_t K = 400;  // guided while t ≥ K
};

struct GuidanceSources {
  ModelEps uncond;  // pre-trained model, ""
  ModelEps edit;    // pre-trained model, the edit prompt
  std::vector<FinetunedBranch> finetuned;
};

struct SineSamplingConfig {
  int64_t steps = 100;
  double scale = 7.5;
};

// The guidance formula alone: ε_u + s·((1 − Σβ_i)·ε_c + Σβ_i·ε_f,i − ε_u) over the given
// (ε_f,i, β_i) pairs; with none it is plain CFG ε_u + s·(ε_c − ε_u).
torch::Tensor model_based_guidance(const torch::Tensor& eps_uncond, const torch::Tensor& eps_edit,
                                   const std::vector<std::pair<torch::Tensor, double>>& eps_finetuned, double scale);

// ε for one step: evaluates only the sources needed at t (fine-tuned ones only where t ≥ K_i).
torch::Tensor guided_eps(const GuidanceSources& sources, const torch::Tensor& x, int64_t t, double scale);

// DDIM (η = 0) from x_T with guided_eps at every step; returns x_0 (scaled latents).
torch::Tensor sine_sample(const GuidanceSources& sources, const torch::Tensor& x_T, const SineSamplingConfig& config,
                          const StepCallback& on_step = {});

// ε of `pipeline`'s UNet for a fixed prompt embedding, with `grid` ([1, C, h, w], optional)
// added after conv_in: the branch of a fine-tuned patch model at latent size h × w.
ModelEps pipeline_eps(Pipeline& pipeline, torch::Tensor context, torch::Tensor grid = {});

}  // namespace sine
