#include "methods/inversion/ddim_inversion.h"

#include <cmath>

#include "core/error.h"
#include "diffusion/guidance.h"
#include "diffusion/sampler.h"

namespace sine {

std::vector<torch::Tensor> ddim_invert(Pipeline& pipe, const torch::Tensor& z0, const torch::Tensor& context,
                                       const InversionOptions& options, const torch::Tensor& uncond,
                                       const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  if (options.steps < 1) throw Error("steps: must be at least 1");
  const bool guided = options.guidance != 1.0;
  if (guided && !uncond.defined()) throw Error("inversion with guidance needs an unconditional embedding");
  const int64_t b = z0.size(0);
  const auto guided_context = guided ? torch::cat({uncond.expand({b, -1, -1}), context.expand({b, -1, -1})})
                                     : torch::Tensor();
  auto eps = [&](const torch::Tensor& z, double t, int64_t) {
    if (!guided) return pipe.predict_eps(z, timestep_tensor(t, b, pipe.device()), context);
    auto parts = pipe.predict_eps(torch::cat({z, z}), timestep_tensor(t, 2 * b, pipe.device()), guided_context).chunk(2);
    return classifier_free_guidance(parts[0], parts[1], options.guidance);
  };
  auto inversion = make_ddim_inversion(options.ddim, options.steps);
  std::vector<torch::Tensor> latents;  // z_0, then z after each step
  SampleLoopOptions loop;
  loop.unet = pipe.model()->unet;  // step i = 0 is the least noisy
  loop.on_step = on_step;
  loop.trajectory = &latents;
  sample(*inversion, z0.to(pipe.device(), torch::kFloat32), eps, loop);
  return latents;
}

torch::Tensor ddim_sample(Pipeline& pipe, const torch::Tensor& z_T, const torch::Tensor& cond,
                          const torch::Tensor& uncond, double guidance, const InversionOptions& options,
                          const std::vector<torch::Tensor>& uncond_per_step) {
  torch::NoGradGuard no_grad;
  const bool guided = guidance != 1.0 || !uncond_per_step.empty();
  auto eps = [&](const torch::Tensor& z, double t, int64_t i) {
    if (!guided) return pipe.predict_eps(z, timestep_tensor(t, z.size(0), pipe.device()), cond);
    // Null-text: the optimised φ_i replaces the unconditional embedding at step i.
    const auto& u = uncond_per_step.empty() ? uncond : uncond_per_step[i];
    return pipe.predict_eps_cfg(z, t, u, cond, guidance);
  };
  SamplerConfig ddim;
  ddim.steps = options.steps;
  ddim.ddim = options.ddim;
  auto sampler = make_sampler(ddim);
  SampleLoopOptions loop;
  loop.unet = pipe.model()->unet;
  return sample(*sampler, z_T.to(pipe.device(), torch::kFloat32), eps, loop);
}

double psnr(const torch::Tensor& a, const torch::Tensor& b) {
  auto d = ((a.to(torch::kFloat64).cpu() - b.to(torch::kFloat64).cpu()) / 2.0);
  const double mse = d.pow(2).mean().item<double>();
  return mse <= 0 ? 99.0 : -10.0 * std::log10(mse);
}

}  // namespace sine
