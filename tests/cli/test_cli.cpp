// The `sine` binary as a user runs it: single components against the reference fixtures from
// both layouts, the tokenizer, and bad inputs (one error line, non-zero exit, no output file).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "io/generation_parameters.h"
#include "io/image.h"
#include "io/safetensors.h"

namespace sine {
namespace {

using namespace cli_test;

Scratch& scratch() {
  static Scratch s("sine_test_cli");
  return s;
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& ref, const std::string& what) {
  ASSERT_EQ(actual.sizes(), ref.sizes()) << what;
  auto a = actual.to(torch::kFloat64);
  auto r = ref.to(torch::kFloat64);
  const double scale = r.abs().max().item<double>();
  const double err = (a - r).abs().max().item<double>();
  const double tol = 1e-4 * std::max(1.0, scale);
  std::printf("  %-34s max|ref| %8.4f  max abs err %.3e  rel %.3e\n", what.c_str(), scale, err,
              err / std::max(scale, 1e-12));
  EXPECT_LE(err, tol) << what;
}

struct RunCase {
  std::string component, fixture, ins;
  std::vector<std::pair<std::string, std::string>> outputs;  // output key -> fixture key
};

const std::vector<RunCase>& model_cases() {
  static const std::vector<RunCase> cases{
      {"text-encoder", "clip_text_io", "",
       {{"last_hidden_state", "last_hidden_state"},
        {"pooler_output", "pooler_output"},
        {"hidden_states.0", "hidden_states.0"},
        {"hidden_states.1", "hidden_states.1"},
        {"hidden_states.2", "hidden_states.2"}}},
      {"unet", "unet_io", "", {{"eps", "eps"}}},
      {"unet", "unet_io", "--in latent=latent_b2 --in timestep=timestep_b2 --in context=context_b2",
       {{"eps", "eps_b2"}}},
      {"vae-encode", "vae_io", "",
       {{"mean", "mean"}, {"logvar", "logvar"}, {"std", "std"}, {"moments", "moments"}}},
      {"vae-decode", "vae_io", "--in z=mean", {{"decoded", "decoded_mean"}}},
      {"vae-decode", "vae_io", "--in z=z_rand", {{"decoded", "decoded_z_rand"}}},
  };
  return cases;
}

void check_run_cases(const std::string& layout, const std::string& model_flags) {
  int index = 0;
  for (const auto& c : model_cases()) {
    const std::string fixture = kTiny + "/" + c.fixture + ".safetensors";
    const std::string out = scratch().path(layout + "_" + std::to_string(index++) + ".safetensors");
    auto r = scratch().sine("run " + c.component + " " + model_flags + " --input " + quote(fixture) + " -o " +
                            quote(out) + " " + c.ins);
    ASSERT_EQ(r.code, 0) << c.component << ": " << r.err;
    auto got = SafeTensors::open(out);
    auto ref = SafeTensors::open(fixture);
    for (const auto& [key, ref_key] : c.outputs)
      expect_close(got.get(key), ref.get(ref_key), layout + " " + c.component + " " + ref_key);
  }
}

TEST(Cli, RunComponentsFromSingleFile) { check_run_cases("single", tiny_single_flags()); }

TEST(Cli, RunComponentsFromDiffusersFolder) { check_run_cases("diffusers", tiny_diffusers_flags()); }

TEST(Cli, RunDdimStep) {
  const std::string fixture = kTiny + "/ddim.safetensors";
  auto ref = SafeTensors::open(fixture);
  for (const std::string t : {"981", "501", "1"}) {
    const std::string out = scratch().path("ddim_" + t + ".safetensors");
    auto r = scratch().sine("run ddim-step --steps 50 --input " + quote(fixture) + " -o " + quote(out) +
                            " --in model_output=step.model_output --in sample=step.sample --in timestep=step_t" + t +
                            ".timestep");
    ASSERT_EQ(r.code, 0) << r.err;
    auto got = SafeTensors::open(out);
    expect_close(got.get("prev_sample"), ref.get("step_t" + t + ".prev_sample"), "ddim t=" + t + " prev_sample");
    expect_close(got.get("pred_original_sample"), ref.get("step_t" + t + ".pred_original_sample"),
                 "ddim t=" + t + " pred_original_sample");
  }
}

// `sine run sample` reproduces each diffusers trajectory from the fixture's own tensors by name.
TEST(Cli, RunSampleMatchesDiffusersTrajectories) {
  const std::string fixture = kTiny + "/samplers.safetensors";
  auto ref = SafeTensors::open(fixture);
  struct Case { std::string name, flags; };
  for (const auto& c : {Case{"euler_a", "--sampler euler_a --steps 10"},
                        Case{"dpmpp_2m_karras", "--sampling-method dpm++2m --scheduler karras --steps 12"},
                        Case{"heun", "--sampler heun --steps 6"}}) {
    const std::string out = scratch().path("sample_" + c.name + ".safetensors");
    std::string ins;
    for (const std::string k : {"x_T", "cond", "uncond", "noises"}) ins += " --in " + k + "=" + c.name + "." + k;
    auto r = scratch().sine("run sample " + tiny_diffusers_flags() + " --input " + quote(fixture) + " -o " +
                            quote(out) + " --cfg-scale 7.5 " + c.flags + ins);
    ASSERT_EQ(r.code, 0) << c.name << ": " << r.err;
    auto got = SafeTensors::open(out);
    expect_close(got.get("latents"), ref.get(c.name + ".latents"), c.name + " latents");
    expect_close(got.get("trajectory"), ref.get(c.name + ".trajectory"), c.name + " trajectory");
  }
}

TEST(Cli, TokenizeMatchesReferenceIds) {
  auto r = scratch().sine("tokenize -p " + quote("a photograph of an astronaut riding a horse") + " --tokenizer " +
                          quote(kVocab));
  ASSERT_EQ(r.code, 0) << r.err;
  auto ids = nlohmann::json::parse(r.out).get<std::vector<int64_t>>();
  auto ref = SafeTensors::open(kTiny + "/clip_text_io.safetensors").get("input_ids")[0];
  ASSERT_EQ(ids.size(), 77u);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], ref[i].item<int64_t>()) << "position " << i;
}

