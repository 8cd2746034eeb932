#include "world/trainer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>

#include "core/error.h"
#include "diffusion/noise_schedule.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "tokenizer/bpe_trainer.h"
#include "world/caption.h"
#include "world/render.h"

namespace sine::world {

namespace fs = std::filesystem;

namespace {

// Training scene seeds lie below 2^62, evaluation seeds at or above 2^63.
constexpr int64_t kTrainSeedLimit = int64_t(1) << 62;
constexpr uint64_t kEvalSeedBase = uint64_t(1) << 63;

// Independent streams per stage from one user seed.
uint64_t stage_seed(uint64_t seed, uint64_t stage) { return seed * 0x9E3779B97F4A7C15ull + stage; }

NamedTensors parameters_with_prefixes(StableDiffusion& model, const std::vector<std::string>& prefixes) {
  NamedTensors out;
  for (const auto& item : model->named_parameters()) {
    for (const auto& prefix : prefixes)
      if (item.key().rfind(prefix, 0) == 0) out.emplace_back(item.key(), item.value());
  }
  return out;
}

TrainConfig stage_train_config(const StageConfig& stage, const WorldTrainOptions& options, const std::string& label,
                               const std::string& checkpoint, uint64_t seed) {
  TrainConfig c;
  c.steps = stage.steps;
  c.lr = stage.lr;
  c.warmup_steps = stage.warmup_steps;
  c.min_lr_ratio = stage.min_lr_ratio;
  c.ema_decay = stage.ema_decay;
  c.grad_clip = stage.grad_clip;
  c.checkpoint_every = options.checkpoint_every;
  c.checkpoint_path = checkpoint;
  c.seed = seed;
  c.label = label;
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

ModelConfig shapes_model_config(int64_t vocab_size) {
  ModelConfig c;
  c.vae.ch = 32;
  c.vae.ch_mult = {1, 2, 2};
  c.vae.num_res_blocks = 1;
  c.vae.norm_groups = 8;

  c.unet.model_channels = 32;
  c.unet.channel_mult = {1, 2, 2};
  c.unet.num_res_blocks = 1;
  c.unet.attention_levels = {0, 1};
  c.unet.num_heads = 4;
  c.unet.context_dim = 64;
  c.unet.norm_groups = 8;
  c.unet.sample_size = 16;

  c.text.vocab_size = vocab_size;
  c.text.width = 64;
  c.text.layers = 2;
  c.text.heads = 4;
  c.text.mlp_width = 256;
  c.text.context_length = 77;
  return c;
}

SceneBatch render_batch(const std::vector<uint64_t>& seeds, int64_t height, int64_t width, SceneSampling sampling) {
  sampling.aspect = static_cast<float>(width) / static_cast<float>(height);
  SceneBatch batch;
  std::vector<torch::Tensor> images;
  for (uint64_t seed : seeds) {
    std::mt19937_64 rng(seed);
    Scene scene = sample_scene(rng, sampling);
    batch.captions.push_back(caption(scene));
    images.push_back(to_model_input(render_scene(scene, height, width)));
  }
  batch.images = torch::cat(images);
  return batch;
}

std::vector<std::pair<int64_t, int64_t>> parse_buckets(const std::string& text, int64_t factor) {
  std::vector<std::pair<int64_t, int64_t>> out;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    long long w = 0, h = 0;
    char x = 0, rest = 0;
    if (std::sscanf(item.c_str(), " %lld %c %lld %c", &w, &x, &h, &rest) != 3 || (x != 'x' && x != 'X'))
      throw Error("buckets: '" + item + "' is not WIDTHxHEIGHT (e.g. 64x64,128x64)");
    if (w < factor || h < factor || w % factor || h % factor || w > 1024 || h > 1024)
      throw Error("buckets: " + item + " must have sides that are multiples of " + std::to_string(factor) +
                  " between " + std::to_string(factor) + " and 1024");
    out.emplace_back(h, w);
  }
  if (out.empty()) throw Error("buckets: no bucket given");
  return out;
}

std::vector<uint64_t> eval_seeds(int64_t count, uint64_t offset) {
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < count; ++i) seeds.push_back(kEvalSeedBase + offset + static_cast<uint64_t>(i));
  return seeds;
}

ShapesWorldTrainer::ShapesWorldTrainer(WorldTrainOptions options) : options_(std::move(options)) {
  if (options_.work_dir.empty()) throw Error("world train: --work-dir must not be empty");
  fs::create_directories(options_.work_dir);
  build_tokenizer();
  ModelConfig config = options_.architecture(tokenizer_->vocab_size());
  const int64_t factor = config.vae.downsample_factor();
  if (options_.image_size % factor != 0 || options_.image_size / factor != config.unet.sample_size)
    throw Error("world train: image size " + std::to_string(options_.image_size) + " does not match the model (" +
                std::to_string(config.unet.sample_size) + " latents x VAE factor " + std::to_string(factor) + ")");
  // Module initialization draws from LibTorch's global generator.
  torch::manual_seed(stage_seed(options_.seed, 0));
  model_ = StableDiffusion(config);
  model_->to(options_.device);
}

ShapesWorldTrainer::~ShapesWorldTrainer() = default;

std::string ShapesWorldTrainer::path_in_work_dir(const std::string& name) const {
  return (fs::path(options_.work_dir) / name).string();
}

void ShapesWorldTrainer::build_tokenizer() {
  const std::string dir = path_in_work_dir("tokenizer");
  if (fs::exists(fs::path(dir) / "vocab.json")) {
    tokenizer_ = std::make_shared<ClipTokenizer>(ClipTokenizer::from_dir(dir));
    return;
  }
  std::mt19937_64 rng(stage_seed(options_.seed, 1));
  std::vector<std::string> corpus;
  for (int64_t i = 0; i < options_.tokenizer_captions; ++i) corpus.push_back(caption(sample_scene(rng, options_.scenes)));
  tokenizer_ = std::make_shared<ClipTokenizer>(train_bpe(corpus, options_.bpe_merges));
  fs::create_directories(dir);
  tokenizer_->save_vocab_merges(dir);
}

std::vector<uint64_t> ShapesWorldTrainer::draw_seeds(int64_t count, torch::Generator& gen) const {
  torch::Tensor draws = torch::randint(0, kTrainSeedLimit, {count}, gen, torch::kInt64);
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < count; ++i) seeds.push_back(static_cast<uint64_t>(draws[i].item<int64_t>()));
  return seeds;
}

