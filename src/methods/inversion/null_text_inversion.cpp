#include "methods/inversion/null_text_inversion.h"

#include "core/error.h"
#include "diffusion/guidance.h"
#include "diffusion/sampler.h"

namespace sine {

namespace {

// Freezes every parameter of a module for the guard's lifetime (only φ is optimised).
class FrozenParameters {
 public:
  explicit FrozenParameters(torch::nn::Module& module) {
    for (auto& p : module.parameters()) {
      saved_.emplace_back(p, p.requires_grad());
      p.requires_grad_(false);
    }
  }
  ~FrozenParameters() {
    for (auto& [p, requires_grad] : saved_) p.requires_grad_(requires_grad);
  }
  FrozenParameters(const FrozenParameters&) = delete;
  FrozenParameters& operator=(const FrozenParameters&) = delete;

 private:
  std::vector<std::pair<torch::Tensor, bool>> saved_;
};

}  // namespace

NullTextResult null_text_inversion(Pipeline& pipe, const std::vector<torch::Tensor>& latents,
                                   const torch::Tensor& cond, const torch::Tensor& uncond_init,
                                   const InversionOptions& inversion, const NullTextOptions& options,
                                   const StepCallback& on_step) {
  const int64_t n = inversion.steps;
  if (static_cast<int64_t>(latents.size()) != n + 1)
    throw Error("null-text inversion: " + std::to_string(latents.size()) + " latents for " + std::to_string(n) +
                " steps (need steps + 1)");
  SamplerConfig ddim;
  ddim.steps = n;
  ddim.ddim = inversion.ddim;
  auto sampler = make_sampler(ddim);
  auto& unet = pipe.model()->unet;
  FrozenParameters frozen(*unet);
  torch::AutoGradMode grad_mode(true);  // callers may run under NoGradGuard
  NullTextResult result;
  auto dtype = pipe.dtype();
  auto c = cond.to(pipe.device(), dtype);
  auto phi = uncond_init.to(pipe.device(), torch::kFloat32).detach().clone();

  // Step i (noisiest first): optimise φ_i so that the guided DDIM step from z lands on the
  // pivot z*_{t-1}, then ε is CFG under φ_i and z advances with it (not reset to z*).
  auto eps = [&](const torch::Tensor& z, double t, int64_t i) {
    auto ts = timestep_tensor(t, 1, pipe.device());
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
      auto loss = torch::mse_loss(sampler->step(classifier_free_guidance(eps_u, eps_c, options.guidance), i, z, {}),
                                  target);
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

    torch::NoGradGuard no_grad;
    auto ctx = torch::cat({phi.to(dtype), c});
    auto parts = unet->forward(torch::cat({z, z}).to(dtype), timestep_tensor(t, 2, pipe.device()), ctx)
                     .to(torch::kFloat32)
                     .chunk(2);
    return classifier_free_guidance(parts[0], parts[1], options.guidance);
  };
  SampleLoopOptions loop;
  loop.unet = unet;
  loop.on_step = on_step;
  sample(*sampler, latents[n].to(pipe.device(), torch::kFloat32), eps, loop);
  return result;
}

}  // namespace sine
