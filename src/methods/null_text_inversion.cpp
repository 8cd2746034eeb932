#include "methods/null_text_inversion.h"

#include "core/error.h"

namespace sine {

NullTextResult null_text_inversion(Pipeline& pipe, const std::vector<torch::Tensor>& latents,
                                   const torch::Tensor& cond, const torch::Tensor& uncond_init,
                                   const InversionOptions& inversion, const NullTextOptions& options,
                                   const StepCallback& on_step) {
  const int64_t n = inversion.steps;
  if (static_cast<int64_t>(latents.size()) != n + 1)
    throw Error("null-text inversion: " + std::to_string(latents.size()) + " latents for " + std::to_string(n) +
                " steps (need steps + 1)");
  DDIMScheduler scheduler(inversion.ddim, n);
  auto timesteps = scheduler.timesteps();
  auto& unet = pipe.model()->unet;
  // Only φ is optimised: the networks stay frozen for the duration.
  std::vector<std::pair<torch::Tensor, bool>> frozen;
  for (auto& p : unet->parameters()) {
    frozen.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
  torch::AutoGradMode grad_mode(true);  // callers may run under NoGradGuard
  NullTextResult result;
  auto dtype = pipe.dtype();
  auto c = cond.to(pipe.device(), dtype);
  auto phi = uncond_init.to(pipe.device(), torch::kFloat32).detach().clone();
  auto z = latents[n].to(pipe.device(), torch::kFloat32);
  try {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = timesteps[i].item<int64_t>();
      auto ts = torch::full({1}, t, torch::TensorOptions().dtype(torch::kLong).device(pipe.device()));
      unet->set_step(static_cast<int>(i));
      auto target = latents[n - i - 1].to(pipe.device(), torch::kFloat32);
      torch::Tensor eps_c;
      {
        torch::NoGradGuard no_grad;
        eps_c = unet->forward(z.to(dtype), ts, c).to(torch::kFloat32);
      }
      phi = phi.detach().clone().requires_grad_(true);
      // A plain Adam per step, as the notebook (the project Trainer is AdamW with checkpoints,
      // clipping and EMA over a persistent model; none of that applies to 10 steps on one tensor).
      torch::optim::Adam adam({phi}, torch::optim::AdamOptions(options.lr * (1.0 - static_cast<double>(i) / 100.0)));
      double loss_value = 0;
      int64_t j = 0;
      for (; j < options.inner_steps; ++j) {
        auto eps_u = unet->forward(z.to(dtype), ts, phi.to(dtype)).to(torch::kFloat32);
        auto eps = eps_u + options.guidance * (eps_c - eps_u);
        auto prev = scheduler.step(eps, t, z).prev_sample;
        auto loss = torch::mse_loss(prev, target);
        adam.zero_grad();
        loss.backward();
        adam.step();
        loss_value = loss.item<double>();
        if (loss_value < options.early_stop_epsilon + static_cast<double>(i) * 2e-5) {
          ++j;
          break;
        }
      }
      result.final_loss.push_back(loss_value);
      result.iterations.push_back(j);
      phi = phi.detach();
      result.embeddings.push_back(phi.clone());
      {
        torch::NoGradGuard no_grad;
        auto ctx = torch::cat({phi.to(dtype), c});
        auto parts = unet->forward(torch::cat({z, z}).to(dtype), ts.expand({2}), ctx).to(torch::kFloat32).chunk(2);
        z = scheduler.step(parts[0] + options.guidance * (parts[1] - parts[0]), t, z).prev_sample;
      }
      if (on_step) on_step(i + 1, n);
    }
  } catch (...) {
    for (auto& [p, rg] : frozen) p.requires_grad_(rg);
    throw;
  }
  for (auto& [p, rg] : frozen) p.requires_grad_(rg);
  return result;
}

}  // namespace sine
