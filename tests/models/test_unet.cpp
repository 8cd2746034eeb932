#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/unet.h"
#include "models/weights.h"

namespace {

const std::string kTiny = std::string(SINE_SHARED_DIR) + "/reference/tiny/";
const std::string kPrefix = "model.diffusion_model.";

sine::UNetConfig tiny_config() {
  sine::UNetConfig c;
  c.model_channels = 8;
  c.channel_mult = {1, 2, 4, 4};
  c.num_heads = 2;
  c.context_dim = 32;
  c.norm_groups = 4;
  return c;
}

sine::UNetModel load_tiny(sine::UNetConfig config = tiny_config()) {
  sine::UNetModel unet(config);
  const std::string path = kTiny + "tiny_sd15_original.safetensors";
  sine::load_module_weights(*unet, sine::load_safetensors(path), kPrefix, path);
  unet->eval();
  return unet;
}

// Asserts max|a - ref| <= 1e-4 * max(1, max|ref|) and prints the errors.
void expect_close(const torch::Tensor& a, const torch::Tensor& ref, const std::string& what, double rel = 1e-4) {
  ASSERT_EQ(a.sizes(), ref.sizes()) << what;
  const double scale = std::max(1.0, ref.abs().max().item<double>());
  const double err = (a - ref).abs().max().item<double>();
  std::cout << "  " << what << ": max abs err " << err << ", relative " << err / scale << "\n";
  EXPECT_LE(err, rel * scale) << what;
}

struct Io {
  std::map<std::string, torch::Tensor> t = sine::load_safetensors(kTiny + "unet_io.safetensors");
};

TEST(UNet, TinyMatchesReferenceEps) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  Io io;
  expect_close(unet(io.t["latent"], io.t["timestep"], io.t["context"]), io.t["eps"], "eps");
  expect_close(unet(io.t["latent_b2"], io.t["timestep_b2"], io.t["context_b2"]), io.t["eps_b2"], "eps_b2");
}

// NHWC convolutions and activations give the reference ε too (and back to NCHW, the same again);
// gradients flow through them.
TEST(UNet, ChannelsLastMatchesReference) {
  auto unet = load_tiny();
  Io io;
  unet->set_channels_last(true);
  EXPECT_TRUE(unet->channels_last());
  for (const auto& p : unet->parameters())
    if (p.dim() == 4) EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast));
  {
    torch::NoGradGuard no_grad;
    auto eps = unet(io.t["latent_b2"], io.t["timestep_b2"], io.t["context_b2"]);
    EXPECT_TRUE(eps.is_contiguous());
    expect_close(eps, io.t["eps_b2"], "eps_b2 (channels-last)");
  }
  auto x = io.t["latent"].clone().requires_grad_(true);
  unet(x, io.t["timestep"], io.t["context"]).pow(2).mean().backward();
  ASSERT_TRUE(x.grad().defined());
  auto grad_nhwc = x.grad().clone();
  unet->set_channels_last(false);
  for (const auto& p : unet->parameters())
    if (p.dim() == 4) EXPECT_TRUE(p.is_contiguous());
  x.mutable_grad() = torch::Tensor();
  unet(x, io.t["timestep"], io.t["context"]).pow(2).mean().backward();
  expect_close(grad_nhwc, x.grad(), "input gradient (channels-last vs NCHW)", 1e-5);
}

TEST(UNet, TinyMatchesReferenceIntermediates) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  Io io;
  std::map<std::string, torch::Tensor> seen;
  unet->set_tap([&](const std::string& name, const torch::Tensor& v) { seen[name] = v.clone(); });
  unet(io.t["latent"], io.t["timestep"], io.t["context"]);
  auto ref = sine::load_safetensors(kTiny + "unet_intermediates.safetensors");
  for (const auto& [name, value] : ref) {
    ASSERT_TRUE(seen.count(name)) << "no intermediate named " << name;
    expect_close(seen[name], value, name);
  }
}

TEST(UNet, ScalarTimestepBroadcastsOverBatch) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  Io io;
  auto x = io.t["latent_b2"], ctx = io.t["context_b2"];
  auto per_item = unet(x, torch::tensor({500, 500}, torch::kInt64), ctx);
  auto scalar = unet(x, torch::tensor(500, torch::kInt64), ctx);
  EXPECT_TRUE(torch::allclose(per_item, scalar, 0, 1e-6));
}