// Posterior samples (with `gen`) or means (without), unscaled.
torch::Tensor ShapesWorldTrainer::encode_latents(const torch::Tensor& images, torch::Generator* gen) {
  DiagonalGaussian posterior = model_->vae->encode(images.to(options_.device));
  if (!gen) return posterior.mean;
  torch::Tensor noise = torch::randn(posterior.mean.sizes(), *gen, torch::kFloat32);
  return posterior.mean + posterior.std * noise.to(posterior.mean.options());
}

// LDM's autoencoder loss without its perceptual and adversarial terms: L1 + kl_weight * KL,
// both summed over pixels as in LDM, then divided by the pixel count so the loss reads per pixel.
torch::Tensor ShapesWorldTrainer::vae_loss(torch::Generator& gen) {
  SceneBatch batch = render_batch(draw_seeds(options_.vae.batch, gen), options_.image_size, options_.scenes);
  torch::Tensor x = batch.images.to(options_.device);
  DiagonalGaussian posterior = model_->vae->encode(x);
  torch::Tensor noise = torch::randn(posterior.mean.sizes(), gen, torch::kFloat32).to(posterior.mean.options());
  torch::Tensor reconstruction = model_->vae->decode(posterior.mean + posterior.std * noise);
  const double pixels = static_cast<double>(x[0].numel());
  return (reconstruction - x).abs().mean() + options_.kl_weight * posterior.kl().mean() / pixels;
}

torch::Tensor ShapesWorldTrainer::diffusion_loss(torch::Generator& gen) {
  int64_t b = options_.diffusion.batch, height = options_.image_size, width = options_.image_size;
  if (!options_.buckets.empty()) {
    const auto& buckets = options_.buckets;
    std::tie(height, width) = buckets[torch::randint(0, static_cast<int64_t>(buckets.size()), {1}, gen).item<int64_t>()];
    const double base = static_cast<double>(options_.image_size * options_.image_size);
    b = std::max<int64_t>(1, std::llround(static_cast<double>(b) * base / static_cast<double>(height * width)));
  }
  SceneBatch batch = render_batch(draw_seeds(b, gen), height, width, options_.scenes);
  torch::Tensor dropped = torch::rand({b}, gen, torch::kFloat32) < options_.caption_dropout;
  for (int64_t i = 0; i < b; ++i)
    if (dropped[i].item<bool>()) batch.captions[i] = "";
  torch::Tensor ids = tokenizer_->encode_batch(batch.captions, model_->config.text.context_length).to(options_.device);
  torch::Tensor z;
  {
    torch::NoGradGuard no_grad;
    z = encode_latents(batch.images, &gen) * model_->config.vae.scaling_factor;
  }
  torch::Tensor t = sample_timesteps(b, gen, options_.device);
  torch::Tensor noise = torch::randn(z.sizes(), gen, torch::kFloat32);
  if (options_.offset_noise > 0)
    noise = noise + options_.offset_noise * torch::randn({b, z.size(1), 1, 1}, gen, torch::kFloat32);
  noise = noise.to(z.options());
  torch::Tensor context = model_->text_encoder->forward(ids);
  torch::Tensor eps = model_->unet->forward(add_noise(z, noise, t), t, context);
  return epsilon_loss(eps, noise);
}

