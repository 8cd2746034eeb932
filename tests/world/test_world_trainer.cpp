#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "pipeline/pipeline.h"
#include "world/trainer.h"

namespace fs = std::filesystem;
using namespace sine;

namespace {

// The shapes architecture shrunk to milliseconds per step: 16x16 images, VAE factor 2.
ModelConfig micro_config(int64_t vocab_size) {
  ModelConfig c = world::shapes_model_config(vocab_size);
  c.vae.ch = 8;
  c.vae.ch_mult = {1, 2};
  c.vae.norm_groups = 4;
  c.unet.model_channels = 8;
  c.unet.channel_mult = {1, 2};
  c.unet.attention_levels = {1};
  c.unet.num_heads = 2;
  c.unet.context_dim = 16;
  c.unet.norm_groups = 4;
  c.unet.sample_size = 8;
  c.text.width = 16;
  c.text.layers = 1;
  c.text.heads = 2;
  c.text.mlp_width = 32;
  return c;
}

world::WorldTrainOptions micro_options(const fs::path& dir) {
  world::WorldTrainOptions o;
  o.work_dir = dir.string();
  o.output = (dir / "model.safetensors").string();
  o.seed = 3;
  o.image_size = 16;
  o.tokenizer_captions = 300;
  o.bpe_merges = 150;
  o.vae = {6, 2, 1e-3, 2, 0.5, 0, 1.0};
  o.diffusion = {6, 2, 1e-3, 2, 0.5, 0.9, 1.0};
  o.checkpoint_every = 2;
  o.eval_images = 4;
  o.fp16_output = false;
  o.architecture = micro_config;
  return o;
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("sine_test_world_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

struct Quiet : ::testing::Environment {
  void SetUp() override { set_progress_enabled(false); }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

}  // namespace

TEST(WorldTrainer, StoppedAndResumedStagesEqualAnUninterruptedRun) {
  fs::path straight_dir = temp_dir("straight"), stopped_dir = temp_dir("stopped");
  std::vector<double> vae_losses, diffusion_losses;
  {
    world::ShapesWorldTrainer t(micro_options(straight_dir));
    t.train_vae();
    t.train_diffusion();
    t.save_model(t.options().output);
    vae_losses = t.vae_trainer().loss_history();
    diffusion_losses = t.diffusion_trainer().loss_history();
  }
  ASSERT_EQ(vae_losses.size(), 6u);
  ASSERT_EQ(diffusion_losses.size(), 6u);

  // Each object stands for a new process started after the previous one stopped.
  const world::WorldTrainOptions o = micro_options(stopped_dir);
  { world::ShapesWorldTrainer(o).train_vae(3); }
  {
    world::ShapesWorldTrainer t(o);
    t.train_vae();
    EXPECT_EQ(t.vae_trainer().loss_history(), vae_losses);
    t.train_diffusion(4);
  }
  world::ShapesWorldTrainer t(o);
  EXPECT_EQ(t.diffusion_trainer().step(), 4);
  t.train_diffusion();
  EXPECT_EQ(t.diffusion_trainer().loss_history(), diffusion_losses);
  t.save_model(o.output);

  auto a = load_safetensors(micro_options(straight_dir).output);
  auto b = load_safetensors(o.output);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [key, tensor] : a) EXPECT_TRUE(torch::equal(tensor, b.at(key))) << key;
  fs::remove_all(straight_dir);
  fs::remove_all(stopped_dir);
}

TEST(WorldTrainer, ExportedModelLoadsAsAPipeline) {
  fs::path dir = temp_dir("export");
  world::WorldTrainOptions o = micro_options(dir);
  o.vae.steps = 2;
  o.diffusion.steps = 2;
  o.fp16_output = true;
  double scale = 0;
  {
    world::ShapesWorldTrainer t(o);
    t.train_vae();
    t.train_diffusion();
    scale = t.model()->config.vae.scaling_factor;
    t.save_model(o.output);
  }
  EXPECT_GT(scale, 0);
  EXPECT_NE(scale, 0.18215);

  CheckpointData info = load_checkpoint(o.output);
  EXPECT_EQ(info.tensors.begin()->second.scalar_type(), torch::kFloat16);
  EXPECT_DOUBLE_EQ(info.config.vae.scaling_factor, scale);
  EXPECT_EQ(info.config.unet.num_heads, 2);
  EXPECT_TRUE(info.metadata.count("sine.tokenizer.vocab"));
  EXPECT_TRUE(info.metadata.count("sine.tokenizer.merges"));
  EXPECT_TRUE(info.metadata.count("sine.training"));

  LoadOptions load;
  load.model = o.output;
  Pipeline pipe = Pipeline::load(load);
  EXPECT_EQ(pipe.native_size(), 16);
  const std::string prompt = "a small red star at the top left on a blue background";
  EXPECT_EQ(pipe.tokenizer().encode(prompt, 77), world::ShapesWorldTrainer(o).tokenizer().encode(prompt, 77));
  GenerateOptions g;
  g.prompt = prompt;
  g.steps = 2;
  torch::Tensor image = pipe.generate(g);
  EXPECT_EQ(image.sizes(), (std::vector<int64_t>{16, 16, 3}));
  fs::remove_all(dir);
}

TEST(WorldTrainer, DiffusionStageNeedsAFinishedVAE) {
  fs::path dir = temp_dir("order");
  world::ShapesWorldTrainer t(micro_options(dir));
  t.train_vae(1);
  EXPECT_THROW(t.train_diffusion(), Error);
  fs::remove_all(dir);
}

TEST(WorldTrainer, EvaluationScenesAreNotTrainingScenes) {
  world::SceneSampling sampling;
  auto a = world::render_batch(world::eval_seeds(3), 16, sampling);
  auto b = world::render_batch(world::eval_seeds(3), 16, sampling);
  EXPECT_EQ(a.captions, b.captions);
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_EQ(a.images.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
  EXPECT_GE(a.images.min().item<float>(), -1.0f);
  EXPECT_LE(a.images.max().item<float>(), 1.0f);
  for (uint64_t s : world::eval_seeds(5)) EXPECT_GE(s, uint64_t(1) << 63);
}

TEST(WorldTrainer, ShapesConfigIsTheDocumentedArchitecture) {
  ModelConfig c = world::shapes_model_config(600);
  EXPECT_EQ(c.vae.downsample_factor(), 4);
  EXPECT_EQ(c.unet.sample_size * c.vae.downsample_factor(), 64);
  EXPECT_EQ(c.text.vocab_size, 600);
  EXPECT_EQ(c.unet.context_dim, c.text.width);
}

// Offset noise enters only the diffusion stage's noise: the VAE run is identical, the diffusion
// losses differ, and the exported model says which value it was trained with.
TEST(WorldTrainer, OffsetNoiseChangesOnlyTheDiffusionStageAndIsRecorded) {
  std::vector<double> vae_losses[2], diffusion_losses[2];
  std::string training[2];
  world::DiffusionEval eval;
  for (int i = 0; i < 2; ++i) {
    fs::path dir = temp_dir("offset" + std::to_string(i));
    world::WorldTrainOptions o = micro_options(dir);
    o.offset_noise = i == 0 ? 0.0 : 0.5;
    world::ShapesWorldTrainer t(o);
    t.train_vae();
    t.train_diffusion();
    t.save_model(o.output);
    vae_losses[i] = t.vae_trainer().loss_history();
    diffusion_losses[i] = t.diffusion_trainer().loss_history();
    training[i] = load_checkpoint(o.output).metadata.at("sine.training");
    if (i == 1) eval = t.evaluate_diffusion();
    fs::remove_all(dir);
  }
  EXPECT_EQ(vae_losses[0], vae_losses[1]);
  EXPECT_NE(diffusion_losses[0], diffusion_losses[1]);
  EXPECT_EQ(nlohmann::json::parse(training[0])["diffusion"]["offset_noise"].get<double>(), 0.0);
  EXPECT_EQ(nlohmann::json::parse(training[1])["diffusion"]["offset_noise"].get<double>(), 0.5);
  // Both held-out losses are measured on the same draws; only the prompt differs.
  EXPECT_TRUE(std::isfinite(eval.loss) && std::isfinite(eval.loss_empty_prompt));
  EXPECT_NE(eval.loss, eval.loss_empty_prompt);
}

TEST(WorldTrainer, BucketsTrainOnEveryCanvasAndAreRecorded) {
  EXPECT_EQ(world::parse_buckets("64x64, 128x64,64X96", 4),
            (std::vector<std::pair<int64_t, int64_t>>{{64, 64}, {64, 128}, {96, 64}}));
  EXPECT_THROW(world::parse_buckets("64x62", 4), Error);   // not a multiple of the VAE factor
  EXPECT_THROW(world::parse_buckets("64", 4), Error);
  EXPECT_THROW(world::parse_buckets("64x64x2", 4), Error);
  EXPECT_THROW(world::parse_buckets("", 4), Error);

  fs::path dir = temp_dir("buckets");
  world::WorldTrainOptions o = micro_options(dir);
  o.buckets = world::parse_buckets("16x16,32x16,16x32", 2);
  o.scenes = world::with_textured_backgrounds();
  world::ShapesWorldTrainer t(o);
  t.train_vae();
  t.train_diffusion();
  t.save_model(o.output);
  for (double loss : t.diffusion_trainer().loss_history()) EXPECT_TRUE(std::isfinite(loss));
  const auto training = nlohmann::json::parse(load_checkpoint(o.output).metadata.at("sine.training"));
  EXPECT_EQ(training["buckets"].size(), 3u);
  EXPECT_EQ(training["buckets"][1][1].get<int64_t>(), 32);
  EXPECT_GT(training["backgrounds"]["noisy"].get<double>(), 0.0);
  fs::remove_all(dir);

  // A batch rendered for a wide canvas keeps its objects inside it, laid out for that aspect.
  world::SceneBatch wide = world::render_batch({1, 2, 3}, 16, 48, world::with_textured_backgrounds());
  EXPECT_EQ(wide.images.sizes(), (std::vector<int64_t>{3, 3, 16, 48}));
}
