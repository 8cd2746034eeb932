#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/vae.h"
#include "models/weights.h"

namespace {

const std::string kRef = std::string(SINE_SHARED_DIR) + "/reference/";
const std::string kWeights = kRef + "tiny/tiny_sd15_original.safetensors";
const std::string kPrefix = "first_stage_model.";

sine::VAEConfig tiny_config() {
  sine::VAEConfig c;
  c.ch = 8;
  c.ch_mult = {1, 2, 4, 4};
  c.norm_groups = 4;
  return c;
}

sine::AutoencoderKL load_tiny() {
  sine::AutoencoderKL vae(tiny_config());
  sine::load_module_weights(*vae, sine::load_safetensors(kWeights), kPrefix, kWeights);
  vae->eval();
  return vae;
}

// The tolerance of the reference README: 1e-4 relative to the output's scale.
void expect_close(const std::string& name, const torch::Tensor& actual, const torch::Tensor& ref) {
  ASSERT_EQ(actual.sizes(), ref.sizes()) << name;
  const double scale = std::max(1.0, ref.abs().max().item<double>());
  const double err = (actual - ref).abs().max().item<double>();
  std::printf("  %-26s max|ref| %9.4f  max abs err %.3e  rel %.3e\n", name.c_str(), ref.abs().max().item<double>(),
              err, err / scale);
  EXPECT_LE(err, 1e-4 * scale) << name;
}

// name -> shape of every `prefix` line of a reference key list, with the prefix removed.
std::map<std::string, std::vector<int64_t>> reference_keys(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::map<std::string, std::vector<int64_t>> keys;
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, prefix.size(), prefix) != 0) continue;
    std::istringstream fields(line);
    std::string name, shape;
    std::getline(fields, name, '\t');
    std::getline(fields, shape, '\t');
    std::vector<int64_t> dims;
    std::istringstream digits(shape.substr(1, shape.size() - 2));
    std::string d;
    while (std::getline(digits, d, ',')) dims.push_back(std::stoll(d));
    keys[name.substr(prefix.size())] = dims;
  }
  return keys;
}

void expect_keys_match(const torch::nn::Module& module, const std::string& list, const std::string& prefix) {
  auto expected = reference_keys(list, prefix);
  std::map<std::string, std::vector<int64_t>> actual;
  for (const auto& [name, t] : sine::module_state(module, "")) actual[name] = t.sizes().vec();
  EXPECT_EQ(actual.size(), expected.size());
  for (const auto& [name, shape] : expected) {
    auto it = actual.find(name);
    if (it == actual.end()) {
      ADD_FAILURE() << "missing " << name;
      continue;
    }
    EXPECT_EQ(it->second, shape) << name;
  }
  for (const auto& [name, shape] : actual) EXPECT_TRUE(expected.count(name)) << "unexpected " << name;
}

TEST(VAE, EncodeMatchesReference) {
  torch::NoGradGuard no_grad;
  auto vae = load_tiny();
  auto io = sine::load_safetensors(kRef + "tiny/vae_io.safetensors");
  auto inter = sine::load_safetensors(kRef + "tiny/vae_intermediates.safetensors");
  std::map<std::string, torch::Tensor> seen;
  auto posterior = vae->encode(io.at("image"), [&](const std::string& n, const torch::Tensor& t) { seen[n] = t; });
  for (const char* name : {"encoder.conv_in", "encoder.down_blocks.0", "encoder.down_blocks.1", "encoder.down_blocks.2",
                           "encoder.down_blocks.3", "encoder.mid_block", "encoder.conv_out", "quant_conv"}) {
    ASSERT_TRUE(seen.count(name)) << name;
    expect_close(name, seen.at(name), inter.at(name));
  }
  expect_close("moments", vae->encode_moments(io.at("image")), io.at("moments"));
  expect_close("mean", posterior.mean, io.at("mean"));
  expect_close("logvar", posterior.logvar, io.at("logvar"));
  expect_close("std", posterior.std, io.at("std"));
  EXPECT_TRUE(torch::equal(posterior.mode(), posterior.mean));
}

TEST(VAE, DecodeMatchesReference) {
  torch::NoGradGuard no_grad;
  auto vae = load_tiny();
  auto io = sine::load_safetensors(kRef + "tiny/vae_io.safetensors");
  auto inter = sine::load_safetensors(kRef + "tiny/vae_intermediates.safetensors");
  std::map<std::string, torch::Tensor> seen;
  auto decoded = vae->decode(io.at("mean"), [&](const std::string& n, const torch::Tensor& t) { seen[n] = t; });
  for (const char* name : {"post_quant_conv", "decoder.conv_in", "decoder.mid_block", "decoder.up_blocks.0",
                           "decoder.up_blocks.1", "decoder.up_blocks.2", "decoder.up_blocks.3", "decoder.conv_out"}) {
    ASSERT_TRUE(seen.count(name)) << name;
    expect_close(name, seen.at(name), inter.at(name));
  }
  expect_close("decoded_mean", decoded, io.at("decoded_mean"));
  expect_close("decoded_z_rand", vae->decode(io.at("z_rand")), io.at("decoded_z_rand"));
}

TEST(VAE, PosteriorSampleAndKL) {
  torch::NoGradGuard no_grad;
  auto moments = torch::randn({2, 8, 3, 5});
  moments.slice(1, 4, 5).fill_(-100.0);  // below the clamp
  sine::DiagonalGaussian q(moments);
  EXPECT_EQ(q.logvar.min().item<double>(), -30.0);
  auto a = q.sample(at::detail::createCPUGenerator(7));
  auto b = q.sample(at::detail::createCPUGenerator(7));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, q.mean));
  EXPECT_EQ(a.sizes(), q.mean.sizes());
  EXPECT_EQ(q.kl().sizes(), (std::vector<int64_t>{2}));
  // KL of N(0, 1) against N(0, 1) is zero.
  EXPECT_NEAR(sine::DiagonalGaussian(torch::zeros({1, 8, 2, 2})).kl().item<double>(), 0.0, 1e-12);
}

TEST(VAE, RejectsBadShapes) {
  auto vae = sine::AutoencoderKL(tiny_config());
  EXPECT_THROW(vae->encode(torch::zeros({1, 3, 60, 64})), sine::Error);
  EXPECT_THROW(vae->decode(torch::zeros({1, 3, 8, 8})), sine::Error);
}

TEST(VAE, TinyKeysEqualReferenceList) {
  expect_keys_match(*sine::AutoencoderKL(tiny_config()), kRef + "tiny/tiny_keys_original.txt", kPrefix);
}

TEST(VAE, SD15KeysAndParameterCount) {
  sine::AutoencoderKL vae(sine::VAEConfig{});
  EXPECT_EQ(sine::count_parameters(*vae), 83653863);
  expect_keys_match(*vae, kRef + "sd15_keys_original.txt", kPrefix);
  EXPECT_DOUBLE_EQ(vae->scaling_factor(), 0.18215);
}

}  // namespace
