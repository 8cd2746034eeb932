// SingleInsert's image encoder: OpenAI-CLIP VisionTransformer layout, names and init; attention
// equal to torch's MultiheadAttention; OpenAI-key weight loading.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "methods/singleinsert/image_encoder.h"

namespace sine {
namespace {

TEST(ImageEncoder, ViTB32HasOpenAICLIPShapesAndParameterCount) {
  ImageEncoderConfig c = ImageEncoderConfig::preset("vit-b32", 512);
  ImageEncoder enc(c);
  int64_t n = 0;
  for (const auto& p : enc->parameters()) n += p.numel();
  EXPECT_EQ(n, 87849216);  // OpenAI CLIP ViT-B/32 visual (proj 768x512)
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : enc->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  EXPECT_EQ(shapes.at("conv1.weight"), (std::vector<int64_t>{768, 3, 32, 32}));
  EXPECT_EQ(shapes.count("conv1.bias"), 0u);
  EXPECT_EQ(shapes.at("class_embedding"), (std::vector<int64_t>{768}));
  EXPECT_EQ(shapes.at("positional_embedding"), (std::vector<int64_t>{50, 768}));
  EXPECT_EQ(shapes.at("transformer.resblocks.11.attn.in_proj_weight"), (std::vector<int64_t>{2304, 768}));
  EXPECT_EQ(shapes.at("transformer.resblocks.0.attn.out_proj.bias"), (std::vector<int64_t>{768}));
  EXPECT_EQ(shapes.at("transformer.resblocks.0.mlp.c_fc.weight"), (std::vector<int64_t>{3072, 768}));
  EXPECT_EQ(shapes.at("transformer.resblocks.0.mlp.c_proj.weight"), (std::vector<int64_t>{768, 3072}));
  EXPECT_EQ(shapes.at("ln_pre.weight"), (std::vector<int64_t>{768}));
  EXPECT_EQ(shapes.at("ln_post.bias"), (std::vector<int64_t>{768}));
  EXPECT_EQ(shapes.at("proj"), (std::vector<int64_t>{768, 512}));
  EXPECT_EQ(ImageEncoderConfig::for_text_width(768).width, 768);
  EXPECT_EQ(ImageEncoderConfig::for_text_width(64).image_size, 64);
  EXPECT_THROW(ImageEncoderConfig::preset("vit-h", 64), Error);
}

TEST(ImageEncoder, OfficialInit) {
  torch::manual_seed(0);
  ImageEncoder enc(ImageEncoderConfig::preset("vit-b32", 768));
  const double s = 1.0 / std::sqrt(768.0);
  EXPECT_NEAR(enc->proj.std().item<double>(), s, 0.02 * s);
  EXPECT_NEAR(enc->positional_embedding.std().item<double>(), s, 0.05 * s);
  auto block = enc->resblocks->at<VisionResidualBlockImpl>(0);
  EXPECT_EQ(block.attn->in_proj_bias.abs().max().item<double>(), 0.0);
  EXPECT_EQ(block.attn->out_proj->bias.abs().max().item<double>(), 0.0);
  // xavier-uniform bound sqrt(6 / (fan_in + fan_out)) with fan_in 768, fan_out 2304
  EXPECT_LE(block.attn->in_proj_weight.abs().max().item<double>(), std::sqrt(6.0 / (768 + 2304)) + 1e-6);
  EXPECT_GT(block.attn->in_proj_weight.abs().max().item<double>(), 0.9 * std::sqrt(6.0 / (768 + 2304)));
}

TEST(ImageEncoder, AttentionEqualsTorchMultiheadAttention) {
  torch::manual_seed(1);
  VisionAttention attn(64, 4);
  torch::nn::MultiheadAttention ref(torch::nn::MultiheadAttentionOptions(64, 4));
  {
    torch::NoGradGuard no_grad;
    ref->in_proj_weight.copy_(attn->in_proj_weight);
    ref->in_proj_bias.copy_(torch::randn({192}));
    attn->in_proj_bias.copy_(ref->in_proj_bias);
    ref->out_proj->weight.copy_(attn->out_proj->weight);
    ref->out_proj->bias.copy_(torch::randn({64}));
    attn->out_proj->bias.copy_(ref->out_proj->bias);
  }
  torch::Tensor x = torch::randn({2, 9, 64});
  torch::Tensor xt = x.transpose(0, 1);  // torch's MHA is sequence-first
  torch::Tensor expected = std::get<0>(ref->forward(xt, xt, xt)).transpose(0, 1);
  EXPECT_LT((attn->forward(x) - expected).abs().max().item<double>(), 1e-5);
}

// The whole forward written out from the parameters by name (OpenAI's VisionTransformer.forward):
// patch conv → [CLS; patches] + positional → ln_pre → pre-LN blocks (torch's MultiheadAttention,
// c_fc → QuickGELU → c_proj) → ln_post on CLS → @ proj.
TEST(ImageEncoder, FullForwardEqualsAnIndependentComputation) {
  namespace F = torch::nn::functional;
  torch::manual_seed(3);
  const auto c = ImageEncoderConfig::preset("tiny", 32);
  ImageEncoder enc(c);
  torch::NoGradGuard no_grad;
  for (auto& p : enc->parameters()) p.add_(0.05 * torch::randn_like(p));  // biases and norms not at their init
  std::map<std::string, torch::Tensor> P;
  for (const auto& item : enc->named_parameters()) P[item.key()] = item.value();
  auto pixels = torch::randn({2, 3, c.image_size, c.image_size});
  const int64_t B = 2, w = c.width;
  auto x = F::conv2d(pixels, P.at("conv1.weight"), F::Conv2dFuncOptions().stride(c.patch_size));
  x = x.flatten(2).transpose(1, 2);  // [B, grid², w]
  x = torch::cat({P.at("class_embedding").view({1, 1, w}).expand({B, 1, w}), x}, 1) + P.at("positional_embedding");
  auto ln = [&](const torch::Tensor& t, const std::string& name) {
    return torch::layer_norm(t, {w}, P.at(name + ".weight"), P.at(name + ".bias"), 1e-5);
  };
  x = ln(x, "ln_pre");
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string b = "transformer.resblocks." + std::to_string(l) + ".";
    torch::nn::MultiheadAttention mha(torch::nn::MultiheadAttentionOptions(w, c.heads));
    mha->in_proj_weight.copy_(P.at(b + "attn.in_proj_weight"));
    mha->in_proj_bias.copy_(P.at(b + "attn.in_proj_bias"));
    mha->out_proj->weight.copy_(P.at(b + "attn.out_proj.weight"));
    mha->out_proj->bias.copy_(P.at(b + "attn.out_proj.bias"));
    auto h = ln(x, b + "ln_1").transpose(0, 1);  // sequence-first
    x = x + std::get<0>(mha->forward(h, h, h)).transpose(0, 1);
    h = F::linear(ln(x, b + "ln_2"), P.at(b + "mlp.c_fc.weight"), P.at(b + "mlp.c_fc.bias"));
    x = x + F::linear(h * torch::sigmoid(1.702 * h), P.at(b + "mlp.c_proj.weight"), P.at(b + "mlp.c_proj.bias"));
  }
  auto expected = torch::matmul(ln(x.select(1, 0), "ln_post"), P.at("proj"));
  auto got = enc->forward(pixels);
  ASSERT_EQ(got.sizes(), expected.sizes());
  EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5 * (1 + expected.abs().max().item<double>()));
}