// ---- bad inputs ----------------------------------------------------------------------------

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Copies the tiny single file with its JSON header edited by `edit` (data section unchanged).
std::string with_edited_header(const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  const std::string bytes = read_text(kTinyFile);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  edit(header);
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  const std::string path = scratch().path(name);
  write_bytes(path, out + text + bytes.substr(8 + n));
  return path;
}

// Copies the tiny single file with its tensors changed by `edit`, rewritten by save_safetensors.
std::string with_edited_tensors(const std::string& name,
                                const std::function<void(std::map<std::string, torch::Tensor>&)>& edit) {
  auto st = SafeTensors::open(kTinyFile);
  auto tensors = st.all();
  edit(tensors);
  const std::string path = scratch().path(name);
  save_safetensors(path, tensors, st.metadata());
  return path;
}

const std::string kEditedKey = "model.diffusion_model.output_blocks.4.1.proj_out.weight";

// Expects a failed run: exit != 0, exactly one stderr line "sine: error: ..." naming `mention`,
// and nothing written where the output (or a temp file beside it) would go.
void expect_clean_failure(const std::string& args_before_output, const std::string& output,
                          const std::string& mention) {
  const auto before = std::distance(fs::directory_iterator(scratch().dir()), fs::directory_iterator());
  auto r = scratch().sine(args_before_output + " -o " + quote(output));
  const auto after = std::distance(fs::directory_iterator(scratch().dir()), fs::directory_iterator());
  std::printf("  exit %d: %s", r.code, r.err.c_str());
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.err.rfind("sine: error: ", 0), 0u) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.back(), '\n') << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(mention), std::string::npos) << "error should name '" << mention << "': " << r.err;
  EXPECT_FALSE(fs::exists(output)) << output;
  EXPECT_EQ(before, after) << "a file was left in " << scratch().dir();
}

void expect_bad_model(const std::string& model, const std::string& mention) {
  const std::string out = scratch().path("bad_model_out.safetensors");
  expect_clean_failure("run unet -m " + quote(model) + " --model-config " + quote(kTinyConfig) + " --input " +
                           quote(kTiny + "/unet_io.safetensors"),
                       out, mention);
}

