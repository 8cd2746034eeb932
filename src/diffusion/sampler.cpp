#include "diffusion/sampler.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "diffusion/noise_schedule.h"

namespace sine {

namespace {

// σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) for every training timestep, in float32 as diffusers computes it.
std::vector<float> training_sigmas(const NoiseSchedule& schedule) {
  std::vector<float> sigmas(schedule.num_train_timesteps());
  for (int64_t t = 0; t < schedule.num_train_timesteps(); ++t) {
    const float a = schedule.alpha_cumprod(t);
    sigmas[t] = std::sqrt((1.0f - a) / a);
  }
  return sigmas;
}

// np.interp(t, arange(T), sigmas).
double interpolate_sigma(const std::vector<float>& sigmas, double t) {
  const double hi = static_cast<double>(sigmas.size() - 1);
  t = std::clamp(t, 0.0, hi);
  const auto lo = static_cast<size_t>(std::floor(t));
  if (lo + 1 >= sigmas.size()) return sigmas.back();
  const double w = t - static_cast<double>(lo);
  return w == 0.0 ? sigmas[lo] : (1.0 - w) * sigmas[lo] + w * sigmas[lo + 1];
}

// The (fractional) timestep whose log σ interpolates to log `sigma` (diffusers' _sigma_to_t).
double sigma_to_timestep(const std::vector<float>& sigmas, double sigma) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t n = static_cast<int64_t>(sigmas.size());
  int64_t low = 0;
  for (int64_t i = 0; i < n; ++i)
    if (log_sigma - static_cast<double>(std::log(sigmas[i])) >= 0) low = i;
  low = std::min(low, n - 2);
  const double lo = std::log(sigmas[low]), hi = std::log(sigmas[low + 1]);
  const double w = std::clamp((lo - log_sigma) / (lo - hi), 0.0, 1.0);
  return (1.0 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

// Karras et al. (2022) eq. 5 with ρ = 7: n sigmas from sigma_max down to sigma_min.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n) {
  const double rho = 7.0, min_inv = std::pow(sigma_min, 1.0 / rho), max_inv = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const double ramp = n == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(n - 1);
    out[i] = std::pow(max_inv + ramp * (min_inv - max_inv), rho);
  }
  return out;
}

// "leading" spacing: (arange(n) · (T // divisor))[::-1] + offset, the first n of them.
std::vector<double> leading_timesteps(int64_t n, int64_t divisor, const DDIMConfig& c) {
  const int64_t ratio = c.num_train_timesteps / divisor;
  std::vector<double> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<double>((divisor - 1 - i) * ratio + c.steps_offset);
  return t;
}

torch::Tensor scaled(const torch::Tensor& x, float s) { return x * s; }

class DDIMSampler : public Sampler {
 public:
  DDIMSampler(const DDIMConfig& config, int64_t steps, double eta) : scheduler_(config, steps), eta_(eta) {
    auto t = scheduler_.timesteps();
    for (int64_t i = 0; i < t.size(0); ++i) timesteps_.push_back(t[i].item<int64_t>());
  }
  std::string name() const override { return "ddim"; }
  int64_t num_evaluations() const override { return static_cast<int64_t>(timesteps_.size()); }
  double timestep(int64_t i) const override { return static_cast<double>(timesteps_.at(i)); }
  bool needs_noise() const override { return eta_ > 0; }
  torch::Tensor step(const torch::Tensor& eps, int64_t i, const torch::Tensor& x, const torch::Tensor& noise) override {
    return scheduler_.step(eps, timesteps_.at(i), x, eta_, c10::nullopt, noise).prev_sample;
  }
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, int64_t i) const override {
    return sine::add_noise(x0, noise, torch::tensor(timesteps_.at(i), torch::kLong).view({1}).to(x0.device()),
                           scheduler_.schedule());
  }

 private:
  DDIMScheduler scheduler_;
  double eta_;
  std::vector<int64_t> timesteps_;
};

