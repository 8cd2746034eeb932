#include <gtest/gtest.h>

#include "core/error.h"
#include "train/adamw.h"

namespace {

sine::AdamWHyper hyper(double lr, double wd) {
  sine::AdamWHyper h;
  h.lr = lr;
  h.weight_decay = wd;
  return h;
}

}  // namespace

// Our AdamW is torch.optim.AdamW, operation for operation: fp32 runs agree bit for bit.
TEST(AdamW, EqualsLibTorchsAdamWBitForBit) {
  torch::manual_seed(3);
  torch::Tensor ours = torch::randn({5, 7});
  torch::Tensor theirs = ours.clone().requires_grad_(true);
  torch::optim::AdamW reference({theirs}, torch::optim::AdamWOptions(3e-3).betas({0.9, 0.99}).eps(1e-6).weight_decay(0.05));
  sine::AdamWHyper h = hyper(3e-3, 0.05);
  h.beta2 = 0.99;
  h.eps = 1e-6;
  sine::AdamWState state;
  for (int step = 0; step < 25; ++step) {
    torch::Tensor grad = torch::randn({5, 7}) * (step + 1);
    theirs.mutable_grad() = grad.clone();
    reference.step();
    sine::adamw_step(ours, grad, state, h, 0);
    ASSERT_TRUE(torch::equal(ours, theirs.detach())) << "step " << step;
  }
  EXPECT_EQ(state.step, 25);
}

TEST(AdamW, StochasticRoundingIsUnbiasedAndDeterministic) {
  // 1 + a third of a bf16 step: nearest rounding always gives 1, stochastic rounding 1 + step a
  // third of the time.
  const double ulp = 1.0 / 128;
  torch::Tensor x = torch::full({200000}, 1.0 + ulp / 3, torch::kFloat32);
  torch::Tensor r = sine::stochastic_round_bf16(x, 11);
  ASSERT_EQ(r.scalar_type(), torch::kBFloat16);
  torch::Tensor rf = r.to(torch::kFloat32);
  EXPECT_TRUE(((rf == 1.0) | (rf == 1.0 + ulp)).all().item<bool>()) << "only the two neighbours";
  EXPECT_NEAR(rf.mean().item<double>(), 1.0 + ulp / 3, ulp * 0.01);
  EXPECT_EQ(x.to(torch::kBFloat16).to(torch::kFloat32).mean().item<double>(), 1.0);  // nearest: biased
  // Negative values round symmetrically; exact bf16 values are kept.
  torch::Tensor n = sine::stochastic_round_bf16(-x, 12).to(torch::kFloat32);
  EXPECT_NEAR(n.mean().item<double>(), -(1.0 + ulp / 3), ulp * 0.01);
  torch::Tensor exact = torch::randn({1000}).to(torch::kBFloat16).to(torch::kFloat32);
  EXPECT_TRUE(torch::equal(sine::stochastic_round_bf16(exact, 5).to(torch::kFloat32), exact));
  // Same seed, same bits; another seed, other bits.
  EXPECT_TRUE(torch::equal(sine::stochastic_round_bf16(x, 11), r));
  EXPECT_FALSE(torch::equal(sine::stochastic_round_bf16(x, 12), r));
  EXPECT_THROW(sine::stochastic_round_bf16(x.to(torch::kFloat64), 1), sine::Error);
}

// The CPU's one-pass loop and the tensor operations (what CUDA runs) give the same bits.
TEST(AdamW, StochasticRoundingKernelsAgree) {
  torch::manual_seed(6);
  torch::Tensor x = torch::cat({torch::randn({100000}) * 1e-3, -torch::rand({1000}) * 50, torch::zeros({10})})
                        .view({-1, 10});
  torch::Tensor a = torch::empty(x.sizes(), torch::kBFloat16), b = torch::empty(x.sizes(), torch::kBFloat16);
  sine::detail::stochastic_round_bf16_cpu(a, x, 77);
  sine::detail::stochastic_round_bf16_ops(b, x, 77);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_LE((a.to(torch::kFloat32) - x).abs().max().item<double>(), (x.abs().max() / 128).item<double>());
}

// bf16 moments: nearest rounding would freeze v (v·0.999 rounds back to v) and keep the step size of
// an early large gradient; updated in fp32 and rounded stochastically they follow the fp32 moments.
TEST(AdamW, Bf16MomentsTrackFp32Moments) {
  torch::manual_seed(4);
  const int64_t n = 4096;
  torch::Tensor p32 = torch::zeros({n}), p16 = torch::zeros({n});
  sine::AdamWState s32, s16;
  sine::AdamWHyper h32 = hyper(1e-3, 0), h16 = h32;
  h16.state_dtype = torch::kBFloat16;
  for (int step = 0; step < 300; ++step) {
    // A gradient that shrinks 100-fold over the run: v must decay to follow it.
    torch::Tensor g = torch::randn({n}) * (step < 10 ? 1.0 : 0.01) + 0.01;
    sine::adamw_step(p32, g, s32, h32, 0);
    sine::adamw_step(p16, g, s16, h16, static_cast<uint64_t>(step));
  }
  EXPECT_EQ(s16.exp_avg.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(s16.exp_avg_sq.scalar_type(), torch::kBFloat16);
  const double v32 = s32.exp_avg_sq.mean().item<double>();
  const double v16 = s16.exp_avg_sq.to(torch::kFloat32).mean().item<double>();
  EXPECT_NEAR(v16 / v32, 1.0, 0.02) << "fp32 " << v32 << " bf16 " << v16;
  const double moved32 = p32.mean().item<double>(), moved16 = p16.mean().item<double>();
  EXPECT_NEAR(moved16 / moved32, 1.0, 0.02) << "fp32 " << moved32 << " bf16 " << moved16;
  EXPECT_EQ(sine::adamw_state_bytes_per_element(torch::kFloat32), 8);
  EXPECT_EQ(sine::adamw_state_bytes_per_element(torch::kBFloat16), 4);
}

TEST(AdamW, ParsesTheStateDtype) {
  EXPECT_EQ(sine::parse_optimizer_state_dtype("fp32"), torch::kFloat32);
  EXPECT_EQ(sine::parse_optimizer_state_dtype("bf16"), torch::kBFloat16);
  try {
    sine::parse_optimizer_state_dtype("int8", "--optimizer-state");
    FAIL() << "expected sine::Error";
  } catch (const sine::Error& e) {
    EXPECT_EQ(std::string(e.what()), "--optimizer-state: optimizer state must be fp32 or bf16 (got 'int8')");
  }
}