TEST(CliErrors, TruncatedModelFile) {
  const std::string bytes = read_text(kTinyFile);
  const std::string path = scratch().path("truncated.safetensors");
  write_bytes(path, bytes.substr(0, bytes.size() / 2));
  expect_bad_model(path, "truncated.safetensors");
  fs::remove(path);
}

TEST(CliErrors, HeaderLyingAboutSizes) {
  auto path = with_edited_header("lying.safetensors", [](nlohmann::json& h) {
    auto& shape = h[kEditedKey]["shape"];
    shape[0] = shape[0].get<int64_t>() * 2;
  });
  expect_bad_model(path, "lying.safetensors");
  fs::remove(path);
}

TEST(CliErrors, UnsupportedDtype) {
  auto path = with_edited_header("dtype.safetensors", [](nlohmann::json& h) { h[kEditedKey]["dtype"] = "C64"; });
  expect_bad_model(path, "dtype.safetensors");
  fs::remove(path);
}

TEST(CliErrors, MissingKey) {
  auto path = with_edited_tensors("missing_key.safetensors", [](auto& t) { t.erase(kEditedKey); });
  expect_bad_model(path, kEditedKey);
  fs::remove(path);
}

TEST(CliErrors, MisShapedKey) {
  auto path = with_edited_tensors("misshaped.safetensors",
                                  [](auto& t) { t[kEditedKey] = t[kEditedKey].flatten(1).unsqueeze(0); });
  expect_bad_model(path, kEditedKey);
  fs::remove(path);
}

TEST(CliErrors, MissingModelPath) {
  const std::string missing = scratch().path("no_such_model.safetensors");
  expect_clean_failure("generate -m " + quote(missing) + " -p cat --steps 1 -W 64 -H 64", scratch().path("o.png"),
                       "no_such_model.safetensors");
}

TEST(CliErrors, UnreadableInitImage) {
  const std::string garbage = scratch().path("garbage.png");
  write_bytes(garbage, "this is not an image at all, just some text pretending to be a PNG\n");
  expect_clean_failure("generate " + tiny_single_flags() + " -p cat --steps 1 -W 64 -H 64 --init-image " +
                           quote(garbage),
                       scratch().path("o.png"), "garbage.png");
  fs::remove(garbage);
}

TEST(CliErrors, UnknownFlag) {
  expect_clean_failure("generate --bogus", scratch().path("o.png"), "--bogus");
}

TEST(Cli, GenerateWritesAPng) {
  const std::string out = scratch().path("gen.png");
  auto r = scratch().sine("generate " + tiny_single_flags() + " -p " + quote("a red circle") +
                          " --steps 2 -W 64 -H 64 -o " + quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out));
  EXPECT_GT(fs::file_size(out), 100u);
  fs::remove(out);
}

