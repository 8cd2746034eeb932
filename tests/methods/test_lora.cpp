#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/lora.h"
#include "pipeline/prompt_loras.h"
#include "models/presets.h"

namespace {

using sine::LoRAConfig;
using sine::LoRAKeyFormat;
using sine::LoRANetwork;
using sine::LoRAWeights;

sine::StableDiffusion tiny_model(uint64_t seed = 1) {
  torch::manual_seed(seed);
  sine::StableDiffusion model(sine::model_config_preset("tiny"));
  model->eval();
  sine::freeze(*model);
  return model;
}

struct Inputs {
  torch::Tensor x, t, context, ids;
};

Inputs inputs(const sine::StableDiffusion& model) {
  torch::manual_seed(7);
  Inputs in;
  in.x = torch::randn({2, 4, 16, 16});
  in.t = torch::tensor({10, 500}, torch::kLong);
  in.context = torch::randn({2, 77, model->config.text.width});
  in.ids = torch::randint(0, 1000, {2, 77}, torch::kLong);
  return in;
}

torch::Tensor unet_out(sine::StableDiffusion& model, const Inputs& in) {
  return model->unet->forward(in.x, in.t, in.context);
}
torch::Tensor text_out(sine::StableDiffusion& model, const Inputs& in) { return model->text_encoder->forward(in.ids); }

// Gives every `up` random values so the adapters do something.
void randomize(LoRANetwork& net, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& [name, t] : net.parameters()) t.copy_(torch::randn(t.sizes(), gen) * 0.1);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST(LoRA, AttachesToEveryAttentionProjection) {
  auto model = tiny_model();
  const auto unet_modules = sine::lora_target_modules(model, true, false);
  const auto text_modules = sine::lora_target_modules(model, false, true);
  // 4 projections (q, k, v, out) per attention; attn1+attn2 per transformer block.
  EXPECT_EQ(unet_modules.size() % 8, 0u);
  EXPECT_EQ(unet_modules.size(), static_cast<size_t>(8 * model->unet->num_attention_layers()));
  EXPECT_EQ(text_modules.size(), static_cast<size_t>(4 * model->config.text.layers));
  EXPECT_NE(std::find(unet_modules.begin(), unet_modules.end(),
                      "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q"),
            unet_modules.end());
  EXPECT_NE(std::find(unet_modules.begin(), unet_modules.end(),
                      "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_out.0"),
            unet_modules.end());
  EXPECT_NE(std::find(text_modules.begin(), text_modules.end(),
                      "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.out_proj"),
            text_modules.end());

  LoRAConfig config;
  config.rank = 4;
  auto net = LoRANetwork::attach(model, config);
  EXPECT_EQ(net.size(), static_cast<int64_t>(unet_modules.size() + text_modules.size()));
  auto params = net.parameters();
  ASSERT_EQ(params.size(), 2 * unet_modules.size() + 2 * text_modules.size());
  EXPECT_EQ(params[0].first.substr(params[0].first.size() - 10), ".lora_down");
  // Official init: down ~ N(0, 1/rank), up = 0.
  double sum_sq = 0;
  int64_t n = 0;
  for (auto& [name, t] : params) {
    ASSERT_TRUE(t.requires_grad()) << name;
    if (name.find(".lora_up") != std::string::npos) {
      EXPECT_EQ(t.abs().max().item<double>(), 0.0) << name;
      EXPECT_EQ(t.size(1), 4) << name;
    } else {
      EXPECT_EQ(t.size(0), 4) << name;
      sum_sq += t.pow(2).sum().item<double>();
      n += t.numel();
    }
  }
  EXPECT_NEAR(std::sqrt(sum_sq / n), 0.25, 0.02);
}

TEST(LoRA, ZeroInitializedUpLeavesOutputsUnchanged) {
  auto model = tiny_model();
  auto in = inputs(model);
  torch::NoGradGuard no_grad;
  const torch::Tensor u0 = unet_out(model, in), t0 = text_out(model, in);
  auto net = LoRANetwork::attach(model, LoRAConfig{});
  EXPECT_EQ(max_diff(unet_out(model, in), u0), 0.0);
  EXPECT_EQ(max_diff(text_out(model, in), t0), 0.0);
  randomize(net, 3);
  EXPECT_GT(max_diff(unet_out(model, in), u0), 1e-4);  // and a trained one does change them
  EXPECT_GT(max_diff(text_out(model, in), t0), 1e-4);
  net.remove();
  EXPECT_EQ(max_diff(unet_out(model, in), u0), 0.0);
  EXPECT_EQ(max_diff(text_out(model, in), t0), 0.0);
}

TEST(LoRA, ForwardEqualsWeightPlusScaledUpDown) {
  auto model = tiny_model();
  LoRAConfig config;
  config.scale = 0.7;
  auto net = LoRANetwork::attach(model, config);
  randomize(net, 5);
  torch::NoGradGuard no_grad;
  // One projection by hand: y = W x + b + scale · up · down · x.
  auto linear = model->text_encoder->text_model->encoder->layers->at<sine::CLIPEncoderLayerImpl>(0).self_attn->q_proj;
  const LoRAWeights w = net.weights();
  const auto& m = w.modules.at("cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj");
  torch::Tensor x = torch::randn({3, linear->in_features});
  torch::Tensor expected = torch::matmul(x, (linear->weight + 0.7 * torch::matmul(m.up, m.down)).t()) + linear->bias;
  EXPECT_LT(max_diff(linear->forward(x), expected), 1e-5);

  // Whole networks: unmerged == merged.
  auto in = inputs(model);
  const torch::Tensor u1 = unet_out(model, in), t1 = text_out(model, in);
  net.merge();
  EXPECT_FALSE(net.attached());
  EXPECT_TRUE(linear->adapters.empty());
  EXPECT_LT(max_diff(unet_out(model, in), u1), 1e-4);
  EXPECT_LT(max_diff(text_out(model, in), t1), 1e-4);
}

TEST(LoRA, GradientsReachOnlyTheLoRATensors) {
  auto model = tiny_model();
  auto net = LoRANetwork::attach(model, LoRAConfig{});
  randomize(net, 9);
  auto in = inputs(model);
  torch::Tensor ctx = model->text_encoder->forward(in.ids);
  torch::Tensor loss = unet_out(model, Inputs{in.x, in.t, ctx, in.ids}).pow(2).mean();
  loss.backward();
  for (auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
  int64_t with_grad = 0;
  for (auto& [name, t] : net.parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    with_grad += t.grad().abs().sum().item<double>() > 0;
  }
  EXPECT_EQ(with_grad, static_cast<int64_t>(net.parameters().size()));
}

TEST(LoRA, TwoNetworksSumWithTheirScales) {
  auto model = tiny_model();
  LoRAConfig ca;
  ca.name = "a";
  ca.scale = 0.5;
  ca.seed = 1;
  LoRAConfig cb = ca;
  cb.name = "b";
  cb.scale = 2.0;
  cb.seed = 2;
  auto a = LoRANetwork::attach(model, ca);
  auto b = LoRANetwork::attach(model, cb);
  randomize(a, 11);
  randomize(b, 12);
  EXPECT_THROW(LoRANetwork::attach(model, ca), sine::Error);  // same name twice

  const std::string key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k";
  auto wa = a.weights().modules.at(key), wb = b.weights().modules.at(key);
  sine::AdaptableLinear linear{nullptr};
  for (const auto& item : model->named_modules("", false))
    if (item.key() == key) linear = sine::AdaptableLinear(std::dynamic_pointer_cast<sine::AdaptableLinearImpl>(item.value()));
  ASSERT_TRUE(linear);
  ASSERT_EQ(linear->adapters.size(), 2u);
  torch::Tensor expected = 0.5 * torch::matmul(wa.up, wa.down) + 2.0 * torch::matmul(wb.up, wb.down);
  EXPECT_LT(max_diff(linear->adapter_delta(), expected), 1e-6);

  a.set_scale(0.0);
  EXPECT_LT(max_diff(linear->adapter_delta(), 2.0 * torch::matmul(wb.up, wb.down)), 1e-6);
  a.set_scale(0.5);

  // Both attached == both merged, in the whole model.
  auto in = inputs(model);
  torch::NoGradGuard no_grad;
  const torch::Tensor u = unet_out(model, in);
  a.merge();
  b.merge();
  EXPECT_LT(max_diff(unet_out(model, in), u), 1e-4);
}

void expect_same(const LoRAWeights& a, const LoRAWeights& b, bool fold_scale) {
  ASSERT_EQ(a.modules.size(), b.modules.size());
  for (const auto& [name, m] : a.modules) {
    ASSERT_TRUE(b.modules.count(name)) << name;
    const auto& n = b.modules.at(name);
    EXPECT_TRUE(torch::allclose(m.down, n.down)) << name;
    if (fold_scale) {
      EXPECT_TRUE(torch::allclose(m.up * m.scale, n.up * n.scale, 1e-5, 1e-7)) << name;
    } else {
      EXPECT_TRUE(torch::allclose(m.up, n.up)) << name;
      EXPECT_NEAR(m.scale, n.scale, 1e-6) << name;
    }
  }
}

TEST(LoRA, KeyFormatsRoundTrip) {
  auto model = tiny_model();
  auto net = LoRANetwork::attach(model, LoRAConfig{});
  randomize(net, 13);
  LoRAWeights w = net.weights();
  for (auto& [name, m] : w.modules) m.scale = 0.75;  // kohya alpha = 3 at rank 4
  const auto geometry = sine::LayoutGeometry::of(model->config);
  const auto known = sine::lora_target_modules(model);

  for (auto format : {LoRAKeyFormat::Native, LoRAKeyFormat::Kohya, LoRAKeyFormat::Diffusers}) {
    SCOPED_TRACE(sine::lora_key_format_name(format));
    auto keys = sine::lora_to_keys(w, format, geometry);
    EXPECT_EQ(sine::detect_lora_key_format(keys), format);
    expect_same(w, sine::lora_from_keys(keys, geometry, known), format == LoRAKeyFormat::Diffusers);
  }

  auto kohya = sine::lora_to_keys(w, LoRAKeyFormat::Kohya, geometry);
  EXPECT_TRUE(kohya.count("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"));
  EXPECT_TRUE(kohya.count("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight"));
  EXPECT_TRUE(kohya.count("lora_te_text_model_encoder_layers_1_self_attn_v_proj.alpha"));
  EXPECT_NEAR(kohya.at("lora_te_text_model_encoder_layers_1_self_attn_v_proj.alpha").item<double>(), 3.0, 1e-6);
  auto diffusers = sine::lora_to_keys(w, LoRAKeyFormat::Diffusers, geometry);
  EXPECT_TRUE(diffusers.count("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"));
  EXPECT_TRUE(diffusers.count("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"));

  // diffusers 0.20 (the official SingleInsert code's pytorch_lora_weights) spelling.
  std::map<std::string, torch::Tensor> old;
  for (const auto& [key, t] : diffusers) {
    std::string k = key;
    auto replace = [&](const std::string& from, const std::string& to) {
      auto pos = k.find(from);
      if (pos != std::string::npos) k.replace(pos, from.size(), to);
    };
    const bool down = k.find("lora_A") != std::string::npos;
    if (k.rfind("unet.", 0) == 0) {
      for (const char* p : {"to_q", "to_k", "to_v"})
        replace(std::string(".") + p + (down ? ".lora_A.weight" : ".lora_B.weight"),
                std::string(".processor.") + p + (down ? "_lora.down.weight" : "_lora.up.weight"));
      replace(down ? ".to_out.0.lora_A.weight" : ".to_out.0.lora_B.weight",
              down ? ".processor.to_out_lora.down.weight" : ".processor.to_out_lora.up.weight");
    } else {
      replace(down ? ".lora_A.weight" : ".lora_B.weight",
              down ? ".lora_linear_layer.down.weight" : ".lora_linear_layer.up.weight");
    }
    old[k] = t;
  }
  EXPECT_TRUE(old.count("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight"));
  expect_same(w, sine::lora_from_keys(old, geometry, known), true);

  // Files: save in each format, load back through the model.
  const auto dir = std::filesystem::temp_directory_path() / "sine_test_lora";
  std::filesystem::create_directories(dir);
  for (auto format : {LoRAKeyFormat::Native, LoRAKeyFormat::Kohya, LoRAKeyFormat::Diffusers}) {
    const std::string path = (dir / (std::string(sine::lora_key_format_name(format)) + ".safetensors")).string();
    sine::save_lora(path, w, format, geometry);
    expect_same(w, sine::load_lora(path, model), format == LoRAKeyFormat::Diffusers);
  }
  std::filesystem::remove_all(dir);

  // A loaded network reproduces the original's outputs.
  auto in = inputs(model);
  torch::NoGradGuard no_grad;
  net.set_scale(1.0);
  for (auto& [name, m] : w.modules) m.scale = 1.0;
  const torch::Tensor ref = unet_out(model, in);
  net.remove();
  auto loaded = LoRANetwork::attach(model, sine::lora_from_keys(sine::lora_to_keys(w, LoRAKeyFormat::Kohya, geometry),
                                                                geometry, known),
                                    "loaded");
  EXPECT_LT(max_diff(unet_out(model, in), ref), 1e-5);
}

TEST(LoRA, BadInputsAreClearErrors) {
  auto model = tiny_model();
  const auto geometry = sine::LayoutGeometry::of(model->config);
  const auto known = sine::lora_target_modules(model);
  LoRAConfig bad;
  bad.rank = 0;
  EXPECT_THROW(LoRANetwork::attach(model, bad), sine::Error);

  std::map<std::string, torch::Tensor> junk{{"foo.weight", torch::zeros({2})}};
  EXPECT_THROW(sine::lora_from_keys(junk, geometry, known), sine::Error);
  std::map<std::string, torch::Tensor> missing_up{
      {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", torch::zeros({4, 32})}};
  EXPECT_THROW(sine::lora_from_keys(missing_up, geometry, known), sine::Error);
  std::map<std::string, torch::Tensor> unknown{{"lora_unet_nowhere_to_q.lora_down.weight", torch::zeros({4, 32})},
                                               {"lora_unet_nowhere_to_q.lora_up.weight", torch::zeros({32, 4})}};
  EXPECT_THROW(sine::lora_from_keys(unknown, geometry, known), sine::Error);

  LoRAWeights wrong;
  wrong.modules["cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj"] =
      sine::LoRAModule{torch::zeros({4, 31}), torch::zeros({32, 4}), 1.0};
  EXPECT_THROW(LoRANetwork::attach(model, wrong, "wrong"), sine::Error);
}

// <lora:NAME:TE:UNET> tags: the file is found in the folder, attached with the text-encoder
// multiplier on the text projections and the UNet multiplier on the UNet's, and detached again.
TEST(PromptLoras, AttachesTheTaggedFileWithItsMultipliersAndDetaches) {
  auto model = tiny_model();
  const auto in = inputs(model);
  const auto base_unet = unet_out(model, in), base_text = text_out(model, in);
  LoRAWeights w;
  {
    auto net = LoRANetwork::attach(model, LoRAConfig{});
    randomize(net, 3);
    w = net.weights();
    net.remove();
  }
  const std::string dir = testing::TempDir() + "/sine_prompt_loras";
  std::filesystem::create_directories(dir);
  sine::save_lora(dir + "/style.safetensors", w, LoRAKeyFormat::Kohya, sine::LayoutGeometry::of(model->config));
  sine::PromptLoras loras(model, dir);

  loras.apply({{"style", 1.0, 0.0}});  // text encoder only
  EXPECT_GT(max_diff(text_out(model, in), base_text), 1e-4);
  EXPECT_EQ(max_diff(unet_out(model, in), base_unet), 0.0);
  loras.apply({{"style", 0.0, 0.5}});  // UNet only, half strength: replaces the previous tags
  EXPECT_EQ(max_diff(text_out(model, in), base_text), 0.0);
  const auto half = unet_out(model, in);
  EXPECT_GT(max_diff(half, base_unet), 1e-4);
  // The same adapters attached by hand at scale 0.5 give the same output.
  loras.apply({});
  EXPECT_EQ(loras.attached(), 0u);
  EXPECT_EQ(max_diff(unet_out(model, in), base_unet), 0.0);
  {
    LoRAWeights unet_only;
    for (const auto& [m, lora] : w.modules)
      if (m.rfind("model.diffusion_model.", 0) == 0) unet_only.modules[m] = lora;
    auto net = LoRANetwork::attach(model, unet_only, "by_hand", 0.5);
    EXPECT_LT(max_diff(unet_out(model, in), half), 1e-6);
    net.remove();
  }
  try {
    loras.apply({{"missing", 1.0, 1.0}});
    ADD_FAILURE() << "a missing LoRA file was accepted";
  } catch (const sine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("<lora:missing>"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
