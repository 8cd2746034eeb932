// Every sampler on the one loop against diffusers 0.27.2's trajectories on the tiny UNet
// (reference/tiny/samplers.safetensors): schedule (timesteps, σ), x_T scaling and every latent.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/error.h"
#include "diffusion/sampler.h"
#include "io/safetensors.h"
#include "pipeline/pipeline.h"

namespace sine {
namespace {

const std::string kShared = SINE_SHARED_DIR;
const std::string kTiny = kShared + "/reference/tiny";

double max_error(const torch::Tensor& a, const torch::Tensor& ref) {
  return (a.to(torch::kCPU, torch::kFloat64) - ref.to(torch::kFloat64)).abs().max().item<double>();
}

struct Case {
  std::string name, method;
  SigmaSchedule schedule;
  int64_t steps;
};

Pipeline& tiny_pipeline() {
  static Pipeline pipe = [] {
    LoadOptions o;
    o.model = kTiny + "/diffusers";
    o.tokenizer = kShared + "/data/clip/bpe_simple_vocab_16e6.txt.gz";
    return Pipeline::load(o);
  }();
  return pipe;
}

class SamplerTrajectory : public ::testing::TestWithParam<Case> {};

TEST_P(SamplerTrajectory, MatchesDiffusers) {
  const Case c = GetParam();
  auto st = SafeTensors::open(kTiny + "/samplers.safetensors");
  auto get = [&](const std::string& key) { return st.get(c.name + "." + key); };
  SamplerConfig config;
  config.method = c.method;
  config.schedule = c.schedule;
  config.steps = c.steps;
  auto sampler = make_sampler(config);

  auto timesteps = get("timesteps");
  auto sigmas = get("sigmas");
  ASSERT_EQ(sampler->num_evaluations(), timesteps.size(0));
  for (int64_t i = 0; i < timesteps.size(0); ++i)
    EXPECT_NEAR(sampler->timestep(i), timesteps[i].item<double>(), 1e-3) << c.name << " timestep " << i;

  Pipeline& pipe = tiny_pipeline();
  std::vector<torch::Tensor> trajectory;
  SampleLoopOptions loop;
  loop.unet = pipe.model()->unet;
  loop.noises = get("noises");
  loop.trajectory = &trajectory;
  auto x_T = get("x_T") * sampler->init_noise_sigma();
  auto ref = get("trajectory");
  EXPECT_LE(max_error(x_T, ref[0]), 1e-5 * ref[0].abs().max().item<double>()) << "init_noise_sigma";
  auto latents = sample(*sampler, x_T, pipe.guided_eps(get("uncond"), get("cond"), 7.5), loop);

  ASSERT_EQ(static_cast<int64_t>(trajectory.size()), ref.size(0));
  double worst = 0;
  for (size_t i = 0; i < trajectory.size(); ++i) {
    const double scale = std::max(1.0, ref[i].abs().max().item<double>());
    worst = std::max(worst, max_error(trajectory[i], ref[i]) / scale);
  }
  const auto final_ref = get("latents");
  const double tol = 1e-4 * std::max(1.0, final_ref.abs().max().item<double>());
  const double err = max_error(latents, final_ref);
  std::printf("  %-16s %2lld evals  final max|err| %.3e (tol %.1e)  worst step rel %.3e\n", c.name.c_str(),
              static_cast<long long>(sampler->num_evaluations()), err, tol, worst);
  EXPECT_LE(err, tol) << c.name;
  EXPECT_LE(worst, 1e-4) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Diffusers, SamplerTrajectory,
    ::testing::Values(Case{"euler", "euler", SigmaSchedule::standard, 10},
                      Case{"euler_karras", "euler", SigmaSchedule::karras, 10},
                      Case{"euler_a", "euler_a", SigmaSchedule::standard, 10},
                      Case{"heun", "heun", SigmaSchedule::standard, 6},
                      Case{"dpmpp_2m", "dpmpp_2m", SigmaSchedule::standard, 12},
                      Case{"dpmpp_2m_karras", "dpmpp_2m", SigmaSchedule::karras, 12}),
    [](const auto& info) { return info.param.name; });

TEST(Sampler, NamesAndValidation) {
  EXPECT_EQ(canonical_sampler_name("dpm++2m"), "dpmpp_2m");
  EXPECT_EQ(canonical_sampler_name("Euler a"), "euler_a");
  EXPECT_EQ(sampler_display_name("euler_a"), "Euler a");
  EXPECT_EQ(sampler_display_name("dpmpp_2m"), "DPM++ 2M");
  EXPECT_THROW(canonical_sampler_name("plms"), Error);
  EXPECT_EQ(parse_sigma_schedule("Karras"), SigmaSchedule::karras);
  EXPECT_THROW(parse_sigma_schedule("exponential"), Error);
  SamplerConfig c;
  c.steps = 0;
  EXPECT_THROW(c.validate(), Error);
  c.steps = 10;
  c.schedule = SigmaSchedule::karras;
  EXPECT_THROW(c.validate(), Error);  // DDIM has no sigma schedule
  c.method = "euler";
  c.eta = 0.5;
  EXPECT_THROW(c.validate(), Error);  // eta is DDIM's
}

// DDIM on the loop is DDIMScheduler::step on its timesteps; inversion walks them backwards.
TEST(Sampler, DDIMOnTheLoopIsTheScheduler) {
  SamplerConfig config;
  config.steps = 4;
  auto sampler = make_sampler(config);
  DDIMScheduler scheduler(config.ddim, 4);
  auto t = scheduler.timesteps();
  auto x = torch::randn({1, 4, 3, 3});
  auto eps_of = [](const torch::Tensor& x, double t, int64_t) { return x * 0.1 + t * 1e-4; };
  auto ours = sample(*sampler, x, eps_of);
  auto ref = x;
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t ti = t[i].item<int64_t>();
    ref = scheduler.step(eps_of(ref, static_cast<double>(ti), i), ti, ref).prev_sample;
  }
  EXPECT_TRUE(torch::equal(ours, ref));
  auto inversion = make_ddim_inversion(config.ddim, 4);
  ASSERT_EQ(inversion->num_evaluations(), 4);
  EXPECT_EQ(inversion->timestep(0), 1.0);
  EXPECT_EQ(inversion->timestep(3), 751.0);
}

// Hooks run in order around each evaluation, after_step replaces the latent, and img2img's first
// evaluation skips the ones before it.
TEST(Sampler, HooksAndFirstEvaluation) {
  SamplerConfig config;
  config.method = "euler";
  config.steps = 5;
  auto sampler = make_sampler(config);
  std::vector<std::string> log;
  SampleLoopOptions loop;
  loop.first = 2;
  loop.before_step = [&](int64_t i, const torch::Tensor&) { log.push_back("before " + std::to_string(i)); };
  loop.after_step = [&](int64_t i, torch::Tensor x) {
    log.push_back("after " + std::to_string(i));
    return x * 0;
  };
  loop.on_step = [&](int64_t s, int64_t n) { log.push_back(std::to_string(s) + "/" + std::to_string(n)); };
  auto eps_of = [&](const torch::Tensor& x, double, int64_t i) {
    log.push_back("eps " + std::to_string(i));
    return torch::zeros_like(x);
  };
  auto out = sample(*sampler, torch::ones({1, 1, 2, 2}), eps_of, loop);
  EXPECT_EQ(out.abs().sum().item<double>(), 0.0);
  const std::vector<std::string> expected{"before 2", "eps 2", "after 2", "1/3", "before 3", "eps 3",
                                          "after 3",  "2/3",   "before 4", "eps 4", "after 4", "3/3"};
  EXPECT_EQ(log, expected);
  auto heun = make_sampler({"heun", SigmaSchedule::standard, 5});
  EXPECT_EQ(heun->num_evaluations(), 9);
  EXPECT_EQ(heun->evaluation_of_step(2), 4);
}

}  // namespace
}  // namespace sine
