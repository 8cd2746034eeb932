// On a GPU (label cuda; run by scripts/device-check.sh): every parity fixture on CUDA in fp32 within
// 1e-4 relative, fp16/bf16 within the stated bounds, the fused SDPA path equal to the explicit one,
// the CUDA-graph sampler equal to the eager one, and no NaN/Inf from an SD 1.5-size random model in fp16.
#include "precision_util.h"

#include "core/runtime.h"
#include "models/attention_hook.h"
#include "models/presets.h"
#include "models/stable_diffusion.h"
#include "models/unet_graph.h"

namespace sine::test {
namespace {

bool have_cuda() { return torch::cuda::is_available(); }

#define REQUIRE_CUDA() \
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device"

TEST(PrecisionCuda, Fp32MatchesTheFixtures) {
  REQUIRE_CUDA();
  auto e = tiny_component_errors(torch::kCUDA, torch::kFloat32);
  expect_within(e, 1e-4, "CUDA fp32");
}

TEST(PrecisionCuda, Bf16AndFp16WithinTheStatedBounds) {
  REQUIRE_CUDA();
  for (auto [dtype, bound] : {std::pair{torch::kBFloat16, 8e-2}, std::pair{torch::kFloat16, 1e-2}}) {
    auto e = tiny_component_errors(torch::kCUDA, dtype);
    expect_within(e, bound, c10::toString(dtype));
  }
}

struct ProbsPath : AttentionHook {
  bool needs_probs(const AttentionSite&) override { return true; }
};

TEST(PrecisionCuda, SdpaEqualsExplicitAttention) {
  REQUIRE_CUDA();
  torch::NoGradGuard no_grad;
  Pipeline pipe = load_tiny_pipeline(torch::kCUDA, torch::kFloat32);
  auto io = load_safetensors(kTinyDir + "/unet_io.safetensors");
  auto& unet = pipe.model()->unet;
  auto x = io.at("latent_b2").cuda(), t = io.at("timestep_b2").cuda(), c = io.at("context_b2").cuda();
  auto fused = unet->forward(x, t, c);
  ProbsPath hook;
  torch::Tensor explicit_path;
  {
    ScopedAttentionHook guard(unet, &hook);
    explicit_path = unet->forward(x, t, c);
  }
  EXPECT_LE(relative_error(fused, explicit_path, "fused vs explicit"), 1e-5);
}

TEST(PrecisionCuda, CudaGraphSamplingEqualsEager) {
  REQUIRE_CUDA();
  Pipeline pipe = load_tiny_pipeline(torch::kCUDA, torch::kFloat32);
  auto fx = load_safetensors(kTinyDir + "/pipeline_txt2img.safetensors");
  GenerateOptions g;
  g.prompt = "a photograph of an astronaut riding a horse";
  g.steps = 5;
  g.width = g.height = 128;
  g.init_latents = fx.at("init_latents");
  auto eager = pipe.generate_latents(g);
  g.cuda_graph = true;
  auto graphed = pipe.generate_latents(g);
  EXPECT_LE(relative_error(graphed, eager, "graph vs eager"), 1e-5);
  EXPECT_LE(relative_error(graphed, fx.at("final_latents"), "graph vs fixture"), 1e-4);
}

TEST(PrecisionCuda, Sd15RandomWeightsStayFiniteInFp16) {
  REQUIRE_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  ModelConfig config = model_config_preset("sd15");
  StableDiffusion model = [&] {
    ScopedDefaultDtype build_in(torch::kFloat16);
    return StableDiffusion(config);
  }();
  model->to(torch::kCUDA, torch::kFloat16);
  model->eval();
  const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat16);
  auto ids = torch::randint(0, config.text.vocab_size, {2, 77}, opts.dtype(torch::kLong));
  auto ctx = model->text_encoder->encode(ids).last_hidden_state;
  auto eps = model->unet->forward(torch::randn({2, 4, 64, 64}, opts), torch::full({2}, 999, opts.dtype(torch::kLong)), ctx);
  auto image = model->vae->decode(torch::randn({1, 4, 64, 64}, opts));
  EXPECT_TRUE(torch::isfinite(ctx).all().item<bool>()) << "text encoder";
  EXPECT_TRUE(torch::isfinite(eps).all().item<bool>()) << "UNet";
  EXPECT_TRUE(torch::isfinite(image).all().item<bool>()) << "VAE decode at 512x512";
}

}  // namespace
}  // namespace sine::test
