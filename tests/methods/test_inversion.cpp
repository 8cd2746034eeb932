// DDIM inversion and null-text inversion on a random-weight tiny pipeline.
#include <gtest/gtest.h>

#include "core/error.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/inversion/null_text_inversion.h"
#include "specref_test_util.h"

namespace sine {
namespace {

double max_err(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

class InversionTest : public ::testing::Test {
 protected:
  Pipeline pipe = test::tiny_pipeline(1);
  torch::Tensor z0 = torch::randn({1, 4, 16, 16}, torch::TensorOptions().dtype(torch::kFloat32)) * 0.8;
  torch::Tensor cond = pipe.encode_prompt("a red circle in the center on a white background");
  torch::Tensor uncond = pipe.encode_prompt("");
};

TEST_F(InversionTest, GuidanceOneRoundTripReconstructsBothConventions) {
  for (const auto& ddim : {DDIMConfig::null_text_inversion(), DDIMConfig::specref()}) {
    InversionOptions o;
    o.steps = 25;
    o.ddim = ddim;
    auto latents = ddim_invert(pipe, z0, cond, o);
    ASSERT_EQ(latents.size(), 26u);
    EXPECT_TRUE(torch::equal(latents[0], z0));
    // The inverted latent is noise-like and far from z0, yet sampling brings z0 back.
    EXPECT_GT(max_err(latents.back(), z0), 0.5);
    auto rec = ddim_sample(pipe, latents.back(), cond, uncond, 1.0, o);
    const double err = max_err(rec, z0);
    std::printf("  steps_offset %lld: round-trip max err %.4f\n", (long long)ddim.steps_offset, err);
    EXPECT_LT(err, 0.05);
  }
}

TEST_F(InversionTest, ConventionsDifferInTimesteps) {
  InversionOptions a, b;
  a.steps = b.steps = 10;
  a.ddim = DDIMConfig::null_text_inversion();
  b.ddim = DDIMConfig::specref();
  EXPECT_EQ(DDIMScheduler(a.ddim, 10).timesteps()[0].item<int64_t>(), 900);
  EXPECT_EQ(DDIMScheduler(b.ddim, 10).timesteps()[0].item<int64_t>(), 901);
  EXPECT_FLOAT_EQ(DDIMScheduler(b.ddim, 10).alpha_cumprod(-1), 1.0f);
  auto la = ddim_invert(pipe, z0, cond, a), lb = ddim_invert(pipe, z0, cond, b);
  EXPECT_GT(max_err(la[1], lb[1]), 1e-4);
}

TEST_F(InversionTest, GuidedInversionNeedsUncond) {
  InversionOptions o;
  o.steps = 2;
  o.guidance = 7.5;
  EXPECT_THROW(ddim_invert(pipe, z0, cond, o), Error);
  EXPECT_EQ(ddim_invert(pipe, z0, cond, o, uncond).size(), 3u);
}

TEST_F(InversionTest, NullTextLowersReconstructionErrorAtCfg) {
  InversionOptions o;
  o.steps = 10;
  auto latents = ddim_invert(pipe, z0, cond, o);
  auto plain = ddim_sample(pipe, latents.back(), cond, uncond, 7.5, o);
  NullTextOptions nt;
  auto r = null_text_inversion(pipe, latents, cond, uncond, o, nt);
  ASSERT_EQ(r.embeddings.size(), 10u);
  for (auto it : r.iterations) {
    EXPECT_GE(it, 1);
    EXPECT_LE(it, 10);
  }
  EXPECT_GT(max_err(r.embeddings[0], uncond), 1e-4);  // φ moved
  auto tuned = ddim_sample(pipe, latents.back(), cond, uncond, 7.5, o, r.embeddings);
  const double e_plain = (plain - z0).pow(2).mean().item<double>();
  const double e_tuned = (tuned - z0).pow(2).mean().item<double>();
  std::printf("  CFG 7.5 reconstruction MSE: DDIM %.5f, null-text %.5f\n", e_plain, e_tuned);
  EXPECT_LT(e_tuned, 0.75 * e_plain);  // measured: about 0.53x
  // The networks stay frozen and untouched.
  for (const auto& p : pipe.model()->unet->parameters()) {
    EXPECT_FALSE(p.grad().defined());
    EXPECT_TRUE(p.requires_grad());
  }
}

TEST_F(InversionTest, NullTextEarlyStopsOnAnEasyTarget) {
  InversionOptions o;
  o.steps = 4;
  auto latents = ddim_invert(pipe, z0, cond, o);
  NullTextOptions nt;
  nt.early_stop_epsilon = 1e9;  // every first iteration is below the threshold
  auto r = null_text_inversion(pipe, latents, cond, uncond, o, nt);
  for (auto it : r.iterations) EXPECT_EQ(it, 1);
  std::vector<torch::Tensor> short_list(latents.begin(), latents.begin() + 3);
  EXPECT_THROW(null_text_inversion(pipe, short_list, cond, uncond, o, nt), Error);
}

}  // namespace
}  // namespace sine