void ShapesWorldTrainer::ensure_vae_trainer() {
  if (vae_) return;
  vae_ = std::make_unique<Trainer>(
      parameters_with_prefixes(model_, {StableDiffusionImpl::kVAEPrefix}),
      stage_train_config(options_.vae, options_, "vae", path_in_work_dir("vae.ckpt.safetensors"),
                         stage_seed(options_.seed, 2)));
  vae_->resume(vae_->config().checkpoint_path);
}

const Trainer& ShapesWorldTrainer::vae_trainer() {
  ensure_vae_trainer();
  return *vae_;
}

void ShapesWorldTrainer::train_vae(int64_t stop_at) {
  ensure_vae_trainer();
  model_->vae->train();
  vae_->run([&](int64_t, torch::Generator& gen) { return vae_loss(gen); }, stop_at);
  model_->vae->eval();
}

void ShapesWorldTrainer::require_finished_vae() {
  ensure_vae_trainer();
  if (vae_->step() < options_.vae.steps)
    throw Error("world train: the VAE stage is at step " + std::to_string(vae_->step()) + " of " +
                std::to_string(options_.vae.steps) + " (" + vae_->config().checkpoint_path +
                "); finish it before the diffusion stage");
}

double ShapesWorldTrainer::measure_latent_scale() {
  require_finished_vae();
  torch::NoGradGuard no_grad;
  model_->vae->eval();
  SceneBatch batch = render_batch(eval_seeds(options_.eval_images), options_.image_size, options_.scenes);
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(stage_seed(options_.seed, 3));
  const double spread = encode_latents(batch.images, &gen).to(torch::kFloat64).std().item<double>();
  if (!(spread > 0) || !std::isfinite(spread))
    throw Error("world train: the VAE's latents have no spread (std " + std::to_string(spread) + ")");
  model_->config.vae.scaling_factor = 1.0 / spread;
  scale_measured_ = true;
  return 1.0 / spread;
}

void ShapesWorldTrainer::ensure_diffusion_trainer() {
  if (diffusion_) return;
  require_finished_vae();
  if (!scale_measured_) measure_latent_scale();
  diffusion_ = std::make_unique<Trainer>(
      parameters_with_prefixes(model_, {StableDiffusionImpl::kUNetPrefix, StableDiffusionImpl::kTextPrefix}),
      stage_train_config(options_.diffusion, options_, "unet+text", path_in_work_dir("diffusion.ckpt.safetensors"),
                         stage_seed(options_.seed, 4)));
  diffusion_->resume(diffusion_->config().checkpoint_path);
}

const Trainer& ShapesWorldTrainer::diffusion_trainer() {
  ensure_diffusion_trainer();
  return *diffusion_;
}

void ShapesWorldTrainer::train_diffusion(int64_t stop_at) {
  ensure_diffusion_trainer();
  model_->vae->eval();
  model_->unet->train();
  model_->text_encoder->train();
  diffusion_->run([&](int64_t, torch::Generator& gen) { return diffusion_loss(gen); }, stop_at);
  model_->unet->eval();
  model_->text_encoder->eval();
}

VAEEval ShapesWorldTrainer::evaluate_vae() {
  torch::NoGradGuard no_grad;
  model_->vae->eval();
  SceneBatch batch = render_batch(eval_seeds(options_.eval_images), options_.image_size, options_.scenes);
  torch::Tensor x = batch.images.to(options_.device);
  torch::Tensor y = model_->vae->decode(encode_latents(x, nullptr)).clamp(-1, 1);
  torch::Tensor diff = (y - x).to(torch::kFloat64) / 2;  // pixels in [0, 1]
  VAEEval e;
  e.l1 = diff.abs().mean().item<double>();
  e.psnr = -10.0 * std::log10(diff.pow(2).mean().item<double>());
  return e;
}

