// The SD 1.x engine end to end against diffusers' 5-step guided txt2img on the tiny model, loaded
// from both layouts; plus img2img and seed determinism.
#include <gtest/gtest.h>

#include <cstdio>
#include <limits>

#include "core/error.h"
#include "diffusion/ddim.h"
#include "io/safetensors.h"
#include "models/weights.h"
#include "pipeline/pipeline.h"

namespace sine {
namespace {

const std::string kShared = SINE_SHARED_DIR;
const std::string kTiny = kShared + "/reference/tiny";
const std::string kVocab = kShared + "/data/clip/bpe_simple_vocab_16e6.txt.gz";
const std::string kPrompt = "a photograph of an astronaut riding a horse";

// Prints and checks max|a−b| ≤ 1e-4·max(1, max|ref|), the tolerance of the reference README.
void expect_close(const torch::Tensor& actual, const torch::Tensor& ref, const std::string& what) {
  ASSERT_EQ(actual.sizes(), ref.sizes()) << what;
  auto a = actual.to(torch::kCPU, torch::kFloat64);
  auto r = ref.to(torch::kFloat64);
  const double scale = r.abs().max().item<double>();
  const double err = (a - r).abs().max().item<double>();
  const double tol = 1e-4 * std::max(1.0, scale);
  std::printf("  %-22s max|ref| %9.4f  max abs err %.3e  rel %.3e  (tol %.1e)\n", what.c_str(), scale, err,
              err / std::max(scale, 1e-12), tol);
  EXPECT_LE(err, tol) << what;
}

struct Fixture {
  SafeTensors st = SafeTensors::open(kTiny + "/pipeline_txt2img.safetensors");
  torch::Tensor get(const std::string& key) const { return st.get(key); }
};

LoadOptions single_file_options() {
  LoadOptions o;
  o.model = kTiny + "/tiny_sd15_original.safetensors";
  o.config_json = kTiny + "/tiny_config.json";
  o.tokenizer = kVocab;
  return o;
}

LoadOptions diffusers_options() {
  LoadOptions o;
  o.model = kTiny + "/diffusers";
  o.tokenizer = kVocab;
  return o;
}

GenerateOptions fixture_options(const Fixture& fx) {
  GenerateOptions g;
  g.prompt = kPrompt;
  g.steps = 5;
  g.cfg_scale = 7.5;
  g.width = g.height = 128;
  g.init_latents = fx.get("init_latents");
  return g;
}

void check_txt2img(const LoadOptions& options) {
  Fixture fx;
  Pipeline pipe = Pipeline::load(options);

  auto ids = pipe.tokenize(kPrompt);
  EXPECT_TRUE(torch::equal(ids.cpu(), fx.get("prompt_input_ids").to(torch::kLong))) << "prompt ids";
  EXPECT_TRUE(torch::equal(pipe.tokenize("").cpu(), fx.get("uncond_input_ids").to(torch::kLong))) << "uncond ids";

  auto cond = pipe.encode_prompt(kPrompt);
  auto uncond = pipe.encode_prompt("");
  expect_close(cond, fx.get("cond_embeds"), "cond_embeds");
  expect_close(uncond, fx.get("uncond_embeds"), "uncond_embeds");

  // The loop of generate_latents, written out so every step can be compared.
  DDIMScheduler scheduler(DDIMConfig::stable_diffusion(), 5);
  auto timesteps = scheduler.timesteps();
  ASSERT_EQ(timesteps.size(0), 5);
  auto latents = fx.get("init_latents");
  for (int64_t i = 0; i < 5; ++i) {
    const int64_t t = timesteps[i].item<int64_t>();
    EXPECT_EQ(t, fx.get("timestep_of_step." + std::to_string(i)).item<int64_t>()) << "step " << i;
    auto eps = pipe.predict_eps_cfg(latents, t, uncond, cond, 7.5);
    latents = scheduler.step(eps, t, latents).prev_sample;
    expect_close(latents, fx.get("latents_after_step." + std::to_string(i)), "latents_after_step." + std::to_string(i));
  }

  int64_t callbacks = 0;
  auto final_latents = pipe.generate_latents(fixture_options(fx), [&](int64_t step, int64_t total) {
    EXPECT_EQ(step, ++callbacks);
    EXPECT_EQ(total, 5);
  });
  EXPECT_EQ(callbacks, 5);
  expect_close(final_latents, fx.get("final_latents"), "final_latents");

  auto decoded = pipe.decode_latents(fx.get("final_latents"));
  expect_close(decoded, fx.get("decoded"), "decoded");
  expect_close((decoded / 2 + 0.5).clamp(0, 1), fx.get("image_01"), "image_01");

  auto image = pipe.generate(fixture_options(fx));
  ASSERT_EQ(image.sizes(), c10::IntArrayRef({128, 128, 3}));
  ASSERT_EQ(image.scalar_type(), torch::kUInt8);
  auto ref_u8 = (fx.get("image_01")[0].permute({1, 2, 0}) * 255).round();
  const double px = (image.to(torch::kFloat64) - ref_u8.to(torch::kFloat64)).abs().max().item<double>();
  std::printf("  %-22s max abs err %.0f grey level(s)\n", "image uint8", px);
  EXPECT_LE(px, 1.0);
}

TEST(Pipeline, Txt2ImgMatchesDiffusersFromSingleFile) { check_txt2img(single_file_options()); }

TEST(Pipeline, Txt2ImgMatchesDiffusersFromDiffusersFolder) { check_txt2img(diffusers_options()); }

LoadOptions deferred(LoadOptions o) {
  o.defer_weights = true;
  return o;
}

TEST(Pipeline, DeferredWeightsMatchDiffusersFromSingleFile) { check_txt2img(deferred(single_file_options())); }

TEST(Pipeline, DeferredWeightsMatchDiffusersFromDiffusersFolder) { check_txt2img(deferred(diffusers_options())); }

// Each network is read from the file when first used, and gives what a full load gives.
TEST(Pipeline, DeferredWeightsLoadEachNetworkOnFirstUse) {
  Fixture fx;
  Pipeline full = Pipeline::load(single_file_options());
  Pipeline lazy = Pipeline::load(deferred(single_file_options()));
  EXPECT_EQ(full.deferred_networks(), 0);
  EXPECT_EQ(lazy.deferred_networks(), 3);
  EXPECT_TRUE(torch::equal(lazy.encode_prompt(kPrompt), full.encode_prompt(kPrompt)));
  EXPECT_EQ(lazy.deferred_networks(), 2);  // UNet and VAE still in the file
  GenerateOptions g = fixture_options(fx);
  EXPECT_TRUE(torch::equal(lazy.generate_latents(g), full.generate_latents(g)));
  EXPECT_EQ(lazy.deferred_networks(), 1);  // txt2img latents never touch the VAE
  EXPECT_TRUE(torch::equal(lazy.decode_latents(fx.get("final_latents")), full.decode_latents(fx.get("final_latents"))));
  EXPECT_EQ(lazy.deferred_networks(), 0);

  // model() hands out the whole model, every network loaded.
  Pipeline other = Pipeline::load(deferred(single_file_options()));
  EXPECT_EQ(count_parameters(*other.model()), count_parameters(*full.model()));
  EXPECT_EQ(other.deferred_networks(), 0);
  for (const auto& [key, t] : module_state(*full.model(), ""))
    EXPECT_TRUE(torch::equal(t, module_state(*other.model(), "").at(key))) << key;
}

// --channels-last: the same latents (within float rounding), loaded at once or deferred.
TEST(Pipeline, ChannelsLastGivesTheSameLatents) {
  Fixture fx;
  GenerateOptions g = fixture_options(fx);
  auto reference = Pipeline::load(single_file_options()).generate_latents(g);
  for (bool defer : {false, true}) {
    LoadOptions o = single_file_options();
    o.channels_last = true;
    o.defer_weights = defer;
    Pipeline pipe = Pipeline::load(o);
    auto latents = pipe.generate_latents(g);
    EXPECT_TRUE(pipe.model()->unet->channels_last());
    for (const auto& p : pipe.model()->unet->parameters())
      if (p.dim() == 4) EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast)) << "deferred " << defer;
    EXPECT_LE((latents - reference).abs().max().item<double>(), 1e-4) << "deferred " << defer;
  }
}