class DDIMInversionSampler : public Sampler {
 public:
  DDIMInversionSampler(const DDIMConfig& config, int64_t steps) : scheduler_(config, steps) {
    auto t = scheduler_.timesteps();
    for (int64_t i = t.size(0) - 1; i >= 0; --i) timesteps_.push_back(t[i].item<int64_t>());
  }
  std::string name() const override { return "ddim_inversion"; }
  int64_t num_evaluations() const override { return static_cast<int64_t>(timesteps_.size()); }
  double timestep(int64_t i) const override { return static_cast<double>(timesteps_.at(i)); }
  torch::Tensor step(const torch::Tensor& eps, int64_t i, const torch::Tensor& x, const torch::Tensor&) override {
    return scheduler_.invert_step(eps, timesteps_.at(i), x);
  }
  torch::Tensor add_noise(const torch::Tensor&, const torch::Tensor&, int64_t) const override {
    throw Error("DDIM inversion starts from the clean latent; it has no img2img start");
  }

 private:
  DDIMScheduler scheduler_;
  std::vector<int64_t> timesteps_;
};

// The k-diffusion samplers in σ space (x = x0 + σ·ε), as diffusers' Euler/Heun schedulers:
// the model sees x / sqrt(σ² + 1) at the timestep whose σ this is.
class SigmaSampler : public Sampler {
 public:
  SigmaSampler(std::vector<double> timesteps, std::vector<float> sigmas)
      : timesteps_(std::move(timesteps)), sigmas_(std::move(sigmas)) {}
  int64_t num_evaluations() const override { return static_cast<int64_t>(timesteps_.size()); }
  double timestep(int64_t i) const override { return timesteps_.at(i); }
  double init_noise_sigma() const override {
    const float max_sigma = *std::max_element(sigmas_.begin(), sigmas_.end());
    return std::sqrt(max_sigma * max_sigma + 1.0f);  // "leading" spacing: the VP-equivalent scale
  }
  torch::Tensor scale_model_input(const torch::Tensor& x, int64_t i) const override {
    const float s = sigmas_.at(i);
    return x / std::sqrt(s * s + 1.0f);
  }
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, int64_t i) const override {
    return x0 + scaled(noise, sigmas_.at(i));
  }
  const std::vector<float>& sigmas() const { return sigmas_; }

 protected:
  std::vector<double> timesteps_;
  std::vector<float> sigmas_;  // one per evaluation, then the final (0)
};

class EulerSampler : public SigmaSampler {
 public:
  using SigmaSampler::SigmaSampler;
  std::string name() const override { return "euler"; }
  torch::Tensor step(const torch::Tensor& eps, int64_t i, const torch::Tensor& x, const torch::Tensor&) override {
    const float sigma = sigmas_[i], sigma_next = sigmas_[i + 1];
    auto x0 = x - scaled(eps, sigma);
    auto derivative = (x - x0) / sigma;
    return x + scaled(derivative, sigma_next - sigma);
  }
};

// Euler ancestral: a deterministic step to σ_down, then fresh noise of σ_up (σ_down² + σ_up² = σ_next²).
class EulerAncestralSampler : public SigmaSampler {
 public:
  using SigmaSampler::SigmaSampler;
  std::string name() const override { return "euler_a"; }
  bool needs_noise() const override { return true; }
  torch::Tensor step(const torch::Tensor& eps, int64_t i, const torch::Tensor& x, const torch::Tensor& noise) override {
    const float from = sigmas_[i], to = sigmas_[i + 1];
    const float up = std::sqrt(to * to * (from * from - to * to) / (from * from));
    const float down = std::sqrt(to * to - up * up);
    auto x0 = x - scaled(eps, from);
    auto derivative = (x - x0) / from;
    return x + scaled(derivative, down - from) + scaled(noise, up);
  }
};

