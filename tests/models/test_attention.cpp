// The fused attention path (at::scaled_dot_product_attention on LibTorch 2.x, the chunked softmax
// on 1.13) against the explicit-probabilities path that hooks use, and both against the formula
// written out in fp64: equal within fp32 tolerance, forward and backward, on random tensors and on
// the tiny UNet / CLIP fixtures.
#include <gtest/gtest.h>

#include <cmath>

#include "core/torch_compat.h"
#include "io/safetensors.h"
#include "models/attention_hook.h"
#include "models/unet.h"
#include "models/weights.h"

namespace sine {
namespace {

const std::string kTiny = std::string(SINE_SHARED_DIR) + "/reference/tiny/";

struct ProbsPath : AttentionHook {
  bool needs_probs(const AttentionSite&) override { return true; }
};

// softmax(q kᵀ/√d) v per head, in fp64, on [B, N, C] inputs.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  int64_t heads) {
  auto split = [&](const torch::Tensor& x) {
    return x.to(torch::kFloat64).reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
  };
  const double d = static_cast<double>(q.size(2) / heads);
  auto p = torch::softmax(torch::matmul(split(q), split(k).transpose(-1, -2)) / std::sqrt(d), -1);
  auto o = torch::matmul(p, split(v));
  return o.transpose(1, 2).reshape({q.size(0), q.size(1), q.size(2)});
}

double rel(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.to(torch::kFloat64), y = b.to(torch::kFloat64);
  return (x - y).abs().max().item<double>() / std::max(1.0, y.abs().max().item<double>());
}

TEST(Attention, FusedAndExplicitPathsEqualTheFormula) {
  torch::manual_seed(0);
  std::printf("  LibTorch %s, fused path: %s\n", compat::torch_version().c_str(),
              compat::has_sdpa ? "at::scaled_dot_product_attention" : "chunked softmax");
  for (auto [n, m, c, heads] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{256, 256, 64, 2},
                                {256, 77, 64, 8}, {1024, 1024, 32, 1}, {7, 5, 24, 3}}) {
    torch::NoGradGuard no_grad;
    auto q = torch::randn({2, n, c}), k = torch::randn({2, m, c}), v = torch::randn({2, m, c});
    auto ref = reference_attention(q, k, v, heads);
    ProbsPath hook;
    AttentionSite site;
    auto fused = multi_head_attention(q, k, v, heads);
    auto explicit_path = multi_head_attention(q, k, v, heads, &hook, &site);
    EXPECT_LE(rel(fused, ref), 1e-5) << n << "x" << m << " heads " << heads;
    EXPECT_LE(rel(explicit_path, ref), 1e-5) << n << "x" << m << " heads " << heads;
    EXPECT_LE(rel(fused, explicit_path), 1e-5) << n << "x" << m << " heads " << heads;
  }
}

TEST(Attention, FusedAndExplicitGradientsAgree) {
  torch::manual_seed(1);
  auto q0 = torch::randn({2, 64, 32}), k0 = torch::randn({2, 40, 32}), v0 = torch::randn({2, 40, 32});
  auto grads = [&](AttentionHook* hook) {
    auto q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(), v = v0.clone().requires_grad_();
    AttentionSite site;
    auto out = multi_head_attention(q, k, v, 4, hook, hook ? &site : nullptr);
    (out * out).sum().backward();
    return std::vector<torch::Tensor>{q.grad(), k.grad(), v.grad()};
  };
  ProbsPath hook;
  auto fused = grads(nullptr), explicit_path = grads(&hook);
  for (size_t i = 0; i < 3; ++i) EXPECT_LE(rel(fused[i], explicit_path[i]), 1e-5) << "grad " << i;
}

TEST(Attention, CausalSdpaEqualsTheMaskedFormula) {
  torch::manual_seed(2);
  auto q = torch::randn({3, 4, 77, 8}), k = torch::randn({3, 4, 77, 8}), v = torch::randn({3, 4, 77, 8});
  auto scores = torch::matmul(q.to(torch::kFloat64), k.to(torch::kFloat64).transpose(-1, -2)) / std::sqrt(8.0);
  auto mask = torch::ones({77, 77}, torch::kBool).triu(1);
  auto ref = torch::matmul(torch::softmax(scores.masked_fill(mask, -INFINITY), -1), v.to(torch::kFloat64));
  EXPECT_LE(rel(compat::scaled_dot_product_attention(q, k, v, /*is_causal=*/true), ref), 1e-5);
  EXPECT_LE(rel(compat::scaled_dot_product_attention(q, k, v), torch::matmul(torch::softmax(scores, -1), v.to(torch::kFloat64))), 1e-5);
}

TEST(Attention, TinyUNetFusedEqualsExplicitOnTheFixture) {
  torch::NoGradGuard no_grad;
  UNetConfig c;
  c.model_channels = 8;
  c.channel_mult = {1, 2, 4, 4};
  c.num_heads = 2;
  c.context_dim = 32;
  c.norm_groups = 4;
  UNetModel unet(c);
  const std::string path = kTiny + "tiny_sd15_original.safetensors";
  load_module_weights(*unet, load_safetensors(path), "model.diffusion_model.", path);
  unet->eval();
  auto io = load_safetensors(kTiny + "unet_io.safetensors");
  auto fused = unet->forward(io.at("latent_b2"), io.at("timestep_b2"), io.at("context_b2"));
  ProbsPath hook;
  unet->set_attention_hook(&hook);
  auto explicit_path = unet->forward(io.at("latent_b2"), io.at("timestep_b2"), io.at("context_b2"));
  EXPECT_LE(rel(fused, explicit_path), 1e-5);
  EXPECT_LE(rel(fused, io.at("eps_b2")), 1e-4);
  EXPECT_LE(rel(explicit_path, io.at("eps_b2")), 1e-4);
}

}  // namespace
}  // namespace sine