// Deferring checks the file at load as a full load does: a wrong shape or a stray tensor is refused
// before anything runs, naming the key.
TEST(Pipeline, DeferredWeightsRejectABadFileAtLoad) {
  auto tensors = load_safetensors(kTiny + "/tiny_sd15_original.safetensors");
  const std::string dir = testing::TempDir();
  auto expect_load_error = [&](const std::map<std::string, torch::Tensor>& file, const std::string& needle) {
    const std::string path = dir + "/sine_deferred_bad.safetensors";
    save_safetensors(path, file);
    LoadOptions o = deferred(single_file_options());
    o.model = path;
    try {
      Pipeline::load(o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    std::remove(path.c_str());
  };
  auto reshaped = tensors;
  const std::string key = "model.diffusion_model.out.2.bias";
  ASSERT_TRUE(reshaped.count(key));
  reshaped[key] = torch::zeros({reshaped[key].numel() + 1});
  expect_load_error(reshaped, key);
  auto stray = tensors;
  stray["model.diffusion_model.extra_weight"] = torch::zeros({2});
  expect_load_error(stray, "unexpected tensor 'model.diffusion_model.extra_weight'");
}

// Values are read at first use: a NaN weight is refused then, naming the key, before any output.
TEST(Pipeline, DeferredWeightsRefuseANaNWeightAtFirstUse) {
  auto tensors = load_safetensors(kTiny + "/tiny_sd15_original.safetensors");
  const std::string key = "model.diffusion_model.out.2.weight";
  tensors[key] = torch::full_like(tensors[key], std::numeric_limits<float>::quiet_NaN());
  const std::string path = testing::TempDir() + "/sine_deferred_nan.safetensors";
  save_safetensors(path, tensors);
  LoadOptions o = deferred(single_file_options());
  o.model = path;
  Pipeline pipe = Pipeline::load(o);
  pipe.encode_prompt(kPrompt);  // the text encoder is fine
  Fixture fx;
  try {
    pipe.generate_latents(fixture_options(fx));
    ADD_FAILURE() << "a NaN UNet weight was used";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'" + key + "' contains NaN"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

TEST(Pipeline, BothLayoutsLoadTheSameWeights) {
  Pipeline a = Pipeline::load(single_file_options());
  Pipeline b = Pipeline::load(diffusers_options());
  auto pa = a.model()->named_parameters();
  auto pb = b.model()->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) {
    const auto* q = pb.find(p.key());
    ASSERT_NE(q, nullptr) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), *q)) << p.key();
  }
}

