#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/clip_text.h"
#include "models/weights.h"

namespace {

const std::string kRef = std::string(SINE_SHARED_DIR) + "/reference/";
const std::string kWeights = kRef + "tiny/tiny_sd15_original.safetensors";
const std::string kPrefix = "cond_stage_model.transformer.";
const std::string kPositionIds = "text_model.embeddings.position_ids";

sine::TextConfig tiny_config() {
  sine::TextConfig c;
  c.width = 32;
  c.layers = 2;
  c.heads = 4;
  c.mlp_width = 128;
  return c;
}

sine::CLIPTextModel load_tiny() {
  sine::CLIPTextModel model(tiny_config());
  sine::load_module_weights(*model, sine::load_safetensors(kWeights), kPrefix, kWeights, {kPositionIds});
  model->eval();
  return model;
}

// The tolerance of the reference README: 1e-4 relative to the output's scale.
void expect_close(const std::string& name, const torch::Tensor& actual, const torch::Tensor& ref) {
  ASSERT_EQ(actual.sizes(), ref.sizes()) << name;
  const double scale = std::max(1.0, ref.abs().max().item<double>());
  const double err = (actual - ref).abs().max().item<double>();
  std::printf("  %-18s max|ref| %9.4f  max abs err %.3e  rel %.3e\n", name.c_str(), ref.abs().max().item<double>(),
              err, err / scale);
  EXPECT_LE(err, 1e-4 * scale) << name;
}

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

// The module holds every listed tensor except the optional position_ids, with the listed shape.
void expect_keys_match(const torch::nn::Module& module, const std::string& list) {
  auto expected = reference_keys(list, kPrefix);
  ASSERT_TRUE(expected.erase(kPositionIds));
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

TEST(CLIPText, MatchesReference) {
  torch::NoGradGuard no_grad;
  auto model = load_tiny();
  auto io = sine::load_safetensors(kRef + "tiny/clip_text_io.safetensors");
  const auto& ids = io.at("input_ids");
  auto out = model->encode(ids, 1, /*all_hidden_states=*/true);
  expect_close("last_hidden_state", out.last_hidden_state, io.at("last_hidden_state"));
  ASSERT_EQ(out.hidden_states.size(), 3u);
  for (size_t i = 0; i < out.hidden_states.size(); ++i) {
    const auto name = "hidden_states." + std::to_string(i);
    expect_close(name, out.hidden_states[i], io.at(name));
  }
  expect_close("pooler_output", out.pooled, io.at("pooler_output"));
  EXPECT_TRUE(torch::equal(model->forward(ids), out.last_hidden_state));
}

TEST(CLIPText, LoadsWithoutPositionIds) {
  auto tensors = sine::load_safetensors(kWeights);
  tensors.erase(kPrefix + kPositionIds);
  sine::CLIPTextModel model(tiny_config());
  EXPECT_NO_THROW(sine::load_module_weights(*model, tensors, kPrefix, kWeights));
}

TEST(CLIPText, EmbeddingPathEqualsForward) {
  torch::NoGradGuard no_grad;
  auto model = load_tiny();
  auto ids = sine::load_safetensors(kRef + "tiny/clip_text_io.safetensors").at("input_ids");
  auto embeds = model->token_embeddings(ids);
  EXPECT_EQ(embeds.sizes(), (std::vector<int64_t>{3, 77, 32}));
  auto via_embeddings = model->forward_embeddings(embeds, ids).last_hidden_state;
  EXPECT_TRUE(torch::equal(via_embeddings, model->forward(ids)));
  EXPECT_FALSE(model->forward_embeddings(embeds).pooled.defined());
}

TEST(CLIPText, OverridingOneTokenOnlyChangesLaterPositions) {
  torch::NoGradGuard no_grad;
  auto model = load_tiny();
  auto ids = sine::load_safetensors(kRef + "tiny/clip_text_io.safetensors").at("input_ids").slice(0, 0, 1);
  const int64_t star = 4;
  auto embeds = model->token_embeddings(ids);
  auto edited = embeds.clone();
  edited.select(1, star).copy_(torch::randn({1, 32}));
  for (int64_t skip : {1, 2}) {
    auto a = model->forward_embeddings(embeds, ids, skip).last_hidden_state;
    auto b = model->forward_embeddings(edited, ids, skip).last_hidden_state;
    auto changed = (a - b).abs().amax({0, 2});
    // Earlier positions may differ only by kernel rounding (fused attention on LibTorch 2.x).
    for (int64_t p = 0; p < star; ++p) EXPECT_LE(changed[p].item<double>(), 1e-6) << "position " << p;
    for (int64_t p = star; p < 77; ++p) EXPECT_GT(changed[p].item<double>(), 1e-4) << "position " << p;
  }
}

TEST(CLIPText, ClipSkipUsesPenultimateLayer) {
  torch::NoGradGuard no_grad;
  auto model = load_tiny();
  auto ids = sine::load_safetensors(kRef + "tiny/clip_text_io.safetensors").at("input_ids");
  auto full = model->encode(ids, 1, true);
  auto skipped = model->encode(ids, 2);
  auto expected = model->text_model->final_layer_norm->forward(full.hidden_states[1]);
  EXPECT_TRUE(torch::allclose(skipped.last_hidden_state, expected));
  EXPECT_TRUE(skipped.hidden_states.empty());
  EXPECT_THROW(model->encode(ids, 3), sine::Error);
  EXPECT_THROW(model->encode(ids, 0), sine::Error);
}

TEST(CLIPText, RejectsBadInput) {
  sine::CLIPTextModel model(tiny_config());
  EXPECT_THROW(model->forward(torch::full({1, 5}, 49408, torch::kLong)), sine::Error);
  EXPECT_THROW(model->forward(torch::zeros({1, 78}, torch::kLong)), sine::Error);
  EXPECT_THROW(model->forward(torch::zeros({1, 5}, torch::kInt)), sine::Error);
}

TEST(CLIPText, TinyKeysEqualReferenceList) {
  expect_keys_match(*sine::CLIPTextModel(tiny_config()), kRef + "tiny/tiny_keys_original.txt");
}

TEST(CLIPText, SD15KeysAndParameterCount) {
  sine::CLIPTextModel model(sine::TextConfig{});
  EXPECT_EQ(sine::count_parameters(*model), 123060480);
  expect_keys_match(*model, kRef + "sd15_keys_original.txt");
}

}  // namespace
