#include "diffusion/ddim.h"

#include <cmath>

#include "core/error.h"

namespace sine {

DDIMScheduler::DDIMScheduler(const DDIMConfig& config, int64_t num_inference_steps)
    : config_(config), schedule_(config.beta_start, config.beta_end, config.num_train_timesteps) {
  if (config.steps_offset < 0 || config.steps_offset >= config.num_train_timesteps)
    throw Error("DDIM: steps_offset " + std::to_string(config.steps_offset) + " must lie in [0, " +
                std::to_string(config.num_train_timesteps) + ")");
  final_alpha_cumprod_ = config.set_alpha_to_one ? 1.0f : schedule_.alpha_cumprod(0);
  set_timesteps(num_inference_steps);
}

torch::Tensor DDIMScheduler::set_timesteps(int64_t num_inference_steps) {
  if (num_inference_steps < 1 || num_inference_steps > config_.num_train_timesteps)
    throw Error("steps: the number of sampling steps must lie in [1, " + std::to_string(config_.num_train_timesteps) +
                "] (got " + std::to_string(num_inference_steps) + ")");
  num_inference_steps_ = num_inference_steps;
  return timesteps();
}

torch::Tensor DDIMScheduler::timesteps() const {
  auto leading = torch::arange(num_inference_steps_, torch::kLong) * step_stride();
  auto t = leading.flip({0}) + config_.steps_offset;
  if (t[0].item<int64_t>() >= config_.num_train_timesteps)
    throw Error("DDIM: " + std::to_string(num_inference_steps_) + " steps with steps_offset " +
                std::to_string(config_.steps_offset) + " reach past the last training timestep");
  return t;
}

float DDIMScheduler::alpha_cumprod(int64_t t) const {
  return t < 0 ? final_alpha_cumprod_ : schedule_.alpha_cumprod(t);
}

DDIMStepOutput DDIMScheduler::step(const torch::Tensor& eps, int64_t t, const torch::Tensor& x, double eta,
                                   c10::optional<at::Generator> generator,
                                   const torch::Tensor& variance_noise) const {
  if (eps.sizes() != x.sizes())
    throw Error("DDIM step: model output " + c10::str(eps.sizes()) + " and sample " + c10::str(x.sizes()) +
                " differ in shape");
  if (eta < 0) throw Error("eta: must be >= 0 (got " + std::to_string(eta) + ")");
  const float alpha_t = schedule_.alpha_cumprod(t);
  const float alpha_prev = alpha_cumprod(prev_timestep(t));
  const float beta_t = 1.0f - alpha_t;
  const float beta_prev = 1.0f - alpha_prev;

  auto x0 = (x - eps * std::sqrt(beta_t)) / std::sqrt(alpha_t);
  const float variance = (beta_prev / beta_t) * (1.0f - alpha_t / alpha_prev);
  const float std_dev = static_cast<float>(eta) * std::sqrt(variance);
  auto prev = x0 * std::sqrt(alpha_prev) + eps * std::sqrt(1.0f - alpha_prev - std_dev * std_dev);
  if (eta > 0) {
    torch::Tensor z = variance_noise;
    if (z.defined()) {
      if (z.sizes() != x.sizes())
        throw Error("DDIM step: variance noise " + c10::str(z.sizes()) + " does not match the sample " +
                    c10::str(x.sizes()));
      z = z.to(x.options());
    } else {
      auto draw_on = generator.has_value() ? generator->device() : x.device();
      z = torch::randn(x.sizes(), generator, x.options().device(draw_on).dtype(torch::kFloat32)).to(x.options());
    }
    prev = prev + z * std_dev;
  }
  return {prev, x0};
}

torch::Tensor DDIMScheduler::invert_step(const torch::Tensor& eps, int64_t t, const torch::Tensor& x) const {
  if (eps.sizes() != x.sizes())
    throw Error("DDIM inversion: model output " + c10::str(eps.sizes()) + " and sample " + c10::str(x.sizes()) +
                " differ in shape");
  const float alpha_next = schedule_.alpha_cumprod(t);
  const float alpha = alpha_cumprod(prev_timestep(t));
  auto x0 = (x - eps * std::sqrt(1.0f - alpha)) / std::sqrt(alpha);
  return x0 * std::sqrt(alpha_next) + eps * std::sqrt(1.0f - alpha_next);
}

}  // namespace sine
