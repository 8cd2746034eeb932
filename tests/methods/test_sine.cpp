// SINE: model-based guidance, fine-tuning, the saved model and the edit, on tiny random models.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "core/progress.h"
#include "diffusion/ddim.h"
#include "io/safetensors.h"
#include "methods/sine/sine_branches.h"
#include "methods/sine/sine_edit.h"
#include "methods/sine/sine_finetune.h"
#include "methods/sine/sine_guidance.h"
#include "methods/sine/sine_model.h"
#include "methods/sine/sine_patch.h"
#include "diffusion/noise_schedule.h"

namespace fs = std::filesystem;
using namespace sine;

namespace {

struct Quiet : ::testing::Environment {
  void SetUp() override {
    set_progress_enabled(false);
    torch::set_num_threads(1);
  }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

std::shared_ptr<ClipTokenizer> tiny_tokenizer() {
  static auto tok = std::make_shared<ClipTokenizer>(ClipTokenizer::from_merges({}));
  return tok;
}

// 16x16 images, VAE factor 2 (8x8 latents), model_channels 8: milliseconds per step.
ModelConfig micro_config() {
  ModelConfig c;
  c.vae.ch = 8;
  c.vae.ch_mult = {1, 2};
  c.vae.num_res_blocks = 1;
  c.vae.norm_groups = 4;
  c.unet.model_channels = 8;
  c.unet.channel_mult = {1, 2};
  c.unet.num_res_blocks = 1;
  c.unet.attention_levels = {1};
  c.unet.num_heads = 2;
  c.unet.context_dim = 16;
  c.unet.norm_groups = 4;
  c.unet.sample_size = 8;
  c.text.vocab_size = tiny_tokenizer()->vocab_size();
  c.text.width = 16;
  c.text.layers = 1;
  c.text.heads = 2;
  c.text.mlp_width = 32;
  c.text.context_length = 16;
  return c;
}

// The same random weights for a given seed.
Pipeline micro_pipeline(uint64_t seed = 1) {
  torch::manual_seed(seed);
  StableDiffusion model(micro_config());
  model->eval();
  return Pipeline(model, tiny_tokenizer(), torch::kCPU, torch::kFloat32, "micro-" + std::to_string(seed));
}

torch::Tensor test_image() {
  auto img = torch::zeros({24, 20, 3}, torch::kUInt8);
  img.slice(0, 4, 14).slice(1, 6, 16).fill_(200);
  img.select(2, 0).slice(0, 12, 22).fill_(90);
  return img;
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("sine_test_sine_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

SineFinetuneConfig quick_config(SineMode mode, int64_t steps = 4) {
  SineFinetuneConfig c;
  c.class_word = "thing";
  c.mode = mode;
  c.steps = steps;
  c.lr = 1e-3;
  c.seed = 5;
  return c;
}

std::map<std::string, torch::Tensor> snapshot(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item_ : m.named_parameters()) {
    const std::string& k = item_.key();
    const torch::Tensor& v = item_.value();
    out[k] = v.detach().clone();
  }
  return out;
}

int count_changed(torch::nn::Module& m, const std::map<std::string, torch::Tensor>& before) {
  int changed = 0;
  for (const auto& item_ : m.named_parameters()) {
    const std::string& k = item_.key();
    const torch::Tensor& v = item_.value();
    changed += !torch::equal(v, before.at(k));
  }
  return changed;
}

// A constant ε source that counts its calls and records the timesteps it saw.
struct Counted {
  float value;
  int calls = 0;
  std::vector<int64_t> seen;
  ModelEps fn() {
    return [this](const torch::Tensor& x, int64_t t) {
      ++calls;
      seen.push_back(t);
      return torch::full_like(x, value);
    };
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Guidance

TEST(SineGuidance, FormulaSingleModel) {
  auto e_u = torch::full({1, 4, 2, 2}, 1.0f), e_c = torch::full({1, 4, 2, 2}, 2.0f), e_f = torch::full({1, 4, 2, 2}, 5.0f);
  const double s = 7.5, v = 0.7;
  auto e = model_based_guidance(e_u, e_c, {{e_f, 1 - v}}, s);
  EXPECT_NEAR(e[0][0][0][0].item<float>(), 1 + s * (v * 2 + (1 - v) * 5 - 1), 1e-5);
  // v = 1: the pre-trained model alone; v = 0: the fine-tuned model's prompt alone.
  EXPECT_TRUE(torch::allclose(model_based_guidance(e_u, e_c, {{e_f, 0.0}}, s), e_u + s * (e_c - e_u)));
  EXPECT_TRUE(torch::allclose(model_based_guidance(e_u, e_c, {{e_f, 1.0}}, s), e_u + s * (e_f - e_u)));
  // No active model: plain CFG.
  EXPECT_TRUE(torch::allclose(model_based_guidance(e_u, e_c, {}, s), e_u + s * (e_c - e_u)));
}

TEST(SineGuidance, FormulaSeveralModelsWeightsFinetunedOnes) {
  auto e_u = torch::full({1}, 1.0f), e_c = torch::full({1}, 2.0f);
  auto e_f1 = torch::full({1}, 5.0f), e_f2 = torch::full({1}, -3.0f);
  // ε = ε_u + s((1 − Σβ)ε_c + Σβ_i ε_f,i − ε_u)
  auto e = model_based_guidance(e_u, e_c, {{e_f1, 0.2}, {e_f2, 0.1}}, 3.0);
  EXPECT_NEAR(e.item<float>(), 1 + 3.0 * (0.7 * 2 + 0.2 * 5 + 0.1 * -3 - 1), 1e-5);
}

TEST(SineGuidance, KBoundaryIsInclusiveAndEvaluationsAreCounted) {
  Counted u{1}, c{2}, f{5};
  GuidanceSources src{u.fn(), c.fn(), {{f.fn(), 0.3, 400}}};
  auto x = torch::zeros({1, 4, 2, 2});
  auto at_k = guided_eps(src, x, 400, 7.5);  // t = K: guided
  EXPECT_EQ(f.calls, 1);
  EXPECT_NEAR(at_k[0][0][0][0].item<float>(), 1 + 7.5 * (0.7 * 2 + 0.3 * 5 - 1), 1e-5);
  auto below = guided_eps(src, x, 399, 7.5);  // t < K: the pre-trained model only
  EXPECT_EQ(f.calls, 1) << "the fine-tuned model is not evaluated after K";
  EXPECT_NEAR(below[0][0][0][0].item<float>(), 1 + 7.5 * (2 - 1), 1e-5);
  EXPECT_EQ(u.calls, 2);
  EXPECT_EQ(c.calls, 2);
}

TEST(SineGuidance, SamplerRunsThreeEvaluationsPerGuidedStepThenTwo) {
  Counted u{0.1f}, c{0.2f}, f{-0.3f};
  GuidanceSources src{u.fn(), c.fn(), {{f.fn(), 0.3, 400}}};
  auto x_T = torch::randn({1, 4, 3, 3});
  sine_sample(src, x_T, {10, 7.5});
  // LDM timesteps for 10 steps: 901, 801, ..., 1; t >= 400 for 901..401 (6 steps).
  EXPECT_EQ(u.calls, 10);
  EXPECT_EQ(c.calls, 10);
  EXPECT_EQ(f.calls, 6);
  EXPECT_EQ(f.seen, (std::vector<int64_t>{901, 801, 701, 601, 501, 401}));
  EXPECT_EQ(u.seen.front(), 901);
  EXPECT_EQ(u.seen.back(), 1);
  // Two fine-tuned models with their own K: each is evaluated only at its own t >= K_i.
  Counted f2{0.4f};
  src.finetuned.push_back({f2.fn(), 0.1, 700});
  sine_sample(src, x_T, {10, 7.5});
  EXPECT_EQ(f2.calls, 3);
}

TEST(SineGuidance, SamplerIsDDIMEtaZeroWithTheGuidedEps) {
  // ε sources that depend on x and t, and a manual DDIM loop with the same formula.
  auto make = [](float a) {
    return [a](const torch::Tensor& x, int64_t t) { return a * x + 1e-4f * static_cast<float>(t); };
  };
  GuidanceSources src{make(0.1f), make(0.3f), {{make(-0.2f), 0.4, 500}}};
  auto x_T = torch::randn({1, 4, 3, 3});
  auto got = sine_sample(src, x_T, {20, 5.0});
  DDIMScheduler sched(DDIMConfig::stable_diffusion(), 20);
  auto x = x_T.clone();
  for (int64_t i = 0; i < 20; ++i) {
    const int64_t t = sched.timesteps()[i].item<int64_t>();
    auto e_u = 0.1f * x + 1e-4f * t, e_c = 0.3f * x + 1e-4f * t, e_f = -0.2f * x + 1e-4f * t;
    auto e = t >= 500 ? e_u + 5.0 * (0.6 * e_c + 0.4 * e_f - e_u) : e_u + 5.0 * (e_c - e_u);
    x = sched.step(e, t, x, 0.0).prev_sample;
  }
  EXPECT_TRUE(torch::allclose(got, x, 1e-5, 1e-6));
  EXPECT_EQ(sched.timesteps()[19].item<int64_t>(), 1);
}

// ---------------------------------------------------------------------------------------------
// Fine-tuning

TEST(SineFinetune, PromptTemplate) {
  EXPECT_EQ(sine_training_prompt("photo of a sks {class}", "dog"), "photo of a sks dog");
  EXPECT_EQ(sine_training_prompt("{class} in the sks style", "girl"), "girl in the sks style");
  EXPECT_THROW(sine_training_prompt("photo of a sks", "dog"), Error);
}

TEST(SineFinetune, TrainsUNetAndTextOnlyAndReducesTheLoss) {
  Pipeline pipe = micro_pipeline();
  StableDiffusion& m = pipe.model();
  auto vae0 = snapshot(*m->vae), unet0 = snapshot(*m->unet), text0 = snapshot(*m->text_encoder);
  SineFinetuneConfig c = quick_config(SineMode::Whole, 60);
  c.lr = 3e-3;
  SineFinetuner ft(pipe, test_image(), c);
  EXPECT_EQ(ft.prompt(), "photo of a sks thing");
  EXPECT_EQ(ft.grid(), nullptr);
  // The same 16 fixed draws before and after training.
  auto eval = [&] {
    torch::NoGradGuard ng;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(99);
    double sum = 0;
    for (int i = 0; i < 16; ++i) sum += ft.loss(gen).total.item<double>();
    return sum / 16;
  };
  const double before = eval();
  ft.train();
  const double after = eval();
  EXPECT_LT(after, 0.8 * before) << "before " << before << " after " << after;
  EXPECT_EQ(count_changed(*m->vae, vae0), 0) << "the VAE is frozen (bit-identical)";
  EXPECT_EQ(count_changed(*m->unet, unet0), static_cast<int>(unet0.size())) << "every UNet tensor trains";
  EXPECT_GT(count_changed(*m->text_encoder, text0), static_cast<int>(text0.size()) / 2);
  for (const auto& p : m->vae->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(SineFinetune, PatchModeUsesTheGridAndTheReconstructionTerm) {
  Pipeline pipe = micro_pipeline();
  SineFinetuner ft(pipe, test_image(), quick_config(SineMode::Patch));
  ASSERT_NE(ft.grid(), nullptr);
  EXPECT_EQ(ft.grid()->config().size, 16);  // 2 x the 8x8 training latent
  EXPECT_EQ(ft.grid()->config().channels, 8);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  bool some_recon = false, some_crop = false;
  for (int i = 0; i < 10; ++i) {
    SineLossParts parts = ft.loss(gen);
    const double wt = parts.t / 1000.0;
    EXPECT_GE(parts.recon_loss.item<double>(), 0);
    EXPECT_NEAR(parts.total.item<double>(), parts.eps_loss.item<double>() + parts.recon_loss.item<double>(),
                1e-5 * (1 + parts.total.item<double>()));
    some_recon |= parts.recon_loss.item<double>() > 0 && wt > 0;
    some_crop |= parts.box.height() < 16 || parts.box.width() < 16;
    EXPECT_LE(parts.box.y1, 16);
  }
  EXPECT_TRUE(some_recon);
  EXPECT_TRUE(some_crop);
  // Whole-image mode has no reconstruction term.
  Pipeline pipe2 = micro_pipeline();
  SineFinetuner whole(pipe2, test_image(), quick_config(SineMode::Whole));
  auto gen2 = at::make_generator<at::CPUGeneratorImpl>(3);
  EXPECT_EQ(whole.loss(gen2).recon_loss.item<double>(), 0.0);
}

// The patch fine-tune's loss put together by hand from the same draws: crop → posterior sample →
// t → noise, x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·n with SD's scaled-linear ᾱ written out here, the UNet on
// the training prompt with the grid sliced to the crop, then ‖ε̂ − n‖² + w·(t/1000)²·mean|x̂0 − x0|.
TEST(SineFinetune, PatchLossEqualsAHandBuiltComputation) {
  Pipeline pipe = micro_pipeline();
  auto cfg = quick_config(SineMode::Patch);
  cfg.recon_weight = 2.0;  // so the weight's wiring shows in the total
  SineFinetuner ft(pipe, test_image(), cfg);
  Pipeline ref = micro_pipeline();  // the same weights, never trained
  PatchSampler sampler(test_image(), ref.native_size(), 16, cfg.min_patch_fraction);
  PositionalGrid grid({8, 16, cfg.grid_interpolation});
  auto betas = torch::linspace(std::sqrt(0.00085), std::sqrt(0.012), 1000, torch::kFloat64).pow(2);
  auto alpha_bar = torch::cumprod(1 - betas, 0);
  torch::NoGradGuard no_grad;
  auto context = ref.model()->text_encoder->encode(ref.tokenize("photo of a sks thing")).last_hidden_state;
  int with_recon = 0;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    SineLossParts parts = ft.loss(gen);

    auto hand = at::make_generator<at::CPUGeneratorImpl>(seed);
    PatchSample crop = sampler.sample(hand);
    auto x0 = ref.encode_image(crop.image, hand);
    const int64_t t = sample_timesteps(1, hand).item<int64_t>();
    auto noise = torch::randn(x0.sizes(), hand, torch::kFloat32);
    const double a = alpha_bar[t].item<double>();
    auto x_t = std::sqrt(a) * x0 + std::sqrt(1 - a) * noise;
    auto eps = ref.model()->unet->forward(x_t, torch::full({1}, t, torch::kLong), context,
                                          grid.crop(crop.box, x0.size(2), x0.size(3)));
    const double eps_loss = (eps - noise).pow(2).mean().item<double>();
    auto x0_hat = (x_t - std::sqrt(1 - a) * eps) / std::sqrt(a);
    const double recon = (x0_hat - x0).abs().mean().item<double>() * (t / 1000.0) * (t / 1000.0);

    EXPECT_EQ(parts.t, t);
    EXPECT_EQ(parts.box.y0, crop.box.y0);
    EXPECT_EQ(parts.box.x1, crop.box.x1);
    EXPECT_NEAR(parts.eps_loss.item<double>(), eps_loss, 1e-5 * (1 + eps_loss));
    EXPECT_NEAR(parts.recon_loss.item<double>(), recon, 1e-5 * (1 + recon));
    EXPECT_NEAR(parts.total.item<double>(), eps_loss + 2.0 * recon, 1e-5 * (1 + eps_loss + recon));
    with_recon += recon > 1e-4;
  }
  EXPECT_GT(with_recon, 0);  // the term is not vacuously zero on these draws
}

TEST(SineFinetune, ResumeEqualsUninterrupted) {
  fs::path dir = temp_dir("resume");
  auto run = [&](bool interrupted) {
    Pipeline pipe = micro_pipeline();
    SineFinetuneConfig c = quick_config(SineMode::Patch, 6);
    c.checkpoint_path = (dir / (interrupted ? "a.ckpt" : "b.ckpt")).string();
    if (interrupted) {
      SineFinetuner first(pipe, test_image(), c);
      first.train(3);
    }
    Pipeline pipe2 = micro_pipeline();
    SineFinetuner ft(pipe2, test_image(), c);
    EXPECT_EQ(ft.resume(), interrupted);
    ft.train();
    return snapshot(*pipe2.model());
  };
  auto straight = run(false), resumed = run(true);
  for (const auto& [k, v] : straight) EXPECT_TRUE(torch::equal(v, resumed.at(k))) << k;
  fs::remove_all(dir);
}

TEST(SineModelFile, RoundTripStoresOnlyDeltasWithMetadata) {
  fs::path dir = temp_dir("roundtrip");
  Pipeline pipe = micro_pipeline();
  SineFinetuneConfig c = quick_config(SineMode::Patch, 3);
  c.lr = 1e-4;  // small updates: fp16 deltas must keep them
  SineFinetuner ft(pipe, test_image(), c);
  ft.train();
  const std::string path = (dir / "ft.safetensors").string();
  save_sine_model(path, ft, "base.safetensors");

  SafeTensors file = SafeTensors::open(path);
  for (const auto& key : file.keys()) {
    EXPECT_EQ(file.info(key).dtype, "F16") << key;
    EXPECT_TRUE(key.rfind(StableDiffusionImpl::kUNetPrefix, 0) == 0 || key.rfind(StableDiffusionImpl::kTextPrefix, 0) == 0)
        << "no VAE tensors: " << key;
  }
  SineModelInfo info = read_sine_model_info(path);
  EXPECT_EQ(info.prompt, "photo of a sks thing");
  EXPECT_EQ(info.class_word, "thing");
  EXPECT_EQ(info.mode, SineMode::Patch);
  EXPECT_EQ(info.steps, 3);
  EXPECT_DOUBLE_EQ(info.lr, 1e-4);
  EXPECT_EQ(info.seed, 5u);
  ASSERT_TRUE(info.grid.has_value());
  EXPECT_EQ(info.grid->size, 16);
  EXPECT_EQ(info.grid->channels, 8);
  EXPECT_EQ(info.base_model, "base.safetensors");
  EXPECT_EQ(info.training_size, 16);
  EXPECT_EQ(info.storage, "delta-f16");

  Pipeline base = micro_pipeline();
  EXPECT_EQ(weights_fingerprint(base.model()), info.base_fingerprint);
  apply_sine_model(base, path);
  auto trained = snapshot(*pipe.model()), loaded = snapshot(*base.model());
  auto original = snapshot(*micro_pipeline().model());
  for (const auto& [k, v] : trained) {
    const float err = (v - loaded.at(k)).abs().max().item<float>();
    const float delta = (v - original.at(k)).abs().max().item<float>();
    EXPECT_LE(err, 1e-3f * delta + 1e-7f) << k;  // fp16 keeps ~11 bits of each delta
  }
  // Another base is refused.
  Pipeline other = micro_pipeline(2);
  EXPECT_THROW(apply_sine_model(other, path), Error);
  EXPECT_THROW(read_sine_model_info((dir / "missing.safetensors").string()), Error);
  fs::remove_all(dir);
}

// The branches of an edit: each file applied to an in-memory copy of the loaded base (the base itself
// untouched, its VAE shared), β from v shared over the models or given per model, K, the prompt.
TEST(SineBranches, EachFineTuneOnACopyOfTheBaseWithItsWeight) {
  fs::path dir = temp_dir("branches");
  Pipeline pipe = micro_pipeline();
  SineFinetuneConfig c = quick_config(SineMode::Patch, 3);
  SineFinetuner ft(pipe, test_image(), c);
  ft.train();
  const std::string path = (dir / "ft.safetensors").string();
  save_sine_model(path, ft, "base.safetensors");

  Pipeline base = micro_pipeline();
  const auto before = snapshot(*base.model());
  SineBranchWeights w;
  w.v = 0.6;
  w.K = 300;
  SineBranches two(base, {path, path}, w);
  ASSERT_EQ(two.branches().size(), 2u);
  for (const SineBranch& b : two.branches()) {
    EXPECT_NEAR(b.beta, 0.2, 1e-12);  // (1 - v) / 2
    EXPECT_EQ(b.K, 300);
    EXPECT_EQ(b.prompt, "photo of a sks thing");
    ASSERT_NE(b.grid, nullptr);
    EXPECT_EQ(b.grid->config().size, 16);
    EXPECT_NE(b.pipeline, &base);
    EXPECT_EQ(b.pipeline->model()->vae.get(), base.model()->vae.get());  // shared, not copied
  }
  EXPECT_NEAR(sine_v(two.branches()), 0.6, 1e-12);
  EXPECT_EQ(count_changed(*base.model(), before), 0);  // the base stays the pre-trained model
  Pipeline applied = micro_pipeline();
  apply_sine_model(applied, path);
  const auto want = snapshot(*applied.model());
  for (const auto& item : two.branches()[1].pipeline->model()->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), want.at(item.key()))) << item.key();
  // Per-model weights, a prompt of one's own, and the checks naming their fields.
  w.betas = {0.1, 0.3};
  w.ks = {200, 700};
  SineBranches given(base, {path, path}, w);
  EXPECT_DOUBLE_EQ(given.branches()[1].beta, 0.3);
  EXPECT_EQ(given.branches()[1].K, 700);
  SineBranchWeights one;
  one.desc = "photo of a thing";
  EXPECT_EQ(SineBranches(base, {path}, one).branches()[0].prompt, "photo of a thing");
  auto message = [&](const SineBranchWeights& bad, std::vector<std::string> files) {
    try {
      SineBranches b(base, files, bad);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  SineBranchWeights bad;
  bad.v = 1.5;
  EXPECT_EQ(message(bad, {path}).rfind("v: ", 0), 0u);
  bad = {};
  bad.betas = {0.5};
  EXPECT_EQ(message(bad, {path, path}).rfind("betas: ", 0), 0u);
  bad = {};
  bad.desc = "x";
  EXPECT_EQ(message(bad, {path, path}).rfind("desc: ", 0), 0u);
  EXPECT_EQ(message(SineBranchWeights{}, {path}), "");
  Pipeline other = micro_pipeline(2);
  EXPECT_NE([&] {
    try {
      SineBranches b(other, {path}, SineBranchWeights{});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  }().find("different base"), std::string::npos);
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Edit

TEST(SineEdit, GridOnlyInTheFinetunedBranchAndAnySize) {
  Pipeline pre = micro_pipeline();
  Pipeline ftp = micro_pipeline();  // same weights: differences come from prompt and grid alone
  PositionalGrid grid({8, 16, GridInterpolation::Bilinear});
  SineEditConfig c;
  c.edit_prompt = "abc";
  c.steps = 5;
  c.seed = 3;
  SineBranch b{&ftp, &grid, "photo of a sks thing", 0.3, 400};
  // K above every timestep: the fine-tuned branch never runs and the result is the pre-trained
  // model alone, bit for bit (its branches never see the grid).
  SineBranch never = b;
  never.K = 1001;
  c.mode = SineEditMode::Pretrained;
  auto pretrained = sine_edit_latents(pre, {b}, c);
  c.mode = SineEditMode::Sine;
  EXPECT_TRUE(torch::equal(sine_edit_latents(pre, {never}, c), pretrained));
  auto guided = sine_edit_latents(pre, {b}, c);
  EXPECT_FALSE(torch::allclose(guided, pretrained));
  // β = 0 (v = 1): the fine-tuned branch has no weight.
  SineBranch zero = b;
  zero.beta = 0;
  EXPECT_TRUE(torch::allclose(sine_edit_latents(pre, {zero}, c), pretrained, 1e-5, 1e-6));
  // 2x width and 2x height: the grid is stretched to the latent size.
  c.width = 32;
  EXPECT_EQ(sine_edit_latents(pre, {b}, c).sizes(), (std::vector<int64_t>{1, 4, 8, 16}));
  c.width = 16;
  c.height = 32;
  EXPECT_EQ(sine_edit(pre, {b}, c).sizes(), (std::vector<int64_t>{32, 16, 3}));
  c.height = 15;
  EXPECT_THROW(sine_edit_latents(pre, {b}, c), Error);
  // No guidance: the fine-tuned model alone (with its grid) differs from the pre-trained one.
  c.height = 16;
  c.mode = SineEditMode::NoGuidance;
  EXPECT_FALSE(torch::allclose(sine_edit_latents(pre, {b}, c), pretrained));
  EXPECT_THROW(sine_edit_latents(pre, {}, c), Error);
}

// SINE's edit put together by hand: x_T from the seed, then DDIM (η = 0, LDM timesteps and ᾱ
// written out here) with ε = ε_u + s·((1 − Σβ_i)·ε_c + Σβ_i·ε_f,i − ε_u) over the branches with
// t ≥ K_i: ε_u and ε_c the pre-trained UNet on "" and the edit prompt with no grid, each ε_f,i its
// fine-tuned UNet on its own prompt with its own grid stretched to the 2× wide latent.
TEST(SineEdit, EqualsAHandWrittenLoopOverTheModels) {
  Pipeline pre = micro_pipeline(1);
  Pipeline patch = micro_pipeline(2), whole = micro_pipeline(3);  // stand-ins for two fine-tunes
  PositionalGrid grid({8, 16, GridInterpolation::Bilinear});
  const double v = 0.6;
  SineBranch a{&patch, &grid, "photo of a sks thing", sine_beta(v, 2), 500};
  SineBranch b{&whole, nullptr, "photo of a sks shape", sine_beta(v, 2), 800};
  SineEditConfig c;
  c.edit_prompt = "abc";
  c.width = 32;  // latent 8 x 16
  c.steps = 6;
  c.scale = 5.0;
  c.seed = 3;
  auto got = sine_edit_latents(pre, {a, b}, c);

  torch::NoGradGuard no_grad;
  auto unet = [](Pipeline& p, const torch::Tensor& x, int64_t t, const std::string& prompt, torch::Tensor g) {
    return p.model()->unet->forward(x, torch::full({1}, t, torch::kLong), p.encode_prompt(prompt), g);
  };
  auto betas = torch::linspace(std::sqrt(0.00085), std::sqrt(0.012), 1000, torch::kFloat64).pow(2);
  auto alpha_bar = torch::cumprod(1 - betas, 0);
  torch::Generator gen = pre.make_generator(c.seed);
  auto x = pre.randn({1, 4, 8, 16}, gen);
  const torch::Tensor stretched = grid.stretched(8, 16);
  const int64_t stride = 1000 / c.steps;  // 166: timesteps 831, 665, 499, 333, 167, 1
  for (int64_t i = c.steps - 1; i >= 0; --i) {
    const int64_t t = i * stride + 1;
    auto e_u = unet(pre, x, t, "", {}), e_c = unet(pre, x, t, "abc", {});
    torch::Tensor mix = e_c, eps = e_u + c.scale * (e_c - e_u);
    if (t >= a.K) {  // both branches at t >= 800, only the patch model at 500 <= t < 800
      double beta_sum = a.beta;
      mix = a.beta * unet(patch, x, t, a.prompt, stretched);
      if (t >= b.K) {
        beta_sum += b.beta;
        mix = mix + b.beta * unet(whole, x, t, b.prompt, {});
      }
      eps = e_u + c.scale * ((1 - beta_sum) * e_c + mix - e_u);
    }
    const double at = alpha_bar[t].item<double>();
    const double prev = t - stride >= 0 ? alpha_bar[t - stride].item<double>() : alpha_bar[0].item<double>();
    auto x0 = (x - std::sqrt(1 - at) * eps) / std::sqrt(at);
    x = std::sqrt(prev) * x0 + std::sqrt(1 - prev) * eps;
  }
  EXPECT_TRUE(torch::allclose(got, x, 1e-4, 1e-5)) << (got - x).abs().max().item<double>();
  EXPECT_NEAR(sine_v({a, b}), v, 1e-12);
  // Not vacuous: without the branches the result is another image.
  c.mode = SineEditMode::Pretrained;
  EXPECT_GT((sine_edit_latents(pre, {a, b}, c) - x).abs().max().item<double>(), 1e-3);
}

TEST(SineFinetune, LoRAModeTrainsOnlyAdaptersAndRoundTrips) {
  fs::path dir = temp_dir("lora");
  Pipeline pipe = micro_pipeline();
  auto all0 = snapshot(*pipe.model());
  SineFinetuneConfig c = quick_config(SineMode::Patch, 4);
  c.lora_rank = 2;
  SineFinetuner ft(pipe, test_image(), c);
  ASSERT_NE(ft.lora(), nullptr);
  for (const auto& [name, p] : ft.trained_parameters())
    EXPECT_TRUE(name.find(".lora_down") != std::string::npos || name.find(".lora_up") != std::string::npos) << name;
  ft.train();
  EXPECT_EQ(count_changed(*pipe.model(), all0), 0) << "LoRA leaves every base weight bit-identical";
  // The adapted model predicts differently from the base.
  torch::NoGradGuard ng;
  auto x = torch::randn({1, 4, 8, 8});
  auto ctx = pipe.encode_prompt("photo of a sks thing");
  auto t = torch::tensor({500}, torch::kLong);
  auto adapted = pipe.model()->unet->forward(x, t, ctx);
  Pipeline base = micro_pipeline();
  EXPECT_GT((adapted - base.model()->unet->forward(x, t, base.encode_prompt("photo of a sks thing"))).abs().max().item<float>(),
            0.0f);
  const std::string path = (dir / "lora.safetensors").string();
  save_sine_model(path, ft, "");
  SineModelInfo info = apply_sine_model(base, path);
  EXPECT_EQ(info.storage, "lora");
  EXPECT_EQ(info.lora_rank, 2);
  auto loaded = base.model()->unet->forward(x, t, base.encode_prompt("photo of a sks thing"));
  EXPECT_TRUE(torch::allclose(loaded, adapted, 1e-4, 1e-5));
  fs::remove_all(dir);
}
