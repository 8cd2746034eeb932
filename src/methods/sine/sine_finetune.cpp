#include "methods/sine/sine_finetune.h"

#include <filesystem>
#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "diffusion/noise_schedule.h"
#include "io/image.h"
#include "methods/sine/sine_model.h"
#include "models/lora.h"

namespace sine {

SineMode parse_sine_mode(const std::string& name) {
  if (name == "whole") return SineMode::Whole;
  if (name == "patch") return SineMode::Patch;
  throw Error("mode: unknown SINE mode '" + name + "' (use whole or patch)");
}

const char* sine_mode_name(SineMode mode) { return mode == SineMode::Patch ? "patch" : "whole"; }

std::string sine_training_prompt(const std::string& prompt_template, const std::string& class_word) {
  const std::string key = "{class}";
  std::string out = prompt_template;
  const auto pos = out.find(key);
  if (pos == std::string::npos)
    throw Error("prompt_template: \"" + prompt_template + "\" has no {class} placeholder");
  out.replace(pos, key.size(), class_word);
  return out;
}

int64_t default_grid_size(const Pipeline& pipeline) { return 2 * pipeline.config().unet.sample_size; }

SineFinetuner::SineFinetuner(Pipeline& pipeline, const torch::Tensor& image_u8, SineFinetuneConfig config)
    : pipeline_(pipeline), config_(std::move(config)) {
  if (!image_u8.defined() || image_u8.dim() != 3 || image_u8.size(2) != 3 || image_u8.scalar_type() != torch::kUInt8)
    throw Error("sine finetune: the input image must be uint8 [H, W, 3]");
  if (config_.class_word.empty()) throw Error("class_word: must not be empty");
  if (config_.steps < 1) throw Error("steps: must be at least 1 (got " + std::to_string(config_.steps) + ")");
  if (!(config_.lr > 0)) throw Error("lr: must be positive");
  if (config_.recon_weight < 0) throw Error("recon_weight: must not be negative");
  prompt_ = sine_training_prompt(config_.prompt_template, config_.class_word);
  tokens_ = pipeline_.tokenize(prompt_);

  StableDiffusion& model = pipeline_.model();
  const int64_t size = pipeline_.native_size();
  if (config_.mode == SineMode::Patch) {
    if (config_.grid_size <= 0) config_.grid_size = default_grid_size(pipeline_);
    grid_.emplace(PositionalGridConfig{model->config.unet.model_channels, config_.grid_size,
                                       config_.grid_interpolation});
    sampler_.emplace(image_u8, size, config_.grid_size, config_.min_patch_fraction);
  } else {
    config_.grid_size = 0;
    image_ = resize_rgb(image_u8, size, size);
  }

  // VAE frozen; UNet and text encoder trainable (or only LoRA adapters on them).
  for (auto& p : model->vae->parameters()) p.requires_grad_(false);
  NamedTensors params;
  if (config_.lora_rank > 0) {
    for (auto& p : model->parameters()) p.requires_grad_(false);
    LoRAConfig lc;
    lc.rank = config_.lora_rank;
    lc.name = "sine";
    lc.seed = config_.seed;
    lora_ = std::make_unique<LoRANetwork>(LoRANetwork::attach(model, lc));
    params = lora_->parameters();
  } else {
    torch::NoGradGuard no_grad;
    base_fingerprint_ = weights_fingerprint(model);
    for (const auto& item_ : model->unet->named_parameters()) {
      const std::string& name = item_.key();
      const torch::Tensor& p = item_.value();
      params.emplace_back(StableDiffusionImpl::kUNetPrefix + name, p);
      base_[StableDiffusionImpl::kUNetPrefix + name] = p.detach().to(torch::kCPU).clone();
    }
    for (const auto& item_ : model->text_encoder->named_parameters()) {
      const std::string& name = item_.key();
      const torch::Tensor& p = item_.value();
      params.emplace_back(StableDiffusionImpl::kTextPrefix + name, p);
      base_[StableDiffusionImpl::kTextPrefix + name] = p.detach().to(torch::kCPU).clone();
    }
  }
  model->unet->set_gradient_checkpointing(config_.gradient_checkpointing);
  model->unet->train();
  model->text_encoder->train();
  model->vae->eval();

  TrainConfig tc;
  tc.steps = config_.steps;
  tc.lr = config_.lr;
  tc.weight_decay = config_.weight_decay;
  tc.grad_clip = config_.grad_clip;
  tc.seed = config_.seed;
  tc.checkpoint_path = config_.checkpoint_path;
  tc.checkpoint_every = config_.checkpoint_every;
  tc.master_weights = config_.master_weights;
  tc.optimizer_state = config_.optimizer_state;
  tc.log_every = 10;
  tc.label = std::string("sine finetune (") + sine_mode_name(config_.mode) + ")";
  trainer_ = std::make_unique<Trainer>(std::move(params), tc);
}

SineFinetuner::~SineFinetuner() = default;

const LoRANetwork* SineFinetuner::lora() const { return lora_.get(); }

NamedTensors SineFinetuner::trained_parameters() const { return trainer_->parameters(); }

SineLossParts SineFinetuner::loss(torch::Generator& gen) {
  StableDiffusion& model = pipeline_.model();
  const torch::Device device = pipeline_.device();
  SineLossParts out;
  torch::Tensor image, grid;
  if (sampler_) {
    PatchSample s = sampler_->sample(gen);
    image = s.image;
    out.box = s.box;
  } else {
    image = image_;
  }
  // latent = scale × a posterior sample (VAE frozen, no graph).
  torch::Tensor x0 = pipeline_.encode_image(image, gen);
  const int64_t h = x0.size(2), w = x0.size(3);
  if (grid_) grid = grid_->crop(out.box, h, w, torch::TensorOptions().device(device).dtype(pipeline_.dtype()));

  torch::Tensor t = sample_timesteps(1, gen);
  torch::Tensor noise = torch::randn(x0.sizes(), gen, torch::kFloat32).to(device);
  out.t = t.item<int64_t>();
  t = t.to(device);
  torch::Tensor x_t = add_noise(x0, noise, t);

  torch::Tensor context = model->text_encoder->encode(tokens_).last_hidden_state;
  torch::Tensor eps = model->unet->forward(x_t.to(pipeline_.dtype()), t, context, grid).to(torch::kFloat32);
  out.eps_loss = epsilon_loss(eps, noise);
  out.total = out.eps_loss;
  if (config_.mode == SineMode::Patch && config_.recon_weight > 0) {
    // (t/1000)² · mean|x̂0 − x0| with x̂0 from the predicted ε (ddpm.py scale_recon_loss).
    torch::Tensor x0_pred = pred_x0_from_eps(x_t, eps, t);
    const double wt = static_cast<double>(out.t) / 1000.0;
    out.recon_loss = (x0_pred - x0).abs().mean() * (wt * wt);
    out.total = out.total + config_.recon_weight * out.recon_loss;
  } else {
    out.recon_loss = torch::zeros({}, torch::kFloat32);
  }
  return out;
}

nlohmann::json sine_finetune_identity(const torch::Tensor& image_u8, const SineFinetuneConfig& c,
                                      const std::string& base_model) {
  auto bytes = image_u8.contiguous();
  const auto* p = static_cast<const uint8_t*>(bytes.data_ptr());
  uint64_t h = 1469598103934665603ULL;  // FNV-1a of the pixels
  for (size_t i = 0; i < bytes.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ULL;
  return {{"image", std::to_string(h)},
          {"prompt", sine_training_prompt(c.prompt_template, c.class_word)},
          {"mode", sine_mode_name(c.mode)},
          {"lr", c.lr},
          {"seed", c.seed},
          {"lora", c.lora_rank},
          {"grid_interp", grid_interpolation_name(c.grid_interpolation)},
          {"recon_weight", c.recon_weight},
          {"model", base_model}};
}

void claim_sine_checkpoint(const SineFinetuneConfig& c, const nlohmann::json& identity, bool fresh) {
  if (c.checkpoint_path.empty()) return;
  const std::string identity_path = c.checkpoint_path + ".json";
  if (fresh) {
    std::filesystem::remove(c.checkpoint_path);
    std::filesystem::remove(identity_path);
  }
  if (std::filesystem::exists(c.checkpoint_path)) {
    std::ifstream in(identity_path);
    nlohmann::json saved = nlohmann::json::parse(in, nullptr, false);
    if (saved.is_discarded() || saved != identity)
      throw Error("checkpoint: " + c.checkpoint_path +
                  " belongs to another fine-tuning run (image, prompt, mode or hyper-parameters differ); "
                  "start fresh to overwrite it");
  }
  write_atomically(identity_path, [&](const std::string& tmp) {
    std::ofstream out(tmp);
    out << identity.dump(2) << "\n";
    if (!out) throw Error(identity_path + ": cannot write");
  });
}

bool SineFinetuner::resume() {
  if (config_.checkpoint_path.empty()) return false;
  return trainer_->resume(config_.checkpoint_path);
}

void SineFinetuner::train(int64_t stop_at) {
  pipeline_.model()->unet->train();
  pipeline_.model()->text_encoder->train();
  trainer_->run([&](int64_t, torch::Generator& gen) { return loss(gen).total; }, stop_at);
  // The last step's gradients are not needed (a next step starts without them); for a full fine-tune
  // they are a second copy of the model's size, held through the save otherwise.
  for (auto& [name, p] : trainer_->parameters()) p.mutable_grad() = torch::Tensor();
  pipeline_.model()->unet->eval();
  pipeline_.model()->text_encoder->eval();
}

}  // namespace sine