TEST(UNet, ConvInAdditionEntersTheFirstSkip) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  Io io;
  auto x = io.t["latent"], t = io.t["timestep"], ctx = io.t["context"];
  torch::Tensor plain_conv_in, added_conv_in;
  unet->set_tap([&](const std::string& n, const torch::Tensor& v) {
    if (n == "conv_in") plain_conv_in = v.clone();
  });
  auto eps = unet(x, t, ctx);
  auto grid = torch::randn({1, 8, 16, 16});
  unet->set_tap([&](const std::string& n, const torch::Tensor& v) {
    if (n == "conv_in") added_conv_in = v.clone();
  });
  auto eps_grid = unet(x, t, ctx, grid);
  EXPECT_TRUE(torch::allclose(added_conv_in, plain_conv_in + grid, 0, 1e-6));
  EXPECT_GT((eps_grid - eps).abs().max().item<double>(), 1e-3);
  EXPECT_TRUE(torch::allclose(unet(x, t, ctx, torch::zeros({1, 8, 16, 16})), eps, 0, 1e-6));
  EXPECT_THROW(unet(x, t, ctx, torch::zeros({1, 8, 8, 8})), sine::Error);
}

TEST(UNet, LatentSizesNotDivisibleByEight) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  auto ctx = torch::randn({1, 77, 32});
  for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{20, 12}, {13, 9}}) {
    auto eps = unet(torch::randn({1, 4, hw.first, hw.second}), torch::tensor({10}), ctx);
    EXPECT_EQ(eps.sizes(), (std::vector<int64_t>{1, 4, hw.first, hw.second}));
  }
}

TEST(UNet, BadInputsAreUserErrors) {
  torch::NoGradGuard no_grad;
  sine::UNetModel unet(tiny_config());
  auto x = torch::randn({2, 4, 16, 16});
  EXPECT_THROW(unet(torch::randn({1, 3, 16, 16}), torch::tensor({1}), torch::randn({1, 77, 32})), sine::Error);
  EXPECT_THROW(unet(x, torch::tensor({1, 2, 3}), torch::randn({2, 77, 32})), sine::Error);
  EXPECT_THROW(unet(x, torch::tensor({1}), torch::randn({2, 77, 16})), sine::Error);
}

// Key list lines: name<TAB>[d0, d1]<TAB>dtype.
std::map<std::string, std::vector<int64_t>> read_unet_keys(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::map<std::string, std::vector<int64_t>> keys;
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, kPrefix.size(), kPrefix) != 0) continue;
    std::istringstream fields(line);
    std::string name, shape;
    std::getline(fields, name, '\t');
    std::getline(fields, shape, '\t');
    std::vector<int64_t> dims;
    std::istringstream s(shape.substr(1, shape.size() - 2));
    std::string d;
    while (std::getline(s, d, ',')) dims.push_back(std::stoll(d));
    keys[name.substr(kPrefix.size())] = dims;
  }
  return keys;
}

void expect_keys_equal(const sine::UNetModel& unet, const std::string& key_file) {
  auto expected = read_unet_keys(key_file);
  std::map<std::string, std::vector<int64_t>> actual;
  for (const auto& p : unet->named_parameters(true)) actual[p.key()] = p.value().sizes().vec();
  for (const auto& b : unet->named_buffers(true)) actual[b.key()] = b.value().sizes().vec();
  for (const auto& [k, shape] : expected) {
    auto it = actual.find(k);
    ASSERT_TRUE(it != actual.end()) << "model lacks " << k;
    EXPECT_EQ(it->second, shape) << k;
  }
  for (const auto& [k, shape] : actual) EXPECT_TRUE(expected.count(k)) << "unexpected " << k;
}

TEST(UNet, TinyKeysEqualReferenceList) {
  expect_keys_equal(sine::UNetModel(tiny_config()), kTiny + "tiny_keys_original.txt");
}

TEST(UNet, SD15ArchitectureKeysAndParameterCount) {
  sine::UNetModel unet(sine::UNetConfig{});
  EXPECT_EQ(sine::count_parameters(*unet), 859520964);
  EXPECT_EQ(unet->num_attention_layers(), 16);
  expect_keys_equal(unet, std::string(SINE_SHARED_DIR) + "/reference/sd15_keys_original.txt");
}

