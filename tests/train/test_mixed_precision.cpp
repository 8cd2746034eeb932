#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/progress.h"
#include "io/safetensors.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace {

// y = W x with a fixed target; W starts at the same values in every dtype.
struct Regression {
  torch::Tensor weight, true_weight;
  explicit Regression(torch::ScalarType dtype) {
    torch::manual_seed(5);
    // Magnitudes 0.2-0.8, where half a bf16 step (>= 2^-11) is above an update of lr 1e-4, and
    // values bf16 holds exactly, so that every dtype starts from the same weights.
    weight = (0.5 + torch::randn({8, 16}) * 0.1).clamp(0.2, 0.8).to(torch::kBFloat16).to(dtype);
    true_weight = torch::randn({8, 16}) * 0.1;
  }
  sine::NamedTensors params() const { return {{"w", weight}}; }
  torch::Tensor loss(torch::Generator& gen) const {
    torch::Tensor x = torch::randn({32, 16}, gen, torch::kFloat32);
    torch::Tensor y = torch::matmul(x.to(weight.scalar_type()), weight.t()).to(torch::kFloat32);
    return (y - torch::matmul(x, true_weight.t())).pow(2).mean();
  }
};

sine::TrainConfig config(int64_t steps, double lr) {
  sine::TrainConfig c;
  c.steps = steps;
  c.lr = lr;
  c.seed = 3;
  c.grad_clip = 1.0;
  c.label = "test";
  return c;
}

double distance(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max().item<double>();
}

struct Quiet : ::testing::Environment {
  void SetUp() override { sine::set_progress_enabled(false); }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

}  // namespace

// SD 1.x's fine-tuning rate (1e-6) is far below a bf16 step (2^-8 relative): updating bf16 weights
// directly changes nothing; through fp32 masters the run follows the fp32 one.
TEST(MixedPrecision, MasterWeightsKeepUpdatesThatBf16WouldLose) {
  const double lr = 1e-4;  // below half a bf16 step of every weight (>= 4.9e-4 at 0.2-0.8)
  Regression fp32(torch::kFloat32), direct(torch::kBFloat16), mastered(torch::kBFloat16);
  const torch::Tensor start = direct.weight.clone();
  auto run = [&](Regression& r, bool masters) {
    sine::TrainConfig c = config(40, lr);
    c.master_weights = masters;
    sine::Trainer t(r.params(), c);
    t.run([&](int64_t, torch::Generator& gen) { return r.loss(gen); });
    return t.master_parameters()[0].second.clone();
  };
  run(fp32, true);
  run(direct, false);
  torch::Tensor master = run(mastered, true);

  const double fp32_moved = distance(fp32.weight, start);
  EXPECT_GT(fp32_moved, 2e-4);
  EXPECT_TRUE(torch::equal(direct.weight, start)) << "bf16 updated directly: every update rounded away";
  EXPECT_EQ(master.scalar_type(), torch::kFloat32);
  EXPECT_LT(distance(master, fp32.weight), 0.1 * fp32_moved) << "master tracks the fp32 run";
  EXPECT_FALSE(torch::equal(mastered.weight, start)) << "the model's bf16 weight follows its master";
  EXPECT_TRUE(torch::equal(mastered.weight, master.to(torch::kBFloat16)));
}