// The whole txt2img path as a user runs it -- tokenizer, text encoder, UNet with CFG, DDIM, VAE,
// PNG -- against diffusers' StableDiffusionPipeline on the same x_T (fixture pipeline_txt2img: 5
// DDIM steps, guidance 7.5, 128x128): every pixel within one 8-bit level.
TEST(Cli, GenerateMatchesTheDiffusersPipelineFixture) {
  const std::string fixture = kTiny + "/pipeline_txt2img.safetensors";
  const std::string out = scratch().path("fixture.png");
  auto r = scratch().sine("generate " + tiny_single_flags() + " -p " +
                          quote("a photograph of an astronaut riding a horse") +
                          " --steps 5 --cfg-scale 7.5 --sampling-method ddim -W 128 -H 128 --init-noise " +
                          quote(fixture) + " -o " + quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  auto got = sine::read_image_rgb(out).to(torch::kInt);
  auto ref = SafeTensors::open(fixture).get("image_01")[0].permute({1, 2, 0});
  auto expected = (ref.to(torch::kFloat64) * 255).round().to(torch::kInt);
  ASSERT_EQ(got.sizes(), expected.sizes());
  const int worst = (got - expected).abs().max().item<int>();
  std::printf("  txt2img PNG vs diffusers: max |difference| %d of 255\n", worst);
  EXPECT_LE(worst, 1);
  // A noise file of the wrong size is refused, naming the flag.
  expect_clean_failure("generate " + tiny_single_flags() + " -p a --steps 2 -W 64 -H 64 --init-noise " + quote(fixture),
                       scratch().path("bad.png"), "--init-noise");
  fs::remove(out);
}

// The PNG carries A1111's "parameters" text: every key A1111 writes for txt2img, the model named
// and hashed (never its path), read back by the A1111-format parser and by `sine info IMAGE.png`.
TEST(Cli, GeneratePngCarriesA1111Parameters) {
  const std::string out = scratch().path("params.png");
  setenv("XDG_CACHE_HOME", scratch().path("cache").c_str(), 1);
  auto r = scratch().sine("generate " + tiny_single_flags() + " -p " + quote("a red circle, big") + " -n " +
                          quote("blue") + " --steps 3 --cfg-scale 5 -s 7 --sampling-method 'Euler a' --scheduler karras"
                          " -W 64 -H 64 -o " + quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto text = sine::read_png_text(out);
  ASSERT_TRUE(text.count("parameters"));
  EXPECT_EQ(text.at("parameters").find(kTiny), std::string::npos) << "a local path leaked: " << text.at("parameters");
  auto p = sine::GenerationParameters::parse(text.at("parameters"));
  EXPECT_EQ(p.prompt, "a red circle, big");
  EXPECT_EQ(p.negative_prompt, "blue");
  EXPECT_EQ(p.get("Steps"), "3");
  EXPECT_EQ(p.get("Sampler"), "Euler a");
  EXPECT_EQ(p.get("Schedule type"), "Karras");
  EXPECT_EQ(p.get("CFG scale"), "5.0");
  EXPECT_EQ(p.get("Seed"), "7");
  EXPECT_EQ(p.get("Size"), "64x64");
  EXPECT_EQ(p.get("Model"), "tiny_sd15_original");
  EXPECT_EQ(p.get("Clip skip"), "1");
  // The short hash is the first 10 hex digits of the file's SHA-256, as coreutils computes it.
  FILE* pipe = popen(("sha256sum " + quote(kTinyFile)).c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char digest[65] = {0};
  ASSERT_EQ(std::fread(digest, 1, 64, pipe), 64u);
  pclose(pipe);
  EXPECT_EQ(p.get("Model hash"), std::string(digest, 10));

  r = scratch().sine("info " + quote(out) + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt"], "a red circle, big");
  EXPECT_EQ(j["Sampler"], "Euler a");
  fs::remove(out);
}

// `sine bench` on tiny random weights: every row printed is a row of the JSON, the switches drop
// their rows, bad sizes name the flag.
TEST(Cli, BenchRowsArePrintedAndWritten) {
  const std::string json = scratch().path("bench.json");
  auto r = scratch().sine("--threads 1 bench --config tiny --latent 8 --train-latent 8 --repeat 1 --image-steps 1 --json " +
                          quote(json));
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(std::ifstream(json));
  std::vector<std::string> rows;
  for (const auto& row : j["rows"]) {
    rows.push_back(row["what"]);
    EXPECT_GT(row["mean_s"].get<double>(), 0.0) << row.dump();
    EXPECT_NE(r.out.find("| " + row["what"].get<std::string>()), std::string::npos) << row["what"];
  }
  for (const char* what : {"text encode", "UNet forward (fused attention)", "UNet forward (explicit probs: baseline)",
                           "CFG sampling step (UNet B2 + DDIM)", "VAE decode", "training step, full",
                           "training step, full (ckpt)", "training step, LoRA r4"})
    EXPECT_NE(std::find(rows.begin(), rows.end(), what), rows.end()) << what;
  EXPECT_EQ(j["config"], "tiny");
  r = scratch().sine("--threads 1 bench --config tiny --latent 8 --repeat 1 --no-train --no-image --no-baseline --json " +
                     quote(json));
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(std::ifstream(json));
  EXPECT_EQ(j["rows"].size(), 4u) << j["rows"].dump();
  r = scratch().sine("bench --config tiny --latent 4");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--latent: must be at least 8"), std::string::npos) << r.err;
}

TEST(CliErrors, UnknownSamplingMethod) {
  expect_clean_failure("generate " + tiny_single_flags() + " -p cat --steps 1 -W 64 -H 64 --sampling-method lms",
                       scratch().path("o.png"), "lms");
}

}  // namespace
}  // namespace sine