// Heun (Karras et al. 2022, Alg. 1 without churn): an Euler step, then the average of the slopes
// at both ends. Evaluations alternate: 2k is step k's Euler half, 2k + 1 its correction; the last
// step (to σ = 0) is Euler alone.
class HeunSampler : public SigmaSampler {
 public:
  using SigmaSampler::SigmaSampler;
  std::string name() const override { return "heun"; }
  int64_t evaluation_of_step(int64_t step) const override { return 2 * step; }
  void reset() override { first_half_ = {}; }
  torch::Tensor step(const torch::Tensor& eps, int64_t i, const torch::Tensor& x, const torch::Tensor&) override {
    if (!first_half_.sample.defined()) {
      const float sigma = sigmas_[i], sigma_next = sigmas_[i + 1];
      auto x0 = x - scaled(eps, sigma);
      auto derivative = (x - x0) / sigma;
      first_half_ = {derivative, x, sigma_next - sigma};
      return x + scaled(derivative, first_half_.dt);
    }
    const float sigma_next = sigmas_[i];
    auto x0 = x - scaled(eps, sigma_next);
    auto derivative = ((x - x0) / sigma_next + first_half_.derivative) / 2;
    auto out = first_half_.sample + scaled(derivative, first_half_.dt);
    first_half_ = {};
    return out;
  }

 private:
  struct FirstHalf {
    torch::Tensor derivative, sample;
    float dt = 0;
  } first_half_;
};

// DPM-Solver++(2M) (Lu et al. 2022), diffusers' DPMSolverMultistepScheduler with the SD settings:
// VP latents (x = α·x0 + σ_t·ε, α = 1/sqrt(σ²+1)), data prediction, midpoint second-order
// update from the last two x0 predictions, first order on the first and (with < 15 steps or a
// final σ of 0) the last step.
class DPMpp2MSampler : public Sampler {
 public:
  DPMpp2MSampler(std::vector<double> timesteps, std::vector<float> sigmas)
      : timesteps_(std::move(timesteps)), sigmas_(std::move(sigmas)) {}
  std::string name() const override { return "dpmpp_2m"; }
  int64_t num_evaluations() const override { return static_cast<int64_t>(timesteps_.size()); }
  double timestep(int64_t i) const override { return timesteps_.at(i); }
  void reset() override { previous_x0_ = torch::Tensor(); }
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, int64_t i) const override {
    const auto [alpha, sigma] = alpha_sigma(sigmas_.at(i));
    return scaled(x0, alpha) + scaled(noise, sigma);
  }
  torch::Tensor step(const torch::Tensor& eps, int64_t i, const torch::Tensor& x, const torch::Tensor&) override {
    const auto [alpha_s0, sigma_s0] = alpha_sigma(sigmas_[i]);
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_[i + 1]);
    auto x0 = (x - scaled(eps, sigma_s0)) / alpha_s0;
    const double lambda_t = std::log(alpha_t) - std::log(sigma_t), lambda_s0 = std::log(alpha_s0) - std::log(sigma_s0);
    const float h = static_cast<float>(lambda_t - lambda_s0);
    const float phi = alpha_t * (std::exp(-h) - 1.0f);
    const bool last = i + 1 == num_evaluations();
    const bool lower_order_final = last && (num_evaluations() < 15 || sigmas_[i + 1] == 0.0f);
    torch::Tensor out;
    if (!previous_x0_.defined() || lower_order_final) {
      out = scaled(x, sigma_t / sigma_s0) - scaled(x0, phi);
    } else {
      const auto [alpha_s1, sigma_s1] = alpha_sigma(sigmas_[i - 1]);
      const float lambda_s1 = std::log(alpha_s1) - std::log(sigma_s1);
      const float r0 = (static_cast<float>(lambda_s0) - lambda_s1) / h;
      auto d1 = scaled(x0 - previous_x0_, 1.0f / r0);
      out = scaled(x, sigma_t / sigma_s0) - scaled(x0, phi) - scaled(d1, 0.5f * phi);
    }
    previous_x0_ = x0;
    return out;
  }

 private:
  static std::pair<float, float> alpha_sigma(float sigma) {
    const float alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
    return {alpha, sigma * alpha};
  }
  std::vector<double> timesteps_;
  std::vector<float> sigmas_;
  torch::Tensor previous_x0_;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::vector<std::string> sampler_names() { return {"ddim", "euler", "euler_a", "heun", "dpmpp_2m"}; }

