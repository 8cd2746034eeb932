#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace sine {

// The DDPM "scaled_linear" schedule of SD 1.x, computed in float32 exactly as diffusers does
// (the LDM code computes in float64 and casts; the two differ by <= 4.7e-7).
class NoiseSchedule {
 public:
  explicit NoiseSchedule(double beta_start = 0.00085, double beta_end = 0.012,
                         int64_t num_train_timesteps = 1000);
  // The schedule every SD 1.x model was trained with, built once.
  static const NoiseSchedule& stable_diffusion();

  int64_t num_train_timesteps() const { return static_cast<int64_t>(table_.size()); }
  const torch::Tensor& betas() const { return betas_; }                    // F32 [T], CPU
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }  // F32 [T], CPU
  // ᾱ_t for one timestep in [0, T); throws sine::Error otherwise.
  float alpha_cumprod(int64_t t) const;
  // ᾱ_t for timesteps `t` (I64, 0-dim or [B]) shaped [B,1,1,...] to broadcast against `like`,
  // on like's device and in like's dtype (looked up in the float32 table).
  torch::Tensor alpha_cumprod(const torch::Tensor& t, const torch::Tensor& like) const;
  // {sqrt(ᾱ_t), sqrt(1−ᾱ_t)} shaped like alpha_cumprod(t, like); the square roots are taken in
  // float32 (CPU half has no sqrt) and then cast to like's dtype.
  std::pair<torch::Tensor, torch::Tensor> signal_and_noise_scales(const torch::Tensor& t,
                                                                  const torch::Tensor& like) const;

 private:
  torch::Tensor alpha_cumprod_f32(const torch::Tensor& t, const torch::Tensor& like) const;

  torch::Tensor betas_, alphas_cumprod_;
  std::vector<float> table_;
};

// Training helpers (eps-prediction). `t` is I64 [B] (or 0-dim for the whole batch).
// x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε
torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t,
                        const NoiseSchedule& schedule = NoiseSchedule::stable_diffusion());
// x0 = (x_t − sqrt(1−ᾱ_t)·ε) / sqrt(ᾱ_t)
torch::Tensor pred_x0_from_eps(const torch::Tensor& x_t, const torch::Tensor& eps, const torch::Tensor& t,
                               const NoiseSchedule& schedule = NoiseSchedule::stable_diffusion());
// Mean squared error over all elements, computed in float32 even for half inputs.
torch::Tensor epsilon_loss(const torch::Tensor& eps_pred, const torch::Tensor& eps);
// t ~ U{0..T−1}, I64 [batch] on `device`. The draw happens on the generator's device (CPU when
// none is given) so a seed gives the same timesteps whatever device the model runs on.
torch::Tensor sample_timesteps(int64_t batch, c10::optional<at::Generator> generator = c10::nullopt,
                               torch::Device device = torch::Device(torch::kCPU),
                               int64_t num_train_timesteps = 1000);

}  // namespace sine
