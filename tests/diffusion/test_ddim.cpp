#include <gtest/gtest.h>

#include <cstdio>

#include "core/error.h"
#include "diffusion/ddim.h"
#include "diffusion/guidance.h"
#include "diffusion/noise_schedule.h"
#include "io/safetensors.h"

namespace {

const std::string kFixture = std::string(SINE_SHARED_DIR) + "/reference/tiny/ddim.safetensors";

// max|a − ref| / max(1, max|ref|), the fixtures' tolerance measure.
double relative_error(const torch::Tensor& a, const torch::Tensor& ref) {
  double scale = std::max(1.0, ref.abs().max().item<double>());
  return (a.to(torch::kFloat64) - ref.to(torch::kFloat64)).abs().max().item<double>() / scale;
}

}  // namespace

TEST(NoiseSchedule, MatchesDiffusersTables) {
  auto ref = sine::SafeTensors::open(kFixture);
  const auto& s = sine::NoiseSchedule::stable_diffusion();
  double e_betas = relative_error(s.betas(), ref.get("betas"));
  double e_alphas = relative_error(s.alphas_cumprod(), ref.get("alphas_cumprod"));
  std::printf("betas max err %.3g, alphas_cumprod max err %.3g\n", e_betas, e_alphas);
  EXPECT_LE(e_betas, 1e-7);
  EXPECT_LE(e_alphas, 1e-6);
}

TEST(DDIM, TimestepsMatchDiffusers) {
  auto ref = sine::SafeTensors::open(kFixture);
  sine::DDIMScheduler scheduler;
  for (int64_t n : {20, 25, 30, 50}) {
    auto t = scheduler.set_timesteps(n);
    EXPECT_TRUE(torch::equal(t, ref.get("timesteps_" + std::to_string(n)))) << n << " steps: " << t;
  }
  EXPECT_EQ(scheduler.timesteps()[0].item<int64_t>(), 981);
  EXPECT_EQ(scheduler.prev_timestep(981), 961);
}

TEST(DDIM, StepMatchesDiffusers) {
  auto ref = sine::SafeTensors::open(kFixture);
  sine::DDIMScheduler scheduler(sine::DDIMConfig::stable_diffusion(), 50);
  auto eps = ref.get("step.model_output"), x = ref.get("step.sample");
  for (int64_t t : {981, 501, 1}) {
    std::string key = "step_t" + std::to_string(t);
    ASSERT_EQ(ref.get(key + ".timestep").item<int64_t>(), t);
    auto out = scheduler.step(eps, t, x);
    double e_prev = relative_error(out.prev_sample, ref.get(key + ".prev_sample"));
    double e_x0 = relative_error(out.pred_original_sample, ref.get(key + ".pred_original_sample"));
    std::printf("t=%lld prev_sample err %.3g, pred_original_sample err %.3g\n", static_cast<long long>(t), e_prev,
                e_x0);
    EXPECT_LE(e_prev, 1e-4);
    EXPECT_LE(e_x0, 1e-4);
  }
}

TEST(DDIM, StepKeepsTheInputDtype) {
  auto ref = sine::SafeTensors::open(kFixture);
  sine::DDIMScheduler scheduler;
  auto eps = ref.get("step.model_output"), x = ref.get("step.sample");
  for (auto dtype : {torch::kFloat16, torch::kBFloat16, torch::kFloat64}) {
    auto out = scheduler.step(eps.to(dtype), 501, x.to(dtype), 0.3, c10::nullopt, torch::zeros_like(x));
    EXPECT_EQ(out.prev_sample.scalar_type(), dtype);
    auto plain = scheduler.step(eps, 501, x, 0.3, c10::nullopt, torch::zeros_like(x));
    EXPECT_LE(relative_error(out.prev_sample, plain.prev_sample), dtype == torch::kFloat64 ? 1e-6 : 5e-2);
  }
}

TEST(DDIM, InversionStepUndoesStep) {
  torch::manual_seed(0);
  auto eps = torch::randn({2, 4, 8, 8}, torch::kFloat64);
  auto x = torch::randn({2, 4, 8, 8}, torch::kFloat64);
  for (auto config : {sine::DDIMConfig::stable_diffusion(), sine::DDIMConfig::null_text_inversion(),
                      sine::DDIMConfig::specref()}) {
    sine::DDIMScheduler scheduler(config, 50);
    auto ts = scheduler.timesteps();
    for (int64_t i = 0; i < ts.size(0); ++i) {
      int64_t t = ts[i].item<int64_t>();
      auto up = scheduler.invert_step(eps, t, x);
      auto back = scheduler.step(eps, t, up).prev_sample;
      EXPECT_LE((back - x).abs().max().item<double>(), 1e-5) << "t=" << t;
    }
  }
}

TEST(DDIM, InversionMatchesNotebookNextStep) {
  sine::DDIMScheduler scheduler(sine::DDIMConfig::specref(), 50);
  auto eps = torch::full({1, 4, 2, 2}, 0.3), x = torch::full({1, 4, 2, 2}, -0.7);
  // First inversion step of SpecRef: from a clean latent (ᾱ = 1) to t = 1.
  double a_next = scheduler.schedule().alpha_cumprod(1);
  double expect = std::sqrt(a_next) * -0.7 + std::sqrt(1 - a_next) * 0.3;
  EXPECT_NEAR(scheduler.invert_step(eps, 1, x)[0][0][0][0].item<double>(), expect, 1e-6);
  // Later steps move from t − 20 to t.
  double a = scheduler.schedule().alpha_cumprod(481), a2 = scheduler.schedule().alpha_cumprod(501);
  double x0 = (-0.7 - std::sqrt(1 - a) * 0.3) / std::sqrt(a);
  EXPECT_NEAR(scheduler.invert_step(eps, 501, x)[0][0][0][0].item<double>(),
              std::sqrt(a2) * x0 + std::sqrt(1 - a2) * 0.3, 1e-5);
}

