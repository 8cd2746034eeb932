// SingleInsert on the tiny random-weight reference model: token override, losses, masks,
// which tensors each stage trains, a short run that lowers the loss, concept files, composition.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "methods/singleinsert/concept_file.h"
#include "methods/singleinsert/single_insert.h"
#include "diffusion/noise_schedule.h"
#include "io/image.h"

namespace sine {
namespace {

const std::string kShared = SINE_SHARED_DIR;
const std::string kTiny = kShared + "/reference/tiny";
const std::string kVocab = kShared + "/data/clip/bpe_simple_vocab_16e6.txt.gz";

Pipeline& tiny_pipeline() {
  static Pipeline* pipe = [] {
    LoadOptions o;
    o.model = kTiny + "/tiny_sd15_original.safetensors";
    o.config_json = kTiny + "/tiny_config.json";
    o.tokenizer = kVocab;
    return new Pipeline(Pipeline::load(o));
  }();
  return *pipe;
}

// A 128 px image: a red square on a striped background, and its mask.
std::pair<torch::Tensor, torch::Tensor> scene() {
  torch::Tensor img = torch::zeros({128, 128, 3}, torch::kUInt8);
  for (int64_t y = 0; y < 128; ++y) img.select(0, y).fill_((y / 8) % 2 ? 200 : 40);
  img.slice(0, 32, 96).slice(1, 32, 96).select(2, 0).fill_(255);
  img.slice(0, 32, 96).slice(1, 32, 96).select(2, 1).fill_(0);
  img.slice(0, 32, 96).slice(1, 32, 96).select(2, 2).fill_(0);
  torch::Tensor mask = torch::zeros({1, 1, 128, 128});
  mask.slice(2, 32, 96).slice(3, 32, 96).fill_(1);
  return {img, mask};
}

SingleInsertConfig small_config() {
  SingleInsertConfig c;
  c.class_word = "cube";
  c.batch = 2;
  c.stage1_steps = 3;
  c.stage2_steps = 3;
  c.seed = 5;
  return c;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST(SingleInsert, PlaceholdersAreSingleTokensAtTheirPositions) {
  const ClipTokenizer& tok = tiny_pipeline().tokenizer();
  PlaceholderPrompt p = tokenize_with_placeholders(tok, "* cube", {"*"});
  ASSERT_EQ(p.slots.size(), 1u);
  EXPECT_EQ(p.slots[0], (std::pair<int64_t, size_t>(1, 0)));
  EXPECT_EQ(p.ids[0][0].item<int64_t>(), tok.sot_id());
  EXPECT_EQ(p.ids[0][2].item<int64_t>(), tok.encode("cube")[1]);
  PlaceholderPrompt two = tokenize_with_placeholders(tok, "a *1 cube next to a *2 ball", {"*1", "*2"});
  ASSERT_EQ(two.slots.size(), 2u);
  EXPECT_EQ(two.slots[0], (std::pair<int64_t, size_t>(2, 0)));
  EXPECT_EQ(two.slots[1], (std::pair<int64_t, size_t>(7, 1)));
  for (int64_t i = 0; i < two.ids.size(1); ++i)
    EXPECT_LT(two.ids[0][i].item<int64_t>(), tiny_pipeline().config().text.vocab_size);
}

TEST(SingleInsert, TokenOverrideReplacesOnlyPositionOne) {
  Pipeline& pipe = tiny_pipeline();
  torch::NoGradGuard no_grad;
  auto& text = pipe.model()->text_encoder;
  PlaceholderPrompt p = tokenize_with_placeholders(pipe.tokenizer(), "* cube", {"*"});
  // With the embedding row of "red" as the vector, the states equal those of "red cube" exactly.
  const int64_t red = pipe.tokenizer().encode("red")[1];
  torch::Tensor row = text->text_model->embeddings->token_embedding->weight[red];
  torch::Tensor overridden = encode_with_override(text, p, {row});
  torch::Tensor reference = pipe.encode_prompt("red cube");
  EXPECT_LT(max_diff(overridden, reference), 1e-5);
  // Another vector: the start token's state (causal attention) is untouched, position 1 onwards change.
  torch::Tensor other = encode_with_override(text, p, {torch::randn({pipe.config().text.width}) * 3});
  EXPECT_EQ(max_diff(other.select(1, 0), reference.select(1, 0)), 0.0);
  EXPECT_GT(max_diff(other.select(1, 1), reference.select(1, 1)), 1e-3);
  // No placeholder: identical to the plain prompt.
  EXPECT_LT(max_diff(encode_with_override(text, tokenize_with_placeholders(pipe.tokenizer(), "cube", {}), {}),
                     pipe.encode_prompt("cube")),
            1e-6);
}

TEST(SingleInsert, LossesSeeOnlyTheirRegion) {
  torch::Tensor M = torch::zeros({1, 1, 4, 4});
  M.slice(3, 0, 2).fill_(1);  // left half
  torch::Tensor z0 = torch::zeros({2, 4, 4, 4}), frozen = torch::zeros({2, 4, 4, 4});
  torch::Tensor x0 = torch::zeros({2, 4, 4, 4});
  x0.slice(3, 2, 4).fill_(5);  // differs only outside the mask
  EXPECT_EQ(foreground_loss(x0, z0, M).item<double>(), 0.0);
  EXPECT_NEAR(background_loss(x0, frozen, M).item<double>(), 25.0 * 0.5, 1e-5);  // plain mean, not per area
  torch::Tensor y0 = torch::zeros({2, 4, 4, 4});
  y0.slice(3, 0, 2).fill_(2);  // differs only inside the mask
  EXPECT_NEAR(foreground_loss(y0, z0, M).item<double>(), 4.0 * 0.5, 1e-5);
  EXPECT_EQ(background_loss(y0, frozen, M).item<double>(), 0.0);
  EXPECT_EQ(semantic_loss(frozen, frozen).item<double>(), 0.0);
  EXPECT_NEAR(semantic_loss(y0, frozen).item<double>(), 2.0, 1e-5);

  // Area pooling to the latent: soft values at partial cells.
  torch::Tensor m = torch::zeros({8, 8});
  m.slice(1, 0, 3).fill_(1);  // three of eight columns
  torch::Tensor lm = latent_mask(m, 2, 2);
  ASSERT_EQ(lm.sizes(), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_NEAR(lm[0][0][0][0].item<double>(), 0.75, 1e-6);
  EXPECT_NEAR(lm[0][0][1][1].item<double>(), 0.0, 1e-6);
  EXPECT_THROW(latent_mask(m * 2, 2, 2), Error);
}

TEST(SingleInsert, StageITrainsOnlyTheEncoderAndStageIIAddsOnlyLoRA) {
  auto [img, mask] = scene();
  SingleInsertTrainer trainer(tiny_pipeline(), img, mask, small_config());
  trainer.run_stage1(0);  // makes the stage I optimizer, trains nothing
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  auto [loss1, parts1] = trainer.step_loss(1, gen);
  EXPECT_GT(parts1.fg, 0);
  EXPECT_GT(parts1.bg, 0);
  EXPECT_EQ(parts1.sm, 0);
  loss1.backward();
  for (auto& p : tiny_pipeline().model()->parameters()) ASSERT_FALSE(p.grad().defined());
  int64_t reached = 0, total = 0;
  for (auto& [name, p] : trainer.encoder()->named_trainables()) {
    ++total;
    reached += p.grad().defined() && p.grad().abs().sum().item<double>() > 0;
    p.mutable_grad() = torch::Tensor();
  }
  EXPECT_EQ(reached, total);

  trainer.begin_stage2();
  ASSERT_TRUE(trainer.unet_lora().attached());
  ASSERT_TRUE(trainer.text_lora().attached());
  auto gen2 = at::make_generator<at::CPUGeneratorImpl>(2);
  auto [loss2, parts2] = trainer.step_loss(2, gen2);
  // up = 0: the LoRA model equals the frozen one before training (up to batch-size rounding).
  EXPECT_LT(parts2.sm, 1e-9);
  loss2.backward();
  for (auto& p : tiny_pipeline().model()->parameters()) ASSERT_FALSE(p.grad().defined());
  for (auto& [name, p] : trainer.encoder()->named_trainables()) EXPECT_TRUE(p.grad().defined()) << name;
  int64_t up_reached = 0, ups = 0;
  for (auto* net : {&trainer.unet_lora(), &trainer.text_lora()})
    for (auto& [name, p] : net->parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      if (name.find("lora_up") != std::string::npos) {
        ++ups;
        up_reached += p.grad().abs().sum().item<double>() > 0;
      }
    }
  EXPECT_GT(up_reached, ups / 2);

  // After a few stage II steps the LoRA model departs from the frozen one: L_sm > 0.
  trainer.run_stage2();
  auto gen3 = at::make_generator<at::CPUGeneratorImpl>(2);
  EXPECT_GT(trainer.step_loss(2, gen3).second.sm, 1e-7);
  trainer.detach_lora();
}

TEST(SingleInsert, ObjectivesFollowTheAblation) {
  auto [img, mask] = scene();
  for (auto objective : {InsertObjective::Reconstruction, InsertObjective::Foreground}) {
    SingleInsertConfig c = small_config();
    c.objective = objective;
    SingleInsertTrainer trainer(tiny_pipeline(), img, mask, c);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
    auto parts = trainer.step_loss(1, gen).second;
    EXPECT_EQ(parts.bg, 0.0);
    EXPECT_NEAR(parts.total, parts.fg, 1e-9);
  }
  // Same draw: the reconstruction loss (M = 1) is at least the masked L_fg.
  SingleInsertConfig a = small_config(), b = small_config();
  a.objective = InsertObjective::Reconstruction;
  b.objective = InsertObjective::Foreground;
  SingleInsertTrainer ta(tiny_pipeline(), img, mask, a), tb(tiny_pipeline(), img, mask, b);
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(3), g2 = at::make_generator<at::CPUGeneratorImpl>(3);
  EXPECT_GT(ta.step_loss(1, g1).second.fg, tb.step_loss(1, g2).second.fg);
}

TEST(SingleInsert, TrainingPromptTemplate) {
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(insert_training_prompts("* {class}", "cube", "*"), (P{"* cube", "cube"}));
  EXPECT_EQ(insert_training_prompts("a * {class} in the center on a blue background", "cube", "*"),
            (P{"a * cube in the center on a blue background", "a cube in the center on a blue background"}));
  EXPECT_THROW(insert_training_prompts("a * thing", "cube", "*"), Error);        // no {class}
  EXPECT_THROW(insert_training_prompts("* {class} and *", "cube", "*"), Error);  // twice
  EXPECT_THROW(insert_training_prompts("a {class}", "cube", "*"), Error);        // none

  // A caption-shaped template: the token sits at position 2 and both branches see the caption's
  // words, so the same draw gives a different loss than the official "* cube".
  auto [img, mask] = scene();
  SingleInsertConfig a = small_config(), b = small_config();
  b.prompt_template = "a * {class} on a striped background";
  SingleInsertTrainer ta(tiny_pipeline(), img, mask, a), tb(tiny_pipeline(), img, mask, b);
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(3), g2 = at::make_generator<at::CPUGeneratorImpl>(3);
  const InsertLosses la = ta.step_loss(1, g1).second, lb = tb.step_loss(1, g2).second;
  EXPECT_TRUE(std::isfinite(lb.total));
  EXPECT_NE(la.fg, lb.fg);
  EXPECT_NE(la.bg, lb.bg);
}

// Wiring: stage I's losses rebuilt by hand from the same draws with the library's pieces — the
// encoder's vector at the placeholder of the concept prompt, the class prompt without it, x0 from
// one UNet call each, L_fg against the posterior sample inside the mask, L_bg against the class
// prompt's x0 (the frozen model in stage I) outside it, total = L_fg + γ·L_bg.
// The draws of SingleInsertTrainer::step_loss from a generator seeded `seed`, made by hand: a
// posterior sample per batch element (scaled), the noise, the timesteps, and z_t.
struct StepDraws {
  torch::Tensor z0, eps, t, z_t;
};
StepDraws step_draws(StableDiffusion& model, const torch::Tensor& img, int64_t batch, uint64_t seed) {
  auto draws = at::make_generator<at::CPUGeneratorImpl>(seed);
  const DiagonalGaussian posterior = model->vae->encode(to_model_input(img));
  auto shape = posterior.mean.sizes().vec();
  shape[0] = batch;
  StepDraws d;
  d.z0 = (posterior.mean + posterior.std * torch::randn(shape, draws, torch::kFloat32)) * model->config.vae.scaling_factor;
  d.eps = torch::randn(d.z0.sizes(), draws, torch::kFloat32);
  d.t = sample_timesteps(batch, draws, torch::kCPU);
  d.z_t = add_noise(d.z0, d.eps, d.t, NoiseSchedule::stable_diffusion());
  return d;
}

TEST(SingleInsert, StageILossesEqualAHandBuiltComputation) {
  auto [img, mask] = scene();
  SingleInsertConfig c = small_config();
  c.gamma = 2.5;
  c.prompt_template = "a * {class} on a striped background";
  SingleInsertTrainer trainer(tiny_pipeline(), img, mask, c);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  torch::NoGradGuard no_grad;
  const InsertLosses got = trainer.step_loss(1, gen).second;

  Pipeline& pipe = tiny_pipeline();
  StableDiffusion& model = pipe.model();
  const NoiseSchedule& schedule = NoiseSchedule::stable_diffusion();
  const StepDraws d = step_draws(model, img, c.batch, 11);
  const torch::Tensor &z0 = d.z0, &t = d.t, &z_t = d.z_t;
  const torch::Tensor v = trainer.concept_now().vector;
  auto x0_for = [&](const std::string& prompt, const std::vector<torch::Tensor>& vectors) {
    const PlaceholderPrompt p = tokenize_with_placeholders(pipe.tokenizer(), prompt, vectors.empty() ? std::vector<std::string>{} : std::vector<std::string>{"*"});
    const torch::Tensor ctx = encode_with_override(model->text_encoder, p, vectors).expand({c.batch, -1, -1});
    return pred_x0_from_eps(z_t, model->unet->forward(z_t, t, ctx), t, schedule);
  };
  const torch::Tensor x0_concept = x0_for("a * cube on a striped background", {v});
  const torch::Tensor x0_class = x0_for("a cube on a striped background", {});
  const torch::Tensor M = latent_mask(mask, z0.size(2), z0.size(3));
  const double fg = (M * (x0_concept - z0).pow(2)).mean().item<double>();
  const double bg = ((1 - M) * (x0_concept - x0_class).pow(2)).mean().item<double>();
  EXPECT_NEAR(got.fg, fg, 1e-4 * fg);
  EXPECT_NEAR(got.bg, bg, 1e-4 * bg);
  EXPECT_NEAR(got.total, fg + 2.5 * bg, 1e-4 * (fg + 2.5 * bg));
  EXPECT_GT(bg, 0.0);
}

// Stage II by hand, after two stage II steps (LoRA no longer zero): both branches through the LoRA
// UNet and LoRA text encoder, the target from a separately loaded frozen model on the class prompt's
// LoRA text states (the official code's choice), total = L_fg + γ·L_bg + η·L_sm.
TEST(SingleInsert, StageIILossesEqualAHandBuiltComputation) {
  auto [img, mask] = scene();
  SingleInsertConfig c = small_config();
  c.stage1_steps = 1;
  c.stage2_steps = 2;
  c.gamma = 1.5;
  c.eta = 0.7;
  c.stage2_lr = 1e-2;
  SingleInsertTrainer trainer(tiny_pipeline(), img, mask, c);
  trainer.run_stage1();
  trainer.run_stage2();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
  torch::NoGradGuard no_grad;
  const InsertLosses got = trainer.step_loss(2, gen).second;

  Pipeline& pipe = tiny_pipeline();  // LoRA attached by the trainer
  StableDiffusion& model = pipe.model();
  LoadOptions o;
  o.model = kTiny + "/tiny_sd15_original.safetensors";
  o.config_json = kTiny + "/tiny_config.json";
  o.tokenizer = kVocab;
  Pipeline frozen = Pipeline::load(o);
  const NoiseSchedule& schedule = NoiseSchedule::stable_diffusion();
  const StepDraws d = step_draws(frozen.model(), img, c.batch, 13);
  const torch::Tensor &z0 = d.z0, &t = d.t, &z_t = d.z_t;
  const torch::Tensor v = trainer.concept_now().vector;
  auto context = [&](const std::string& prompt, const std::vector<torch::Tensor>& vectors) {
    const PlaceholderPrompt p = tokenize_with_placeholders(
        pipe.tokenizer(), prompt, vectors.empty() ? std::vector<std::string>{} : std::vector<std::string>{"*"});
    return encode_with_override(model->text_encoder, p, vectors).expand({c.batch, -1, -1});
  };
  auto x0 = [&](UNetModel& unet, const torch::Tensor& ctx) {
    return pred_x0_from_eps(z_t, unet->forward(z_t, t, ctx), t, schedule);
  };
  const torch::Tensor class_states = context("cube", {});  // LoRA text states of the class prompt
  const torch::Tensor x0_concept = x0(model->unet, context("* cube", {v}));
  const torch::Tensor x0_class = x0(model->unet, class_states);
  const torch::Tensor x0_frozen = x0(frozen.model()->unet, class_states);
  const torch::Tensor M = latent_mask(mask, z0.size(2), z0.size(3));
  const double fg = (M * (x0_concept - z0).pow(2)).mean().item<double>();
  const double bg = ((1 - M) * (x0_concept - x0_frozen).pow(2)).mean().item<double>();
  const double sm = (x0_class - x0_frozen).pow(2).mean().item<double>();
  EXPECT_GT(sm, 0.0);  // the LoRA moved the class branch away from the frozen model
  EXPECT_NEAR(got.fg, fg, 1e-4 * fg);
  EXPECT_NEAR(got.bg, bg, 1e-4 * bg);
  EXPECT_NEAR(got.sm, sm, 1e-3 * sm);
  EXPECT_NEAR(got.total, fg + 1.5 * bg + 0.7 * sm, 1e-4 * (fg + 1.5 * bg + 0.7 * sm));
}

TEST(SingleInsert, ShortRunLowersTheLossOnAFixedDraw) {
  auto [img, mask] = scene();
  SingleInsertConfig c = small_config();
  c.stage1_steps = 25;
  c.stage1_lr = 1e-2;
  c.stage2_steps = 0;
  SingleInsertTrainer trainer(tiny_pipeline(), img, mask, c);
  auto measure = [&] {
    double sum = 0;
    for (uint64_t s = 0; s < 4; ++s) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + s);
      torch::NoGradGuard no_grad;
      sum += trainer.step_loss(1, gen).second.fg;
    }
    return sum;
  };
  const double before = measure();
  Concept concept = trainer.train();
  const double after = measure();
  std::printf("  L_fg on 4 fixed draws: %.4f -> %.4f\n", before, after);
  EXPECT_LT(after, before);
  EXPECT_TRUE(concept.lora.modules.empty());  // stage I only
  EXPECT_EQ(concept.vector.size(0), tiny_pipeline().config().text.width);
}

TEST(SingleInsert, ResumedTrainingEqualsUninterrupted) {
  auto [img, mask] = scene();
  const auto dir = std::filesystem::temp_directory_path() / "sine_test_insert_resume";
  std::filesystem::remove_all(dir);
  SingleInsertConfig c = small_config();
  c.stage1_steps = 2;
  c.stage2_steps = 2;
  Concept full = SingleInsertTrainer(tiny_pipeline(), img, mask, c).train();
  c.checkpoint_dir = dir.string();
  {
    SingleInsertTrainer first(tiny_pipeline(), img, mask, c);
    first.run_stage1();
    first.run_stage2(1);  // interrupted in stage II
  }
  Concept resumed = SingleInsertTrainer(tiny_pipeline(), img, mask, c).train();
  EXPECT_LT(max_diff(full.vector, resumed.vector), 1e-5);
  ASSERT_EQ(full.lora.modules.size(), resumed.lora.modules.size());
  for (const auto& [name, m] : full.lora.modules)
    EXPECT_LT(max_diff(m.up, resumed.lora.modules.at(name).up), 1e-6) << name;
  std::filesystem::remove_all(dir);
}

Concept fake_concept(uint64_t seed, const std::string& token) {
  auto model = tiny_pipeline().model();
  LoRAConfig lc;
  lc.name = "tmp";
  lc.seed = seed;
  auto net = LoRANetwork::attach(model, lc);
  {
    torch::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    for (auto& [name, t] : net.parameters()) t.copy_(torch::randn(t.sizes(), gen) * 0.1);
  }
  Concept c;
  c.class_word = "cube";
  c.token = token;
  c.vector = torch::randn({tiny_pipeline().config().text.width});
  c.lora = net.weights();
  net.remove();
  c.info = {{"base_model", "tiny"}};
  return c;
}

TEST(SingleInsert, ConceptFileAndEmbeddingRoundTrip) {
  const auto dir = std::filesystem::temp_directory_path() / "sine_test_concepts";
  std::filesystem::create_directories(dir);
  Concept c = fake_concept(21, "*");
  const std::string path = (dir / "c.safetensors").string();
  save_concept(path, c);
  Concept back = load_concept(path);
  EXPECT_EQ(back.class_word, "cube");
  EXPECT_EQ(back.token, "*");
  EXPECT_EQ(back.info.at("base_model"), "tiny");
  EXPECT_EQ(max_diff(back.vector, c.vector), 0.0);
  ASSERT_EQ(back.lora.modules.size(), c.lora.modules.size());
  for (const auto& [name, m] : c.lora.modules) {
    EXPECT_EQ(max_diff(m.down, back.lora.modules.at(name).down), 0.0);
    EXPECT_EQ(max_diff(m.up, back.lora.modules.at(name).up), 0.0);
  }
  const std::string emb = (dir / "emb.safetensors").string();
  export_embedding(emb, c);
  auto tensors = load_safetensors(emb);
  ASSERT_TRUE(tensors.count("emb_params"));
  EXPECT_EQ(tensors.at("emb_params").sizes(), (std::vector<int64_t>{1, c.vector.size(0)}));
  EXPECT_EQ(max_diff(import_embedding(emb, c.vector.size(0)), c.vector), 0.0);
  EXPECT_THROW(import_embedding(emb, c.vector.size(0) + 1), Error);
  EXPECT_THROW(load_concept(emb), Error);
  std::filesystem::remove_all(dir);
}

TEST(SingleInsert, CompositionSumsTheConceptsDeltas) {
  auto model = tiny_pipeline().model();
  Concept a = fake_concept(31, "*1"), b = fake_concept(32, "*2");
  auto nets = attach_concepts(model, {a, b}, {0.6, 0.9});
  ASSERT_EQ(nets.size(), 2u);
  const std::string key = "model.diffusion_model.output_blocks.3.1.transformer_blocks.0.attn2.to_v";
  AdaptableLinear linear{nullptr};
  for (const auto& item : model->named_modules("", false))
    if (item.key() == key) linear = AdaptableLinear(std::dynamic_pointer_cast<AdaptableLinearImpl>(item.value()));
  ASSERT_TRUE(linear);
  const auto& ma = a.lora.modules.at(key);
  const auto& mb = b.lora.modules.at(key);
  torch::Tensor expected = 0.6 * torch::matmul(ma.up, ma.down) + 0.9 * torch::matmul(mb.up, mb.down);
  EXPECT_LT(max_diff(linear->adapter_delta(), expected), 1e-6);
  // Each concept's token gets its own vector in one prompt.
  PlaceholderPrompt p = tokenize_with_placeholders(tiny_pipeline().tokenizer(), "*1 cube and *2 cube", {"*1", "*2"});
  torch::Tensor both = encode_concept_prompt(tiny_pipeline(), "*1 cube and *2 cube", {a, b});
  torch::NoGradGuard no_grad;
  torch::Tensor direct = encode_with_override(model->text_encoder, p, {a.vector, b.vector});
  EXPECT_LT(max_diff(both, direct), 1e-6);
  for (auto& n : nets) n.remove();
  EXPECT_TRUE(linear->adapters.empty());
}

TEST(SingleInsert, GenerateWithConceptsAndAttentionMask) {
  Pipeline& pipe = tiny_pipeline();
  Concept c = fake_concept(41, "*");
  GenerateOptions o;
  o.prompt = "* cube on the left side";
  o.steps = 2;
  o.seed = 3;
  torch::Tensor img = generate_with_concepts(pipe, {c}, o);
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{128, 128, 3}));
  EXPECT_EQ(img.scalar_type(), torch::kUInt8);
  // Batched: each prompt/seed equals its own run.
  auto batch = generate_batch_with_concepts(pipe, {c}, {"* cube in the center", o.prompt}, {9, 3}, 2, o.cfg_scale);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_LE(max_diff(batch[1].to(torch::kFloat32), img.to(torch::kFloat32)), 2.0);

  auto [scene_img, mask] = scene();
  torch::Tensor m = attention_mask(pipe, scene_img, "cube");
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{1, 1, 128, 128}));
  EXPECT_GT(m.sum().item<double>(), 0);
  EXPECT_LT(m.sum().item<double>(), 128 * 128);
  EXPECT_EQ(pipe.model()->unet->attention_hook(), nullptr);  // hook removed again
}

}  // namespace
}  // namespace sine
