#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "diffusion/ddim.h"
#include "models/unet.h"

namespace sine {

// The one sampling loop every pipeline and method runs (stable-diffusion.cpp's sample_k_diffusion
// with its denoise callback; google/prompt-to-prompt's diffusion_step + step_callback). A method
// is an ε function (what the UNet is asked and how the answers are mixed: CFG, SINE's model-based
// guidance, null-text embeddings) and step hooks (P2P's latent overwrite, LocalBlend); the loop
// owns the schedule, the model-input scaling, the step counter the attention hooks read, the
// ancestral noise and the progress callback.

// ε for the (already scaled) model input `x` at model timestep `t` (fractional for Karras
// sigmas), evaluation `i` of the loop (0-based).
using EpsFunction = std::function<torch::Tensor(const torch::Tensor& x, double t, int64_t i)>;
// Called once per finished evaluation (1-based) with the total.
using StepCallback = std::function<void(int64_t step, int64_t total)>;

// A sampling method over a fixed list of model evaluations, like a diffusers scheduler after
// set_timesteps: evaluation i runs the model at timestep(i) on scale_model_input(x, i), then step().
// Heun lists two evaluations per step (diffusers' HeunDiscreteScheduler), so a trajectory has one
// latent per evaluation.
class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual std::string name() const = 0;  // "ddim", "euler", "euler_a", "heun", "dpmpp_2m"
  virtual int64_t num_evaluations() const = 0;
  virtual double timestep(int64_t i) const = 0;
  // The evaluation a schedule step begins at (img2img starts there): step·2 for Heun.
  virtual int64_t evaluation_of_step(int64_t step) const { return step; }
  // x_T = unit Gaussian noise × init_noise_sigma().
  virtual double init_noise_sigma() const { return 1.0; }
  virtual torch::Tensor scale_model_input(const torch::Tensor& x, int64_t i) const { return x; }
  // Whether step(i) adds fresh noise (ancestral samplers, DDIM with η > 0).
  virtual bool needs_noise() const { return false; }
  // x after evaluation i; `noise` (shape of x) is defined exactly when needs_noise().
  virtual torch::Tensor step(const torch::Tensor& eps, int64_t i, const torch::Tensor& x,
                             const torch::Tensor& noise) = 0;
  // img2img: x0 noised to the level evaluation i starts from.
  virtual torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, int64_t i) const = 0;
  // Clears multistep state (DPM++'s previous x0, Heun's first half) so a sampler can run again.
  virtual void reset() {}
};

enum class SigmaSchedule { standard, karras };

struct SamplerConfig {
  std::string method = "ddim";  // ddim, euler, euler_a, heun, dpmpp_2m (aliases: "dpm++2m", "euler a", ...)
  SigmaSchedule schedule = SigmaSchedule::standard;
  int64_t steps = 50;
  double eta = 0.0;                               // DDIM only
  DDIMConfig ddim = DDIMConfig::stable_diffusion();  // the training schedule and timestep spacing
  // Errors name the field ("method", "steps", "eta", "schedule").
  void validate() const;
};

// The canonical method name for a user's spelling (also stable-diffusion.cpp's and A1111's:
// "dpm++2m", "DPM++ 2M", "Euler a"); throws sine::Error listing the known names.
std::string canonical_sampler_name(const std::string& name);
SigmaSchedule parse_sigma_schedule(const std::string& name);  // "default"/"discrete"/"normal" | "karras"
std::vector<std::string> sampler_names();
// AUTOMATIC1111's display name ("Euler a", "DPM++ 2M", "DDIM").
std::string sampler_display_name(const std::string& method);

std::unique_ptr<Sampler> make_sampler(const SamplerConfig& config);
// DDIM inversion as a sampler: timesteps from 1 up to 981 (the scheduler's list reversed), each
// step DDIMScheduler::invert_step; the ε function is asked at the level the latent moves to.
std::unique_ptr<Sampler> make_ddim_inversion(const DDIMConfig& config, int64_t steps);

struct SampleLoopOptions {
  int64_t first = 0;     // img2img: evaluations before this one are skipped
  UNetModel unet{nullptr};  // told the evaluation index before each call (attention hooks read it)
  // Ancestral noise: `noises[i]` when given ([evals, ...x]), else drawn from `generator` on the
  // CPU in float32 (a seed gives the same image on every device), else from the default generator.
  torch::Tensor noises;
  std::optional<torch::Generator> generator;
  // Before evaluation i, on the unscaled latent.
  std::function<void(int64_t i, const torch::Tensor& x)> before_step;
  // After evaluation i: the latent the loop continues from (P2P's step_callback: LocalBlend).
  std::function<torch::Tensor(int64_t i, torch::Tensor x)> after_step;
  StepCallback on_step;
  // After on_step, with the latent the loop continues from (previews; may throw to cancel).
  std::function<void(int64_t step, int64_t total, const torch::Tensor& x)> on_latents;
  // A latent that turns NaN/Inf stops the run with sine::Error (never a black image written as if it
  // succeeded): checked after every evaluation on the CPU, once at the end on a GPU (no host sync
  // inside the loop).
  bool check_finite = true;
  // Every latent: x at `first`, then after each evaluation.
  std::vector<torch::Tensor>* trajectory = nullptr;
};

torch::Tensor sample(Sampler& sampler, torch::Tensor x, const EpsFunction& eps,
                     const SampleLoopOptions& options = {});

// The UNet timestep tensor for t: int64 when t is whole (DDIM, DPM++), else float32 (Karras Euler).
torch::Tensor timestep_tensor(double t, int64_t batch, torch::Device device);

}  // namespace sine