TEST(DDIM, EtaNoiseIsDeterministic) {
  sine::DDIMScheduler scheduler;
  torch::manual_seed(1);
  auto eps = torch::randn({1, 4, 8, 8}), x = torch::randn({1, 4, 8, 8}), z = torch::randn({1, 4, 8, 8});
  auto a = scheduler.step(eps, 501, x, 0.5, c10::nullopt, z).prev_sample;
  auto b = scheduler.step(eps, 501, x, 0.5, c10::nullopt, z).prev_sample;
  EXPECT_TRUE(torch::equal(a, b));
  auto plain = scheduler.step(eps, 501, x).prev_sample;
  EXPECT_GT((a - plain).abs().max().item<double>(), 1e-3);

  auto g1 = at::make_generator<at::CPUGeneratorImpl>(42), g2 = at::make_generator<at::CPUGeneratorImpl>(42);
  auto c = scheduler.step(eps, 501, x, 1.0, g1).prev_sample;
  auto d = scheduler.step(eps, 501, x, 1.0, g2).prev_sample;
  EXPECT_TRUE(torch::equal(c, d));

  // diffusers' σ_t at η = 1: sqrt((1−ᾱ_prev)/(1−ᾱ_t)·(1−ᾱ_t/ᾱ_prev)).
  double at = scheduler.alpha_cumprod(501), ap = scheduler.alpha_cumprod(481);
  double sigma = std::sqrt((1 - ap) / (1 - at) * (1 - at / ap));
  auto zero = torch::zeros_like(x);
  auto noisy = scheduler.step(zero, 501, zero, 1.0, c10::nullopt, torch::ones_like(x)).prev_sample;
  EXPECT_NEAR(noisy.max().item<double>(), sigma, 1e-6);
}

TEST(DDIM, VariantPresets) {
  sine::DDIMScheduler null_text(sine::DDIMConfig::null_text_inversion(), 50);
  auto t = null_text.timesteps();
  EXPECT_EQ(t[0].item<int64_t>(), 980);
  EXPECT_EQ(t[49].item<int64_t>(), 0);
  EXPECT_FLOAT_EQ(null_text.alpha_cumprod(-20), null_text.schedule().alpha_cumprod(0));
  EXPECT_NEAR(null_text.alpha_cumprod(-20), 0.99915, 1e-6);

  sine::DDIMScheduler specref(sine::DDIMConfig::specref(), 50);
  EXPECT_EQ(specref.timesteps()[0].item<int64_t>(), 981);
  EXPECT_EQ(specref.timesteps()[49].item<int64_t>(), 1);
  EXPECT_EQ(specref.alpha_cumprod(specref.prev_timestep(1)), 1.0f);

  // The last step of the SD preset uses ᾱ_0 as its "previous" alpha, not 1.
  sine::DDIMScheduler sd;
  EXPECT_FLOAT_EQ(sd.alpha_cumprod(sd.prev_timestep(1)), sd.schedule().alpha_cumprod(0));
}

TEST(DDIM, RejectsBadArguments) {
  EXPECT_THROW(sine::DDIMScheduler(sine::DDIMConfig::stable_diffusion(), 0), sine::Error);
  sine::DDIMScheduler scheduler;
  auto x = torch::zeros({1, 4, 8, 8});
  EXPECT_THROW(scheduler.step(x, 1000, x), sine::Error);
  EXPECT_THROW(scheduler.step(torch::zeros({1, 4, 4, 4}), 1, x), sine::Error);
}

TEST(Guidance, ClassifierFree) {
  auto u = torch::full({1, 4, 2, 2}, 1.0), c = torch::full({1, 4, 2, 2}, 3.0);
  EXPECT_TRUE(torch::allclose(sine::classifier_free_guidance(u, c, 7.5), torch::full({1, 4, 2, 2}, 16.0)));
  EXPECT_TRUE(torch::equal(sine::classifier_free_guidance(u, c, 1.0), c));
}

TEST(Training, AddNoiseAndPredictX0AreInverse) {
  torch::manual_seed(2);
  auto x0 = torch::randn({3, 4, 8, 8}), noise = torch::randn({3, 4, 8, 8});
  auto t = torch::tensor({0, 500, 999}, torch::kLong);
  auto xt = sine::add_noise(x0, noise, t);
  const auto& s = sine::NoiseSchedule::stable_diffusion();
  double a = s.alpha_cumprod(500);
  EXPECT_TRUE(torch::allclose(xt[1], std::sqrt(a) * x0[1] + std::sqrt(1 - a) * noise[1], 1e-5, 1e-6));
  auto back = sine::pred_x0_from_eps(xt, noise, t);
  EXPECT_LE((back - x0).abs().max().item<double>(), 1e-3);

  EXPECT_NEAR(sine::epsilon_loss(torch::ones({2, 3}), torch::zeros({2, 3})).item<double>(), 1.0, 1e-7);
  auto half = sine::add_noise(x0.to(torch::kFloat16), noise.to(torch::kFloat16), t);
  EXPECT_EQ(half.scalar_type(), torch::kFloat16);
  EXPECT_THROW(sine::add_noise(x0, noise, torch::tensor({1000, 0, 0}, torch::kLong)), sine::Error);
}

TEST(Training, SampleTimesteps) {
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  auto a = sine::sample_timesteps(4096, g1), b = sine::sample_timesteps(4096, g2);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(a.scalar_type(), torch::kLong);
  EXPECT_GE(a.min().item<int64_t>(), 0);
  EXPECT_LE(a.max().item<int64_t>(), 999);
  EXPECT_GT(a.max().item<int64_t>(), 990);
}
