#include "diffusion/noise_schedule.h"

#include <cmath>

#include "core/error.h"

namespace sine {

NoiseSchedule::NoiseSchedule(double beta_start, double beta_end, int64_t num_train_timesteps) {
  if (num_train_timesteps < 1 || !(beta_start > 0) || !(beta_end >= beta_start) || beta_end >= 1)
    throw Error("noise schedule: need 0 < beta_start <= beta_end < 1 and at least one timestep (got beta " +
                std::to_string(beta_start) + ".." + std::to_string(beta_end) + ", " +
                std::to_string(num_train_timesteps) + " timesteps)");
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  betas_ = torch::linspace(std::sqrt(beta_start), std::sqrt(beta_end), num_train_timesteps, f32).pow(2);
  alphas_cumprod_ = torch::cumprod(1.0 - betas_, 0);
  auto acc = alphas_cumprod_.accessor<float, 1>();
  table_.assign(acc.data(), acc.data() + num_train_timesteps);
}

const NoiseSchedule& NoiseSchedule::stable_diffusion() {
  static const NoiseSchedule schedule;
  return schedule;
}

float NoiseSchedule::alpha_cumprod(int64_t t) const {
  if (t < 0 || t >= num_train_timesteps())
    throw Error("timestep " + std::to_string(t) + " is outside the noise schedule [0, " +
                std::to_string(num_train_timesteps()) + ")");
  return table_[static_cast<size_t>(t)];
}

torch::Tensor NoiseSchedule::alpha_cumprod(const torch::Tensor& t, const torch::Tensor& like) const {
  return alpha_cumprod_f32(t, like).to(like.scalar_type());
}

torch::Tensor NoiseSchedule::alpha_cumprod_f32(const torch::Tensor& t, const torch::Tensor& like) const {
  if (t.scalar_type() != torch::kLong || t.dim() > 1)
    throw Error("timesteps must be an int64 tensor of shape [B] (got " + std::string(c10::toString(t.scalar_type())) +
                " with " + std::to_string(t.dim()) + " dims)");
  if (t.numel() == 0) throw Error("timesteps: empty tensor");
  if ((t.lt(0) | t.ge(num_train_timesteps())).any().item<bool>())
    throw Error("timesteps must lie in [0, " + std::to_string(num_train_timesteps()) + ")");
  auto flat = t.reshape({-1});
  if (like.dim() >= 1 && flat.size(0) != 1 && flat.size(0) != like.size(0))
    throw Error("timesteps: " + std::to_string(flat.size(0)) + " values for a batch of " +
                std::to_string(like.size(0)));
  auto alpha = alphas_cumprod_.to(t.device()).index_select(0, flat).to(like.device());
  std::vector<int64_t> shape(static_cast<size_t>(std::max<int64_t>(like.dim(), 1)), 1);
  shape[0] = flat.size(0);
  return alpha.view(shape);
}

std::pair<torch::Tensor, torch::Tensor> NoiseSchedule::signal_and_noise_scales(const torch::Tensor& t,
                                                                              const torch::Tensor& like) const {
  auto alpha = alpha_cumprod_f32(t, like);
  return {alpha.sqrt().to(like.scalar_type()), (1 - alpha).sqrt().to(like.scalar_type())};
}

torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t,
                        const NoiseSchedule& schedule) {
  auto [signal, noise_scale] = schedule.signal_and_noise_scales(t, x0);
  return signal * x0 + noise_scale * noise;
}

torch::Tensor pred_x0_from_eps(const torch::Tensor& x_t, const torch::Tensor& eps, const torch::Tensor& t,
                               const NoiseSchedule& schedule) {
  auto [signal, noise_scale] = schedule.signal_and_noise_scales(t, x_t);
  return (x_t - noise_scale * eps) / signal;
}

torch::Tensor epsilon_loss(const torch::Tensor& eps_pred, const torch::Tensor& eps) {
  return torch::mse_loss(eps_pred.to(torch::kFloat32), eps.to(torch::kFloat32));
}

torch::Tensor sample_timesteps(int64_t batch, c10::optional<at::Generator> generator, torch::Device device,
                               int64_t num_train_timesteps) {
  auto draw_on = generator.has_value() ? generator->device() : torch::Device(torch::kCPU);
  auto options = torch::TensorOptions().dtype(torch::kLong).device(draw_on);
  return torch::randint(0, num_train_timesteps, {batch}, generator, options).to(device);
}

}  // namespace sine
