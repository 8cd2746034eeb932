#include "methods/ddim_inversion.h"

#include <cmath>

#include "core/error.h"

namespace sine {

std::vector<torch::Tensor> ddim_invert(Pipeline& pipe, const torch::Tensor& z0, const torch::Tensor& context,
                                       const InversionOptions& options, const torch::Tensor& uncond,
                                       const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  if (options.steps < 1) throw Error("--steps must be at least 1");
  DDIMScheduler scheduler(options.ddim, options.steps);
  auto timesteps = scheduler.timesteps();
  const int64_t n = options.steps, b = z0.size(0);
  auto& unet = pipe.model()->unet;
  std::vector<torch::Tensor> latents{z0.to(pipe.device(), torch::kFloat32)};
  auto z = latents.back();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = timesteps[n - 1 - i].item<int64_t>();
    unet->set_step(static_cast<int>(i));
    torch::Tensor eps;
    if (options.guidance == 1.0) {
      eps = pipe.predict_eps(z, torch::tensor(t), context);
    } else {
      if (!uncond.defined()) throw Error("inversion with guidance needs an unconditional embedding");
      auto ctx = torch::cat({uncond.expand({b, -1, -1}), context.expand({b, -1, -1})});
      auto parts = pipe.predict_eps(torch::cat({z, z}), torch::tensor(t), ctx).chunk(2);
      eps = parts[0] + options.guidance * (parts[1] - parts[0]);
    }
    z = scheduler.invert_step(eps, t, z);
    latents.push_back(z);
    if (on_step) on_step(i + 1, n);
  }
  return latents;
}

torch::Tensor ddim_sample(Pipeline& pipe, const torch::Tensor& z_T, const torch::Tensor& cond,
                          const torch::Tensor& uncond, double guidance, const InversionOptions& options,
                          const std::vector<torch::Tensor>& uncond_per_step) {
  torch::NoGradGuard no_grad;
  DDIMScheduler scheduler(options.ddim, options.steps);
  auto timesteps = scheduler.timesteps();
  auto z = z_T.to(pipe.device(), torch::kFloat32);
  for (int64_t i = 0; i < options.steps; ++i) {
    const int64_t t = timesteps[i].item<int64_t>();
    pipe.model()->unet->set_step(static_cast<int>(i));
    torch::Tensor eps;
    if (guidance == 1.0 && uncond_per_step.empty()) {
      eps = pipe.predict_eps(z, torch::tensor(t), cond);
    } else {
      auto u = uncond_per_step.empty() ? uncond : uncond_per_step[i];
      eps = pipe.predict_eps_cfg(z, t, u, cond, guidance);
    }
    z = scheduler.step(eps, t, z).prev_sample;
  }
  return z;
}

double psnr(const torch::Tensor& a, const torch::Tensor& b) {
  auto d = ((a.to(torch::kFloat64).cpu() - b.to(torch::kFloat64).cpu()) / 2.0);
  const double mse = d.pow(2).mean().item<double>();
  return mse <= 0 ? 99.0 : -10.0 * std::log10(mse);
}

}  // namespace sine