TEST(Pipeline, Img2ImgRunsFewerStepsAndKeepsTheShape) {
  Pipeline pipe = Pipeline::load(single_file_options());
  GenerateOptions g;
  g.prompt = kPrompt;
  g.steps = 6;
  g.width = 96;
  g.height = 64;
  g.strength = 0.5;
  g.seed = 7;
  g.init_image = torch::randint(0, 256, {80, 120, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  int64_t calls = 0, reported_total = 0;
  auto latents = pipe.generate_latents(g, [&](int64_t, int64_t total) {
    ++calls;
    reported_total = total;
  });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(reported_total, 3);
  EXPECT_EQ(latents.sizes(), c10::IntArrayRef({1, 4, 8, 12}));
  EXPECT_TRUE(torch::isfinite(latents).all().item<bool>());
  auto image = pipe.generate(g);
  EXPECT_EQ(image.sizes(), c10::IntArrayRef({64, 96, 3}));
  EXPECT_EQ(image.scalar_type(), torch::kUInt8);
}

// Masked img2img: outside the mask the result is exactly the encoded init latent (re-noised to each
// step's level, clean after the last), inside it is generated; with every sampler.
TEST(Pipeline, InpaintingChangesOnlyTheMaskedRegion) {
  Pipeline pipe = Pipeline::load(single_file_options());
  for (const std::string method : {"ddim", "euler_a", "dpmpp_2m"}) {
    GenerateOptions g;
    g.prompt = kPrompt;
    g.sampler = method;
    g.steps = 4;
    g.width = g.height = 64;
    g.strength = 0.75;
    g.seed = 3;
    g.init_image = torch::randint(0, 256, {64, 64, 3}, torch::TensorOptions().dtype(torch::kUInt8));
    g.mask = torch::zeros({64, 64});
    g.mask.narrow(1, 0, 32).fill_(1.0);  // repaint the left half
    int64_t previews = 0;
    g.on_latents = [&](int64_t, int64_t, const torch::Tensor& x) {
      ++previews;
      EXPECT_EQ(x.sizes(), c10::IntArrayRef({1, 4, 8, 8}));
    };
    auto latents = pipe.generate_latents(g);
    auto generator = pipe.make_generator(g.seed);
    auto init = pipe.encode_image(g.init_image, generator);
    EXPECT_EQ(previews, 3) << method;
    EXPECT_TRUE(torch::allclose(latents.narrow(3, 4, 4), init.narrow(3, 4, 4), 0, 1e-6)) << method;
    EXPECT_GT((latents.narrow(3, 0, 4) - init.narrow(3, 0, 4)).abs().max().item<double>(), 0.05) << method;
  }
  GenerateOptions bad;
  bad.prompt = kPrompt;
  bad.init_image = torch::zeros({64, 64, 3}, torch::kUInt8);
  bad.mask = torch::zeros({32, 32});
  EXPECT_THROW(pipe.generate_latents(bad), Error);
}

// Decoded inpainting keeps the init image's own pixels outside the mask (A1111's overlay): exactly
// where the mask is 0 (no blur), and a blend across the feathered edge.
TEST(Pipeline, InpaintingOverlaysTheInitPixelsOutsideTheMask) {
  Pipeline pipe = Pipeline::load(single_file_options());
  GenerateOptions g;
  g.prompt = kPrompt;
  g.steps = 3;
  g.width = g.height = 64;
  g.init_image = torch::randint(0, 256, {64, 64, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  g.mask = torch::zeros({64, 64});
  g.mask.narrow(1, 0, 32).fill_(1.0);
  auto image = pipe.generate(g);
  EXPECT_TRUE(torch::equal(image.narrow(1, 32, 32), g.init_image.narrow(1, 32, 32)));
  EXPECT_FALSE(torch::equal(image.narrow(1, 0, 32), g.init_image.narrow(1, 0, 32)));
  g.mask_blur = 4;
  auto feathered = pipe.generate(g);
  // Far from the edge (more than 3σ) the init pixels are kept exactly; near it they are blended.
  EXPECT_TRUE(torch::equal(feathered.narrow(1, 48, 16), g.init_image.narrow(1, 48, 16)));
  EXPECT_FALSE(torch::equal(feathered.narrow(1, 32, 4), g.init_image.narrow(1, 32, 4)));
}

// A1111's masked content: "fill" replaces the masked pixels by the mean of the kept ones, so two
// init images that differ only inside the mask give the same result (with "original" they do not);
// "latent noise" / "latent nothing" replace the masked latents, so with a full mask the init image
// is forgotten altogether.
TEST(Pipeline, InpaintingMaskedContentFollowsA1111) {
  Pipeline pipe = Pipeline::load(single_file_options());
  GenerateOptions g;
  g.prompt = kPrompt;
  g.steps = 3;
  g.width = g.height = 64;
  g.strength = 1.0;
  auto a = torch::randint(0, 256, {64, 64, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  auto b = a.clone();
  b.narrow(1, 0, 32).copy_(torch::randint(0, 256, {64, 32, 3}, torch::TensorOptions().dtype(torch::kUInt8)));
  g.mask = torch::zeros({64, 64});
  g.mask.narrow(1, 0, 32).fill_(1.0);
  auto run = [&](const torch::Tensor& init, MaskedContent content) {
    GenerateOptions o = g;
    o.init_image = init;
    o.masked_content = content;
    return pipe.generate_latents(o);
  };
  EXPECT_FALSE(torch::allclose(run(a, MaskedContent::original), run(b, MaskedContent::original)));
  EXPECT_TRUE(torch::allclose(run(a, MaskedContent::fill), run(b, MaskedContent::fill), 1e-5, 1e-5));
  g.mask = torch::ones({64, 64});
  auto other = torch::randint(0, 256, {64, 64, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  for (auto content : {MaskedContent::latent_noise, MaskedContent::latent_nothing}) {
    EXPECT_TRUE(torch::allclose(run(a, content), run(other, content), 1e-5, 1e-5)) << masked_content_name(content);
    EXPECT_FALSE(torch::allclose(run(a, content), run(a, MaskedContent::original))) << masked_content_name(content);
  }
  EXPECT_FALSE(torch::allclose(run(a, MaskedContent::latent_noise), run(a, MaskedContent::latent_nothing)));
  EXPECT_EQ(parse_masked_content("latent-noise"), MaskedContent::latent_noise);
  EXPECT_THROW(parse_masked_content("blur"), Error);
}

// The k-diffusion samplers through generate: finite, seed-determined, and each differs from DDIM.
TEST(Pipeline, EverySamplerGenerates) {
  Pipeline pipe = Pipeline::load(single_file_options());
  GenerateOptions g;
  g.prompt = kPrompt;
  g.steps = 4;
  g.width = g.height = 64;
  auto ddim = pipe.generate_latents(g);
  for (const std::string method : {"euler", "euler_a", "heun", "dpmpp_2m"}) {
    for (auto schedule : {SigmaSchedule::standard, SigmaSchedule::karras}) {
      g.sampler = method;
      g.schedule = schedule;
      auto a = pipe.generate_latents(g);
      EXPECT_TRUE(torch::isfinite(a).all().item<bool>()) << method;
      EXPECT_TRUE(torch::equal(a, pipe.generate_latents(g))) << method;
      EXPECT_GT((a - ddim).abs().max().item<double>(), 1e-3) << method;
    }
  }
  g.sampler = "plms";
  EXPECT_THROW(pipe.generate_latents(g), Error);
}

TEST(Pipeline, SameSeedSameImageOtherSeedOtherImage) {
  Pipeline pipe = Pipeline::load(diffusers_options());
  GenerateOptions g;
  g.prompt = kPrompt;
  g.steps = 3;
  g.width = g.height = 64;
  g.seed = 123;
  auto a = pipe.generate_latents(g);
  auto b = pipe.generate_latents(g);
  g.seed = 124;
  auto c = pipe.generate_latents(g);
  EXPECT_TRUE(torch::equal(a, b));
  const double diff = (a - c).abs().max().item<double>();
  std::printf("  seed 123 vs 124: max latent difference %.3f\n", diff);
  EXPECT_GT(diff, 1e-3);
}

TEST(Pipeline, RejectsBadOptionsWithActionableErrors) {
  Pipeline pipe = Pipeline::load(single_file_options());
  GenerateOptions g;
  g.prompt = kPrompt;
  g.steps = 0;
  EXPECT_THROW(pipe.generate_latents(g), Error);
  g.steps = 2;
  g.width = 100;
  EXPECT_THROW(pipe.generate_latents(g), Error);
  LoadOptions missing = single_file_options();
  missing.model = kTiny + "/no_such_model.safetensors";
  try {
    Pipeline::load(missing);
    ADD_FAILURE() << "loading a missing model did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_model"), std::string::npos) << e.what();
  }
}

// A one-shot run frees the text encoder after the prompts and the UNet after sampling, gives the
// same latents as a normal run, and then refuses to run again instead of computing garbage.
TEST(Pipeline, ReleaseAfterUseGivesTheSameLatentsThenRefuses) {
  Fixture fx;
  GenerateOptions g = fixture_options(fx);
  Pipeline keep = Pipeline::load(single_file_options());
  auto kept = keep.generate_latents(g);
  Pipeline once = Pipeline::load(single_file_options());
  g.release_after_use = true;
  auto released = once.generate_latents(g);
  EXPECT_TRUE(torch::equal(kept, released));
  for (const auto& p : once.model()->text_encoder->parameters()) EXPECT_EQ(p.numel(), 0);
  for (const auto& p : once.model()->unet->parameters()) EXPECT_EQ(p.numel(), 0);
  EXPECT_GT(sine::count_parameters(*once.model()->vae), 0);  // still there for the decode
  EXPECT_THROW(once.generate_latents(g), Error);
}

}  // namespace
}  // namespace sine