std::string canonical_sampler_name(const std::string& name) {
  const std::string n = lower(name);
  if (n == "ddim") return "ddim";
  if (n == "euler") return "euler";
  if (n == "euler_a" || n == "euler a" || n == "euler_ancestral" || n == "k_euler_a") return "euler_a";
  if (n == "heun") return "heun";
  if (n == "dpmpp_2m" || n == "dpm++2m" || n == "dpm++ 2m" || n == "dpm++_2m" || n == "k_dpmpp_2m") return "dpmpp_2m";
  std::string known;
  for (const auto& s : sampler_names()) known += (known.empty() ? "" : ", ") + s;
  throw Error("sampling_method: '" + name + "' is not one of " + known);
}

SigmaSchedule parse_sigma_schedule(const std::string& name) {
  const std::string n = lower(name);
  if (n.empty() || n == "default" || n == "discrete" || n == "normal" || n == "automatic") return SigmaSchedule::standard;
  if (n == "karras") return SigmaSchedule::karras;
  throw Error("scheduler: '" + name + "' is not one of default, karras");
}

std::string sampler_display_name(const std::string& method) {
  const std::string m = canonical_sampler_name(method);
  if (m == "ddim") return "DDIM";
  if (m == "euler") return "Euler";
  if (m == "euler_a") return "Euler a";
  if (m == "heun") return "Heun";
  return "DPM++ 2M";
}

void SamplerConfig::validate() const {
  const std::string m = canonical_sampler_name(method);
  if (steps < 1) throw Error("steps: must be at least 1 (got " + std::to_string(steps) + ")");
  if (!std::isfinite(eta) || eta < 0) throw Error("eta: must be a finite number >= 0");
  if (eta > 0 && m != "ddim") throw Error("eta: only the ddim sampler takes eta (got " + m + ")");
  if (schedule == SigmaSchedule::karras && m == "ddim")
    throw Error("schedule: karras sigmas need a k-diffusion sampler (euler, euler_a, heun, dpmpp_2m), not ddim");
  if (m == "dpmpp_2m" && steps >= ddim.num_train_timesteps)
    throw Error("steps: dpmpp_2m takes fewer than " + std::to_string(ddim.num_train_timesteps) + " steps");
}

std::unique_ptr<Sampler> make_sampler(const SamplerConfig& c) {
  c.validate();
  const std::string m = canonical_sampler_name(c.method);
  if (m == "ddim") return std::make_unique<DDIMSampler>(c.ddim, c.steps, c.eta);
  const NoiseSchedule schedule(c.ddim.beta_start, c.ddim.beta_end, c.ddim.num_train_timesteps);
  const auto train = training_sigmas(schedule);
  const bool karras = c.schedule == SigmaSchedule::karras;
  const int64_t n = c.steps;

  if (m == "dpmpp_2m") {
    // diffusers spaces DPM-Solver's "leading" timesteps over n + 1 intervals and drops the last;
    // Karras sigmas span the whole training range, and their timesteps are rounded.
    std::vector<double> t = leading_timesteps(n, n + 1, c.ddim);
    std::vector<float> sigmas;
    if (karras) {
      auto k = karras_sigmas(train.front(), train.back(), n);
      for (int64_t i = 0; i < n; ++i) {
        t[i] = std::round(sigma_to_timestep(train, k[i]));
        sigmas.push_back(static_cast<float>(k[i]));
      }
    } else {
      for (double ti : t) sigmas.push_back(static_cast<float>(interpolate_sigma(train, ti)));
    }
    sigmas.push_back(0.0f);
    return std::make_unique<DPMpp2MSampler>(t, sigmas);
  }

  std::vector<double> t = leading_timesteps(n, n, c.ddim);
  if (t.front() >= static_cast<double>(c.ddim.num_train_timesteps))
    throw Error("steps: " + std::to_string(n) + " steps reach past the last training timestep");
  std::vector<double> sig;
  for (double ti : t) sig.push_back(interpolate_sigma(train, ti));
  if (karras) {
    sig = karras_sigmas(sig.back(), sig.front(), n);
    for (int64_t i = 0; i < n; ++i) t[i] = sigma_to_timestep(train, sig[i]);
  }
  // Euler's timesteps are float32 (Heun keeps float64; the UNet embeds both in float32).
  std::vector<float> sigmas;
  for (double s : sig) sigmas.push_back(static_cast<float>(s));
  if (m == "heun") {
    // Every σ but the first and the final 0 twice, every timestep but the first twice.
    std::vector<float> hs{sigmas.front()};
    std::vector<double> ht{t.front()};
    for (int64_t i = 1; i < n; ++i) {
      hs.insert(hs.end(), {sigmas[i], sigmas[i]});
      ht.insert(ht.end(), {t[i], t[i]});
    }
    hs.push_back(0.0f);
    return std::make_unique<HeunSampler>(ht, hs);
  }
  for (auto& ti : t) ti = static_cast<double>(static_cast<float>(ti));
  sigmas.push_back(0.0f);
  if (m == "euler_a") return std::make_unique<EulerAncestralSampler>(t, sigmas);
  return std::make_unique<EulerSampler>(t, sigmas);
}