// A run with bf16 weights, fp32 masters and bf16 moments converges as the fp32 one does.
TEST(MixedPrecision, Bf16StateConvergesLikeFp32) {
  Regression fp32(torch::kFloat32), low(torch::kBFloat16);
  sine::TrainConfig c = config(300, 0.01);
  c.min_lr_ratio = 0.01;  // cosine decay: both runs settle instead of hovering at the lr's scale
  sine::Trainer a(fp32.params(), c);
  a.run([&](int64_t, torch::Generator& gen) { return fp32.loss(gen); });
  c.optimizer_state = torch::kBFloat16;
  sine::Trainer b(low.params(), c);
  b.run([&](int64_t, torch::Generator& gen) { return low.loss(gen); });
  const double first = a.loss_history().front();
  const double last32 = a.loss_history().back(), last16 = b.loss_history().back();
  EXPECT_LT(last32, 0.01 * first);
  EXPECT_LT(last16, 0.02 * first) << "fp32 " << last32 << " mixed " << last16;
  EXPECT_LT(distance(low.weight, fp32.weight), 0.02);
  // Bytes beside the model: fp32 masters (4) + bf16 moments (4) per element, against 8 for fp32.
  EXPECT_EQ(a.optimizer_bytes(), 8 * 16 * 8);
  EXPECT_EQ(b.optimizer_bytes(), 8 * 16 * 8);
  sine::TrainConfig c32 = config(1, 0.01);
  Regression plain(torch::kBFloat16);
  EXPECT_EQ(sine::Trainer(plain.params(), c32).optimizer_bytes(), 8 * 16 * 12);
}

// Masters and bf16 moments go into the checkpoint; a resumed run equals the uninterrupted one.
TEST(MixedPrecision, ResumedRunEqualsUninterrupted) {
  fs::path dir = fs::temp_directory_path() / ("sine_test_mixed_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  sine::TrainConfig c = config(12, 1e-3);
  c.optimizer_state = torch::kBFloat16;
  c.ema_decay = 0.9;
  Regression straight(torch::kBFloat16);
  sine::Trainer a(straight.params(), c);
  a.run([&](int64_t, torch::Generator& gen) { return straight.loss(gen); });

  c.checkpoint_path = (dir / "b.safetensors").string();
  Regression first(torch::kBFloat16);
  sine::Trainer b(first.params(), c);
  b.run([&](int64_t, torch::Generator& gen) { return first.loss(gen); }, 5);
  auto saved = sine::load_safetensors(c.checkpoint_path);
  EXPECT_EQ(saved.at("param.w").scalar_type(), torch::kFloat32) << "the master, not the rounded weight";
  EXPECT_EQ(saved.at("adamw.exp_avg.w").scalar_type(), torch::kBFloat16);

  Regression resumed(torch::kBFloat16);
  sine::Trainer r(resumed.params(), c);
  ASSERT_TRUE(r.resume(c.checkpoint_path));
  r.run([&](int64_t, torch::Generator& gen) { return resumed.loss(gen); });
  EXPECT_EQ(r.loss_history(), a.loss_history());
  EXPECT_TRUE(torch::equal(resumed.weight, straight.weight));
  EXPECT_TRUE(torch::equal(r.master_parameters()[0].second, a.master_parameters()[0].second));
  EXPECT_TRUE(torch::equal(r.ema()->get("w"), a.ema()->get("w")));
  fs::remove_all(dir);
}

// A bf16 weight updated directly still keeps the moments it was asked for (fp32 here).
TEST(MixedPrecision, DirectBf16KeepsFp32Moments) {
  const std::string path = (fs::temp_directory_path() / ("sine_test_direct_" + std::to_string(::getpid()) + ".st")).string();
  Regression direct(torch::kBFloat16);
  sine::TrainConfig c = config(2, 1e-3);
  c.master_weights = false;
  c.checkpoint_path = path;
  sine::Trainer t(direct.params(), c);
  t.run([&](int64_t, torch::Generator& gen) { return direct.loss(gen); });
  EXPECT_TRUE(t.master_parameters()[0].second.is_same(direct.weight));
  auto saved = sine::load_safetensors(path);
  EXPECT_EQ(saved.at("param.w").scalar_type(), torch::kBFloat16);
  EXPECT_EQ(saved.at("adamw.exp_avg.w").scalar_type(), torch::kFloat32);
  EXPECT_EQ(saved.at("adamw.exp_avg_sq.w").scalar_type(), torch::kFloat32);
  fs::remove(path);
}
