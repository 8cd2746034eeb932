#include "methods/sine/sine_guidance.h"

#include "core/error.h"
#include "diffusion/guidance.h"
#include "diffusion/sampler.h"

namespace sine {

torch::Tensor model_based_guidance(const torch::Tensor& eps_uncond, const torch::Tensor& eps_edit,
                                   const std::vector<std::pair<torch::Tensor, double>>& eps_finetuned, double scale) {
  if (eps_finetuned.empty()) return classifier_free_guidance(eps_uncond, eps_edit, scale);
  double beta_sum = 0;
  torch::Tensor mixed;
  for (const auto& [eps, beta] : eps_finetuned) {
    beta_sum += beta;
    mixed = mixed.defined() ? mixed + beta * eps : beta * eps;
  }
  mixed = mixed + (1.0 - beta_sum) * eps_edit;
  // The mixture takes the place of ε_c in classifier-free guidance.
  return classifier_free_guidance(eps_uncond, mixed, scale);
}

torch::Tensor guided_eps(const GuidanceSources& sources, const torch::Tensor& x, int64_t t, double scale) {
  torch::Tensor e_u = sources.uncond(x, t);
  torch::Tensor e_c = sources.edit(x, t);
  std::vector<std::pair<torch::Tensor, double>> active;
  for (const FinetunedBranch& b : sources.finetuned)
    if (t >= b.K) active.emplace_back(b.eps(x, t), b.beta);
  return model_based_guidance(e_u, e_c, active, scale);
}

torch::Tensor sine_sample(const GuidanceSources& sources, const torch::Tensor& x_T, const SineSamplingConfig& config,
                          const StepCallback& on_step) {
  if (config.steps < 1) throw Error("steps: must be at least 1 (got " + std::to_string(config.steps) + ")");
  if (!sources.uncond || !sources.edit) throw Error("sine edit: the pre-trained model's ε sources are missing");
  torch::NoGradGuard no_grad;
  // DDIMConfig::stable_diffusion is LDM's DDIMSampler schedule: arange(0, T, T/S) + 1, ᾱ_prev[0] = ᾱ_0.
  SamplerConfig ddim;
  ddim.steps = config.steps;
  auto sampler = make_sampler(ddim);
  SampleLoopOptions loop;
  loop.on_step = on_step;
  return sample(*sampler, x_T, [&](const torch::Tensor& x, double t, int64_t) {
    return guided_eps(sources, x, static_cast<int64_t>(t), config.scale);
  }, loop);
}

ModelEps pipeline_eps(Pipeline& pipeline, torch::Tensor context, torch::Tensor grid) {
  Pipeline* p = &pipeline;
  return [p, context = context.to(pipeline.device(), pipeline.dtype()),
          grid = grid.defined() ? grid.to(pipeline.device(), pipeline.dtype()) : grid](const torch::Tensor& x,
                                                                                       int64_t t) {
    auto ts = torch::full({x.size(0)}, t, torch::TensorOptions().dtype(torch::kLong).device(p->device()));
    auto ctx = context.expand({x.size(0), -1, -1});
    return p->model()->unet->forward(x.to(p->device(), p->dtype()), ts, ctx, grid).to(torch::kFloat32);
  };
}

}  // namespace sine
