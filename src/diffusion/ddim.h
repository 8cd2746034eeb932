#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "diffusion/noise_schedule.h"

namespace sine {

// diffusers' DDIMScheduler settings that differ between the codebases this project follows.
// Timesteps are "leading": (arange(n) * (T // n))[::-1] + steps_offset.
struct DDIMConfig {
  int64_t num_train_timesteps = 1000;
  int64_t steps_offset = 1;
  // ᾱ used after the last step (t − T/n < 0): 1, or ᾱ_0 (= 0.99915 for SD) when false.
  bool set_alpha_to_one = false;
  double beta_start = 0.00085, beta_end = 0.012;

  // SD pipelines, SINE and SingleInsert: 981…1 for 50 steps, final ᾱ = ᾱ_0. LDM's DDIMSampler
  // (arange(0, T, T//n) + 1, alphas_prev[0] = ᾱ_0) is the same schedule.
  static DDIMConfig stable_diffusion() { return {}; }
  // Prompt-to-Prompt / null-text inversion notebook: no offset (980…0), final ᾱ = ᾱ_0.
  static DDIMConfig null_text_inversion() {
    DDIMConfig c;
    c.steps_offset = 0;
    return c;
  }
  // SpecRef (specp2p): offset 1 (981…1), final ᾱ = 1.
  static DDIMConfig specref() {
    DDIMConfig c;
    c.set_alpha_to_one = true;
    return c;
  }
};

struct DDIMStepOutput {
  torch::Tensor prev_sample;           // x at prev_timestep(t)
  torch::Tensor pred_original_sample;  // predicted x0
};

// Deterministic (η = 0) or stochastic DDIM with eps-prediction and no clipping, matching
// diffusers 0.27 DDIMScheduler.step. Scalars are taken from the float32 ᾱ table and computed in
// float32 as diffusers does; tensor math runs in the inputs' dtype on their device.
class DDIMScheduler {
 public:
  explicit DDIMScheduler(const DDIMConfig& config = DDIMConfig::stable_diffusion(),
                         int64_t num_inference_steps = 50);

  const DDIMConfig& config() const { return config_; }
  const NoiseSchedule& schedule() const { return schedule_; }
  int64_t num_inference_steps() const { return num_inference_steps_; }
  // Changes the number of sampling steps (diffusers' set_timesteps) and returns timesteps().
  torch::Tensor set_timesteps(int64_t num_inference_steps);
  // I64 [n] on the CPU, noisiest first.
  torch::Tensor timesteps() const;
  // t − T/n; negative after the last step.
  int64_t prev_timestep(int64_t t) const { return t - step_stride(); }
  int64_t step_stride() const { return config_.num_train_timesteps / num_inference_steps_; }
  // ᾱ_t for t in [0, T), the final ᾱ for t < 0.
  float alpha_cumprod(int64_t t) const;

  // One step from x at t to prev_timestep(t). With η > 0 it adds σ_t·z (diffusers' variance):
  // z is `variance_noise` when given (same shape as x), else drawn from `generator` (on the
  // generator's device, then moved), so equal noise or equal seeds give equal results.
  DDIMStepOutput step(const torch::Tensor& eps, int64_t t, const torch::Tensor& x, double eta = 0.0,
                      c10::optional<at::Generator> generator = c10::nullopt,
                      const torch::Tensor& variance_noise = {}) const;

  // DDIM inversion, the inverse of step() at η = 0: x lies at prev_timestep(t) (final ᾱ when
  // negative) and the result at t. This is `next_step(eps, t, x)` of the null-text / P2P
  // notebook and of SpecRef: the inversion loop runs t over timesteps() in reverse (1, 21, …,
  // 981) with eps = UNet(x, t), so eps is evaluated at the level the latent moves to.
  torch::Tensor invert_step(const torch::Tensor& eps, int64_t t, const torch::Tensor& x) const;

 private:
  DDIMConfig config_;
  NoiseSchedule schedule_;
  int64_t num_inference_steps_ = 0;
  float final_alpha_cumprod_ = 1.0f;
};

}  // namespace sine