struct RecordingHook : sine::AttentionHook {
  std::vector<sine::AttentionSite> sites;
  void on_qkv(const sine::AttentionSite& site, torch::Tensor& q, torch::Tensor& k, torch::Tensor& v) override {
    sites.push_back(site);
    EXPECT_EQ(q.size(1), site.height * site.width);
    EXPECT_EQ(k.size(1), site.is_cross ? 77 : site.height * site.width);
  }
};

TEST(UNet, HookSeesEverySiteInForwardOrder) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  Io io;
  RecordingHook hook;
  unet->set_attention_hook(&hook);
  unet->set_step(7);
  unet(io.t["latent"], io.t["timestep"], io.t["context"]);
  ASSERT_EQ(hook.sites.size(), 32u);
  EXPECT_EQ(unet->num_attention_layers(), 16);
  // Resolution of each of the 16 transformers for a 16x16 latent, in forward order.
  const int64_t size[16] = {16, 16, 8, 8, 4, 4, 2, 4, 4, 4, 8, 8, 8, 16, 16, 16};
  for (int i = 0; i < 16; ++i) {
    const auto& self = hook.sites[2 * i];
    const auto& cross = hook.sites[2 * i + 1];
    const std::string place = i < 6 ? "down" : i == 6 ? "mid" : "up";
    EXPECT_FALSE(self.is_cross);
    EXPECT_TRUE(cross.is_cross);
    for (const auto* s : {&self, &cross}) {
      EXPECT_EQ(s->layer, i);
      EXPECT_EQ(s->place, place) << i;
      EXPECT_EQ(s->height, size[i]) << i;
      EXPECT_EQ(s->width, size[i]) << i;
      EXPECT_EQ(s->heads, 2);
      EXPECT_EQ(s->step, 7);
    }
  }
}

struct ProbsHook : sine::AttentionHook {
  int calls = 0;
  bool needs_probs(const sine::AttentionSite&) override { return true; }
  torch::Tensor on_probs(const sine::AttentionSite& site, torch::Tensor probs) override {
    ++calls;
    EXPECT_EQ(probs.size(1), site.heads);
    return probs;
  }
};

TEST(UNet, HookWithProbabilitiesMatchesFusedPath) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  Io io;
  auto fused = unet(io.t["latent_b2"], io.t["timestep_b2"], io.t["context_b2"]);
  ProbsHook hook;
  unet->set_attention_hook(&hook);
  auto explicit_probs = unet(io.t["latent_b2"], io.t["timestep_b2"], io.t["context_b2"]);
  EXPECT_EQ(hook.calls, 32);
  EXPECT_LE((explicit_probs - fused).abs().max().item<double>(), 1e-5);
  unet->set_attention_hook(nullptr);
  EXPECT_TRUE(torch::equal(unet(io.t["latent_b2"], io.t["timestep_b2"], io.t["context_b2"]), fused));
}

TEST(UNet, ScopedAttentionHookRestoresThePreviousHook) {
  sine::UNetModel unet(tiny_config());
  RecordingHook outer, inner;
  unet->set_attention_hook(&outer);
  {
    sine::ScopedAttentionHook guard(unet, &inner);
    EXPECT_EQ(unet->attention_hook(), &inner);
    {
      sine::ScopedAttentionHook none(unet, nullptr);
      EXPECT_EQ(unet->attention_hook(), nullptr);
    }
    EXPECT_EQ(unet->attention_hook(), &inner);
  }
  EXPECT_EQ(unet->attention_hook(), &outer);
  unet->set_attention_hook(nullptr);
}

TEST(UNet, ScopedAttentionHookRestoresThePreviousHookOnException) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  Io io;
  RecordingHook outer, inner;
  unet->set_attention_hook(&outer);
  try {
    sine::ScopedAttentionHook guard(unet, &inner);
    unet(io.t["latent"], io.t["timestep"], io.t["context"]);
    throw std::runtime_error("cancelled mid-sampling");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(unet->attention_hook(), &outer);
  EXPECT_EQ(inner.sites.size(), 32u);
  EXPECT_TRUE(outer.sites.empty());
  // A UNet call that throws inside the guarded scope restores it too.
  EXPECT_THROW(
      {
        sine::ScopedAttentionHook guard(unet, &inner);
        unet(io.t["latent"], io.t["timestep"], torch::randn({1, 77, 5}));  // wrong context width
      },
      std::exception);
  EXPECT_EQ(unet->attention_hook(), &outer);
  unet->set_attention_hook(nullptr);
}