DiffusionEval ShapesWorldTrainer::evaluate_diffusion() {
  ensure_diffusion_trainer();
  torch::NoGradGuard no_grad;
  model_->eval();
  // The exported weights are the EMA: evaluate those, then put the trained ones back.
  NamedTensors saved;
  if (diffusion_->ema()) {
    for (const auto& [name, p] : diffusion_->parameters()) saved.emplace_back(name, p.detach().clone());
    diffusion_->ema()->copy_to(diffusion_->parameters());
  }
  SceneBatch batch = render_batch(eval_seeds(options_.eval_images), options_.image_size, options_.scenes);
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(stage_seed(options_.seed, 5));
  torch::Tensor z = encode_latents(batch.images, &gen) * model_->config.vae.scaling_factor;
  const int64_t b = z.size(0);
  torch::Tensor t = sample_timesteps(b, gen, options_.device);
  torch::Tensor noise = torch::randn(z.sizes(), gen, torch::kFloat32).to(z.options());
  torch::Tensor x_t = add_noise(z, noise, t);
  auto loss_with = [&](const std::vector<std::string>& prompts) {
    torch::Tensor ids = tokenizer_->encode_batch(prompts, model_->config.text.context_length).to(options_.device);
    return epsilon_loss(model_->unet->forward(x_t, t, model_->text_encoder->forward(ids)), noise).item<double>();
  };
  DiffusionEval e;
  e.loss = loss_with(batch.captions);
  e.loss_empty_prompt = loss_with(std::vector<std::string>(batch.captions.size(), ""));
  for (size_t i = 0; i < saved.size(); ++i) diffusion_->parameters()[i].second.copy_(saved[i].second);
  return e;
}

void ShapesWorldTrainer::save_model(const std::string& path) {
  ensure_diffusion_trainer();
  const ParameterEMA* ema = diffusion_->ema();
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& item : model_->named_parameters()) {
    const bool averaged = ema && item.key().rfind(StableDiffusionImpl::kVAEPrefix, 0) != 0;
    torch::Tensor value = (averaged ? ema->get(item.key()) : item.value()).detach().to(torch::kCPU);
    tensors[item.key()] = options_.fp16_output ? value.to(torch::kFloat16) : value.to(torch::kFloat32);
  }
  nlohmann::json training = {
      {"seed", options_.seed},
      {"image_size", options_.image_size},
      {"buckets", options_.buckets},
      {"backgrounds", {{"gradient", options_.scenes.p_gradient}, {"checkered", options_.scenes.p_checkered},
                       {"striped", options_.scenes.p_striped_background}, {"dotted", options_.scenes.p_dotted_background},
                       {"noisy", options_.scenes.p_noisy_background}, {"split", options_.scenes.p_split_background}}},
      {"vae", {{"steps", vae_trainer().step()}, {"batch", options_.vae.batch}, {"lr", options_.vae.lr},
               {"kl_weight", options_.kl_weight}}},
      {"diffusion", {{"steps", diffusion_->step()}, {"batch", options_.diffusion.batch},
                     {"lr", options_.diffusion.lr}, {"ema_decay", options_.diffusion.ema_decay},
                     {"warmup_steps", options_.diffusion.warmup_steps},
                     {"caption_dropout", options_.caption_dropout}, {"offset_noise", options_.offset_noise}}},
      {"latent_std", 1.0 / model_->config.vae.scaling_factor}};
  save_checkpoint(path, tensors, model_->config,
                  {{"sine.method", "shapes-world base model"},
                   {"sine.version", SINE_VERSION},
                   {"sine.training", training.dump()},
                   {"sine.tokenizer.vocab", tokenizer_->vocab_json_text()},
                   {"sine.tokenizer.merges", tokenizer_->merges_txt_text()}});
}

void train_shapes_world(const WorldTrainOptions& options, bool vae_only) {
  ShapesWorldTrainer trainer(options);
  std::fprintf(stderr, "tokenizer: %lld tokens\n", static_cast<long long>(trainer.tokenizer().vocab_size()));

  auto start = std::chrono::steady_clock::now();
  int64_t before = trainer.vae_trainer().step();
  trainer.train_vae();
  int64_t done = trainer.vae_trainer().step() - before;
  VAEEval vae = trainer.evaluate_vae();
  std::fprintf(stderr, "vae: %lld steps in %.0fs (%.2f steps/s); held-out L1 %.4f, PSNR %.2f dB\n",
               static_cast<long long>(done), seconds_since(start), done / std::max(1e-9, seconds_since(start)),
               vae.l1, vae.psnr);
  if (vae_only) return;

  std::fprintf(stderr, "latent scale: %.5f\n", trainer.measure_latent_scale());
  start = std::chrono::steady_clock::now();
  before = trainer.diffusion_trainer().step();
  trainer.train_diffusion();
  done = trainer.diffusion_trainer().step() - before;
  const double seconds = seconds_since(start);
  const DiffusionEval eval = trainer.evaluate_diffusion();
  std::fprintf(stderr,
               "unet+text: %lld steps in %.0fs (%.2f steps/s); held-out eps-loss %.4f with captions, %.4f with "
               "empty prompts (text lowers it %.1f%%)\n",
               static_cast<long long>(done), seconds, done / std::max(1e-9, seconds), eval.loss,
               eval.loss_empty_prompt, 100.0 * (1.0 - eval.loss / eval.loss_empty_prompt));
  trainer.save_model(options.output);
  std::fprintf(stderr, "wrote %s\n", options.output.c_str());
}

}  // namespace sine::world
