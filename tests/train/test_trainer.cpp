#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "core/progress.h"
#include "io/safetensors.h"
#include "train/trainer.h"

extern char** environ;

namespace fs = std::filesystem;

namespace {

// A linear regression y = W x + b with a fixed target; data and label noise come from the
// trainer's generator.
struct Regression {
  torch::Tensor weight, bias, true_weight, true_bias;

  explicit Regression(int64_t seed = 1) {
    torch::manual_seed(seed);
    weight = torch::randn({3, 4}) * 0.1;
    bias = torch::zeros({3});
    true_weight = torch::randn({3, 4});
    true_bias = torch::randn({3});
  }
  sine::NamedTensors params() const { return {{"layer.weight", weight}, {"layer.bias", bias}}; }
  torch::Tensor loss(torch::Generator& gen) const {
    torch::Tensor x = torch::randn({16, 4}, gen, torch::kFloat32);
    torch::Tensor noise = torch::randn({16, 3}, gen, torch::kFloat32) * 0.01;
    torch::Tensor target = torch::matmul(x, true_weight.t()) + true_bias + noise;
    return (torch::matmul(x, weight.t()) + bias - target).pow(2).mean();
  }
};

sine::TrainConfig config(int64_t steps, const std::string& path = "") {
  sine::TrainConfig c;
  c.steps = steps;
  c.lr = 0.05;
  c.seed = 7;
  c.ema_decay = 0.9;
  c.warmup_steps = 3;
  c.min_lr_ratio = 0.1;
  c.checkpoint_path = path;
  c.label = "test";
  return c;
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("sine_test_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

struct Quiet : ::testing::Environment {
  void SetUp() override { sine::set_progress_enabled(false); }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

}  // namespace

TEST(Trainer, LossDecreasesOnToyRegression) {
  Regression model;
  sine::TrainConfig c = config(300);
  c.ema_decay = 0;
  sine::Trainer trainer(model.params(), c);
  trainer.run([&](int64_t, torch::Generator& gen) { return model.loss(gen); });
  const auto& h = trainer.loss_history();
  ASSERT_EQ(h.size(), 300u);
  EXPECT_EQ(trainer.step(), 300);
  EXPECT_LT(h.back(), 0.01 * h.front()) << "first " << h.front() << " last " << h.back();
  EXPECT_LT((model.weight - model.true_weight).abs().max().item<double>(), 0.05);
}

TEST(Trainer, InterruptedAndResumedRunEqualsUninterrupted) {
  fs::path dir = temp_dir("resume");
  Regression straight;
  sine::Trainer a(straight.params(), config(10, (dir / "a.safetensors").string()));
  a.run([&](int64_t, torch::Generator& gen) { return straight.loss(gen); });

  // The second run crashes at step 7; its last checkpoint is from step 5.
  Regression crashed;
  sine::TrainConfig c = config(10, (dir / "b.safetensors").string());
  c.checkpoint_every = 5;
  {
    sine::Trainer b(crashed.params(), c);
    EXPECT_THROW(b.run([&](int64_t step, torch::Generator& gen) {
      if (step == 7) throw std::runtime_error("simulated crash");
      return crashed.loss(gen);
    }),
                 std::runtime_error);
  }
  Regression resumed;  // fresh parameters, as in a new process
  sine::Trainer r(resumed.params(), c);
  ASSERT_TRUE(r.resume(c.checkpoint_path));
  EXPECT_EQ(r.step(), 5);
  r.run([&](int64_t, torch::Generator& gen) { return resumed.loss(gen); });

  EXPECT_EQ(r.loss_history(), a.loss_history());
  EXPECT_TRUE(torch::equal(resumed.weight, straight.weight));
  EXPECT_TRUE(torch::equal(resumed.bias, straight.bias));
  EXPECT_TRUE(torch::equal(r.ema()->get("layer.weight"), a.ema()->get("layer.weight")));

  // The final checkpoints agree too, and no temporary file is left behind.
  auto fa = sine::load_safetensors((dir / "a.safetensors").string());
  auto fb = sine::load_safetensors((dir / "b.safetensors").string());
  ASSERT_EQ(fa.size(), fb.size());
  for (const auto& [key, t] : fa) EXPECT_TRUE(torch::equal(t, fb.at(key))) << key;
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().extension(), ".safetensors") << entry.path();
  fs::remove_all(dir);
}

TEST(Trainer, ExtendsAFinishedRun) {
  fs::path dir = temp_dir("extend");
  Regression once, twice;
  sine::TrainConfig c = config(8, (dir / "x.safetensors").string());
  c.min_lr_ratio = 1.0;  // a schedule over `steps` would change when steps grows
  sine::Trainer a(once.params(), c);
  a.run([&](int64_t, torch::Generator& gen) { return once.loss(gen); }, 4);
  EXPECT_EQ(a.step(), 4);
  sine::Trainer b(twice.params(), c);
  ASSERT_TRUE(b.resume(c.checkpoint_path));
  b.run([&](int64_t, torch::Generator& gen) { return twice.loss(gen); });
  EXPECT_EQ(b.step(), 8);
  EXPECT_EQ(b.loss_history().size(), 8u);
  fs::remove_all(dir);
}

TEST(Trainer, ResumeRejectsACheckpointOfOtherParameters) {
  fs::path dir = temp_dir("mismatch");
  Regression model;
  sine::TrainConfig c = config(2, (dir / "m.safetensors").string());
  sine::Trainer a(model.params(), c);
  a.run([&](int64_t, torch::Generator& gen) { return model.loss(gen); });

  torch::Tensor other = torch::zeros({3, 5});
  sine::Trainer wrong_shape({{"layer.weight", other}, {"layer.bias", torch::zeros({3})}}, c);
  try {
    wrong_shape.resume(c.checkpoint_path);
    FAIL() << "expected sine::Error";
  } catch (const sine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer.weight"), std::string::npos) << e.what();
  }
  sine::Trainer fewer({{"layer.bias", torch::zeros({3})}}, c);
  EXPECT_THROW(fewer.resume(c.checkpoint_path), sine::Error);
  EXPECT_FALSE(a.resume((dir / "missing.safetensors").string()));
  fs::remove_all(dir);
}

TEST(Trainer, EmaFollowsTheDecayFormula) {
  torch::Tensor p = torch::tensor({1.0f, 2.0f}).to(torch::kFloat16);
  sine::ParameterEMA ema({{"p", p}}, 0.9);
  EXPECT_EQ(ema.get("p").scalar_type(), torch::kFloat32);
  EXPECT_DOUBLE_EQ(ema.decay_at(0), 0.1);
  EXPECT_DOUBLE_EQ(ema.decay_at(5), 6.0 / 15.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(1000), 0.9);

  double expected[2] = {1.0, 2.0};
  const double values[3][2] = {{3.0, 0.0}, {-1.0, 4.0}, {0.5, 0.5}};
  const int64_t updates[3] = {0, 1, 500};
  for (int i = 0; i < 3; ++i) {
    p.copy_(torch::tensor({values[i][0], values[i][1]}));
    ema.update({{"p", p}}, updates[i]);
    const double d = ema.decay_at(updates[i]);
    for (int j = 0; j < 2; ++j) expected[j] = d * expected[j] + (1 - d) * values[i][j];
  }
  EXPECT_NEAR(ema.get("p")[0].item<double>(), expected[0], 1e-6);
  EXPECT_NEAR(ema.get("p")[1].item<double>(), expected[1], 1e-6);

  torch::Tensor q = torch::zeros({2});
  ema.copy_to({{"p", q}});
  EXPECT_NEAR(q[1].item<double>(), expected[1], 1e-6);
}

TEST(Trainer, ClipsTheGradientNorm) {
  torch::Tensor p = torch::full({4}, 10.0);
  sine::TrainConfig c;
  c.steps = 1;
  c.lr = 1e-3;
  c.grad_clip = 1.0;
  sine::Trainer trainer({{"p", p}}, c);
  trainer.run([&](int64_t, torch::Generator&) { return p.pow(2).sum() * 100; });
  // d/dp = 200 p = 2000 per entry: norm 4000 before clipping, 1 after.
  EXPECT_NEAR(trainer.last_grad_norm(), 4000.0, 1e-2);
  EXPECT_NEAR(p.grad().norm().item<double>(), 1.0, 1e-4);

  torch::Tensor u = torch::full({4}, 10.0);
  c.grad_clip = 0;
  sine::Trainer unclipped({{"u", u}}, c);
  unclipped.run([&](int64_t, torch::Generator&) { return u.pow(2).sum() * 100; });
  EXPECT_NEAR(u.grad().norm().item<double>(), 4000.0, 1e-2);
}

TEST(Trainer, RejectsANonFiniteLoss) {
  torch::Tensor p = torch::ones({2});
  sine::TrainConfig c;
  c.steps = 3;
  sine::Trainer trainer({{"p", p}}, c);
  EXPECT_THROW(trainer.run([&](int64_t, torch::Generator&) { return p.sum() / 0.0 * 0.0; }), sine::Error);
}

// Child half of KilledWhileCheckpointingLeavesAValidFile: trains until killed, writing a
// checkpoint of a few MB every step.
TEST(Trainer, ChildTrainsUntilKilled) {
  const char* dir = std::getenv("SINE_TRAINER_CHILD_DIR");
  if (!dir) GTEST_SKIP() << "runs only as the child of KilledWhileCheckpointingLeavesAValidFile";
  torch::Tensor w = torch::zeros({512, 512});
  sine::TrainConfig c;
  c.steps = 1000000;
  c.lr = 1e-3;
  c.checkpoint_every = 1;
  c.checkpoint_path = (fs::path(dir) / "k.safetensors").string();
  sine::Trainer trainer({{"w", w}}, c);
  trainer.run([&](int64_t, torch::Generator& gen) { return (w - torch::randn({512, 512}, gen, torch::kFloat32)).pow(2).mean(); });
}

TEST(Trainer, KilledWhileCheckpointingLeavesAValidFile) {
  fs::path dir = temp_dir("kill");
  fs::path ckpt = dir / "k.safetensors";
  std::string self = fs::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=Trainer.ChildTrainsUntilKilled";
  std::string env_dir = "SINE_TRAINER_CHILD_DIR=" + dir.string();
  std::vector<char*> env;
  for (char** e = environ; *e; ++e) env.push_back(*e);
  env.push_back(env_dir.data());
  env.push_back(nullptr);
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, env.data()), 0);

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!fs::exists(ckpt) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(137));  // somewhere in a later write
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(fs::exists(ckpt));

  torch::Tensor w = torch::zeros({512, 512});
  sine::TrainConfig c;
  c.steps = 1000000;
  sine::Trainer trainer({{"w", w}}, c);
  ASSERT_TRUE(trainer.resume(ckpt.string()));  // opening validates every byte range
  EXPECT_GT(trainer.step(), 0);
  EXPECT_EQ(static_cast<int64_t>(trainer.loss_history().size()), trainer.step());
  fs::remove_all(dir);
}