struct SilenceCrossAttention : sine::AttentionHook {
  torch::Tensor on_output(const sine::AttentionSite& site, torch::Tensor out, const torch::Tensor&,
                          const torch::Tensor&, const torch::Tensor&) override {
    return site.is_cross ? torch::zeros_like(out) : out;
  }
};

TEST(UNet, HookReplacingOutputChangesEps) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny();
  Io io;
  auto eps = unet(io.t["latent"], io.t["timestep"], io.t["context"]);
  SilenceCrossAttention hook;
  unet->set_attention_hook(&hook);
  auto edited = unet(io.t["latent"], io.t["timestep"], io.t["context"]);
  EXPECT_GT((edited - eps).abs().max().item<double>(), 1e-3);
  // With cross-attention silenced the text no longer matters.
  auto other_text = unet(io.t["latent"], io.t["timestep"], torch::randn({1, 77, 32}));
  EXPECT_TRUE(torch::allclose(edited, other_text, 0, 1e-6));
}

// Loss gradients of every parameter and of the context, with the given checkpointing setting.
// `attention_calls` counts hook calls over forward and backward (recomputation calls hooks again).
std::map<std::string, torch::Tensor> gradients(bool use_checkpoint, torch::Tensor& context_grad,
                                               size_t& attention_calls) {
  auto config = tiny_config();
  config.use_checkpoint = use_checkpoint;
  auto unet = load_tiny(config);
  unet->train();
  RecordingHook hook;
  unet->set_attention_hook(&hook);
  Io io;
  auto context = io.t["context_b2"].clone().requires_grad_(true);
  auto eps = unet(io.t["latent_b2"], io.t["timestep_b2"], context);
  (eps - io.t["eps_b2"].flip(0)).pow(2).mean().backward();
  attention_calls = hook.sites.size();
  context_grad = context.grad();
  std::map<std::string, torch::Tensor> grads;
  for (const auto& p : unet->named_parameters(true)) grads[p.key()] = p.value().grad();
  return grads;
}

TEST(UNet, GradientCheckpointingGivesTheSameGradients) {
  torch::Tensor ctx_plain, ctx_ckpt;
  size_t calls_plain = 0, calls_ckpt = 0;
  auto plain = gradients(false, ctx_plain, calls_plain);
  auto ckpt = gradients(true, ctx_ckpt, calls_ckpt);
  EXPECT_EQ(calls_plain, 32u);
  EXPECT_EQ(calls_ckpt, 64u) << "the transformers were not recomputed during backward";
  double worst = 0, scale = 0;
  for (const auto& [name, g] : plain) {
    ASSERT_TRUE(g.defined()) << name;
    ASSERT_TRUE(ckpt[name].defined()) << "no gradient with checkpointing for " << name;
    worst = std::max(worst, (ckpt[name] - g).abs().max().item<double>());
    scale = std::max(scale, g.abs().max().item<double>());
  }
  std::cout << "  parameter gradients: max abs diff " << worst << " (max |grad| " << scale << ")\n";
  EXPECT_LE(worst, 1e-6 * std::max(1.0, scale));
  expect_close(ctx_ckpt, ctx_plain, "context gradient", 1e-6);
}

// SingleInsert-style training: frozen UNet, gradients only to the conditioning inputs.
TEST(UNet, CheckpointingWithFrozenWeightsGivesInputGradients) {
  Io io;
  std::vector<torch::Tensor> grads;
  for (bool use_checkpoint : {false, true}) {
    auto config = tiny_config();
    config.use_checkpoint = use_checkpoint;
    auto unet = load_tiny(config);
    unet->train();
    for (auto& p : unet->parameters()) p.requires_grad_(false);
    auto context = io.t["context"].clone().requires_grad_(true);
    auto grid = torch::zeros({1, 8, 16, 16}).requires_grad_(true);
    unet(io.t["latent"], io.t["timestep"], context, grid).pow(2).mean().backward();
    ASSERT_TRUE(context.grad().defined() && grid.grad().defined());
    grads.push_back(torch::cat({context.grad().flatten(), grid.grad().flatten()}));
  }
  expect_close(grads[1], grads[0], "input gradients with frozen weights", 1e-6);
}

}  // namespace