std::unique_ptr<Sampler> make_ddim_inversion(const DDIMConfig& config, int64_t steps) {
  if (steps < 1) throw Error("steps: must be at least 1 (got " + std::to_string(steps) + ")");
  return std::make_unique<DDIMInversionSampler>(config, steps);
}

torch::Tensor timestep_tensor(double t, int64_t batch, torch::Device device) {
  if (t == std::floor(t)) return torch::full({batch}, static_cast<int64_t>(t), torch::kLong).to(device);
  return torch::full({batch}, t, torch::kFloat32).to(device);
}

torch::Tensor sample(Sampler& sampler, torch::Tensor x, const EpsFunction& eps, const SampleLoopOptions& o) {
  const int64_t n = sampler.num_evaluations();
  if (o.first < 0 || o.first > n)
    throw Error("sampling: first evaluation " + std::to_string(o.first) + " outside 0.." + std::to_string(n));
  if (o.noises.defined() && o.noises.size(0) < n)
    throw Error("sampling: " + std::to_string(o.noises.size(0)) + " noise tensors for " + std::to_string(n) +
                " evaluations");
  sampler.reset();
  UNetModel unet = o.unet;
  auto require_finite = [&](const torch::Tensor& v, int64_t i) {
    if (!torch::isfinite(v).all().item<bool>())
      throw Error("sampling (" + sampler.name() + "): the latent became NaN/Inf at evaluation " + std::to_string(i + 1) +
                  " of " + std::to_string(n) + " (t = " + std::to_string(sampler.timestep(i)) +
                  "); try float32, a lower CFG scale or another sampler");
  };
  if (o.trajectory) o.trajectory->push_back(x);
  for (int64_t i = o.first; i < n; ++i) {
    if (o.before_step) o.before_step(i, x);
    if (unet) unet->set_step(static_cast<int>(i));
    torch::Tensor e = eps(sampler.scale_model_input(x, i), sampler.timestep(i), i);
    torch::Tensor noise;
    if (sampler.needs_noise()) {
      if (o.noises.defined()) {
        noise = o.noises[i].to(x.options());
      } else if (o.generator) {
        noise = torch::randn(x.sizes(), *o.generator, x.options().device(torch::kCPU).dtype(torch::kFloat32))
                    .to(x.options());
      } else {
        noise = torch::randn(x.sizes(), x.options().dtype(torch::kFloat32)).to(x.options());
      }
    }
    x = sampler.step(e, i, x, noise);
    if (o.after_step) x = o.after_step(i, std::move(x));
    if (o.check_finite && x.device().is_cpu()) require_finite(x, i);
    if (o.trajectory) o.trajectory->push_back(x);
    if (o.on_step) o.on_step(i - o.first + 1, n - o.first);
    if (o.on_latents) o.on_latents(i - o.first + 1, n - o.first, x);
  }
  if (o.check_finite && !x.device().is_cpu() && n > o.first) require_finite(x, n - 1);
  return x;
}

}  // namespace sine