TEST(ImageEncoder, PreprocessAndForwardShapes) {
  ImageEncoder enc(ImageEncoderConfig::preset("tiny", 32));
  torch::Tensor white = torch::full({100, 80, 3}, 255, torch::kUInt8);
  torch::Tensor px = enc->preprocess(white);
  EXPECT_EQ(px.sizes(), (std::vector<int64_t>{1, 3, 64, 64}));
  EXPECT_NEAR(px.min().item<double>(), 1.0, 1e-6);  // mean/std 0.5
  torch::Tensor black = torch::zeros({64, 64, 3}, torch::kUInt8);
  EXPECT_NEAR(enc->preprocess(black).max().item<double>(), -1.0, 1e-6);
  torch::Tensor out = enc->forward(torch::cat({px, enc->preprocess(black)}));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 32}));
  EXPECT_GT((out[0] - out[1]).abs().max().item<double>(), 1e-4);  // the output depends on the image
  EXPECT_THROW(enc->preprocess(torch::zeros({8, 8}, torch::kUInt8)), Error);
}

TEST(ImageEncoder, LoadsOpenAIKeysAndReinitialisesAMismatchedProj) {
  const auto dir = std::filesystem::temp_directory_path() / "sine_test_image_encoder";
  std::filesystem::create_directories(dir);
  torch::manual_seed(2);
  ImageEncoder source(ImageEncoderConfig::preset("tiny", 32));
  std::map<std::string, torch::Tensor> file;
  for (const auto& p : source->named_parameters()) file["visual." + p.key()] = p.value().detach().clone();
  file["logit_scale"] = torch::tensor(1.0f);  // other CLIP keys are ignored
  const std::string path = (dir / "clip.safetensors").string();
  save_safetensors(path, file);

  torch::manual_seed(3);
  ImageEncoder same(ImageEncoderConfig::preset("tiny", 32));
  EXPECT_EQ(same->load_weights(path), "");
  torch::Tensor x = torch::randn({1, 3, 64, 64});
  EXPECT_LT((same->forward(x) - source->forward(x)).abs().max().item<double>(), 1e-6);

  ImageEncoder wider(ImageEncoderConfig::preset("tiny", 48));
  const std::string note = wider->load_weights(path);
  EXPECT_NE(note.find("proj"), std::string::npos);
  EXPECT_EQ((wider->conv1->weight - source->conv1->weight).abs().max().item<double>(), 0.0);

  file.erase("visual.ln_post.weight");
  save_safetensors(path, file);
  EXPECT_THROW(same->load_weights(path), Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sine
