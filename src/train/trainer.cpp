#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/progress.h"
#include "io/safetensors.h"

namespace sine {

namespace {

// Checkpoint layout: one safetensors file, tensors under these prefixes + the parameter name.
const std::string kParam = "param.";
const std::string kExpAvg = "adamw.exp_avg.";
const std::string kExpAvgSq = "adamw.exp_avg_sq.";
const std::string kAdamStep = "adamw.step.";
const std::string kEma = "ema.";
const std::string kGenerator = "trainer.generator";
const std::string kLosses = "trainer.loss_history";
const std::string kStepMeta = "sine.trainer.step";
const std::string kConfigMeta = "sine.trainer.config";
const std::string kKindMeta = "sine.kind";
const std::string kKind = "trainer_checkpoint";

std::string shape_text(const torch::Tensor& t) { return c10::str(t.sizes()); }

}  // namespace

nlohmann::json TrainConfig::to_json() const {
  return {{"steps", steps},
          {"lr", lr},
          {"weight_decay", weight_decay},
          {"beta1", beta1},
          {"beta2", beta2},
          {"eps", eps},
          {"grad_clip", grad_clip},
          {"ema_decay", ema_decay},
          {"checkpoint_every", checkpoint_every},
          {"seed", seed},
          {"label", label},
          {"warmup_steps", warmup_steps},
          {"min_lr_ratio", min_lr_ratio},
          {"master_weights", master_weights},
          {"optimizer_state", optimizer_state == torch::kBFloat16 ? "bf16" : "fp32"}};
}

Trainer::Trainer(NamedTensors params, TrainConfig config)
    : params_(std::move(params)),
      config_(std::move(config)),
      generator_(at::make_generator<at::CPUGeneratorImpl>(config_.seed)) {
  if (params_.empty()) throw Error(config_.label + ": nothing to train (no parameters)");
  if (config_.lr <= 0) throw Error(config_.label + ": learning rate must be positive");
  if (config_.optimizer_state != torch::kFloat32 && config_.optimizer_state != torch::kBFloat16)
    throw Error(config_.label + ": optimizer state must be fp32 or bf16");
  std::set<std::string> names;
  for (auto& [name, p] : params_) {
    if (!names.insert(name).second) throw Error(config_.label + ": parameter '" + name + "' listed twice");
    if (!p.is_leaf()) throw Error(config_.label + ": parameter '" + name + "' is not a leaf tensor");
    if (!torch::isFloatingType(p.scalar_type()))
      throw Error(config_.label + ": parameter '" + name + "' is not floating point");
    p.requires_grad_(true);
    const bool low = p.scalar_type() != torch::kFloat32 && p.scalar_type() != torch::kFloat64;
    masters_.emplace_back(name, config_.master_weights && low ? p.detach().to(torch::kFloat32).clone() : p);
  }
  states_.resize(params_.size());
  if (config_.ema_decay > 0) ema_ = std::make_unique<ParameterEMA>(masters_, config_.ema_decay);
}

Trainer::~Trainer() = default;

double Trainer::lr_at(int64_t step) const {
  if (config_.warmup_steps > 0 && step < config_.warmup_steps)
    return config_.lr * static_cast<double>(step + 1) / static_cast<double>(config_.warmup_steps);
  if (config_.min_lr_ratio >= 1.0) return config_.lr;
  const int64_t decay_steps = std::max<int64_t>(1, config_.steps - config_.warmup_steps);
  const double progress =
      std::min(1.0, static_cast<double>(step - config_.warmup_steps) / static_cast<double>(decay_steps));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return config_.lr * (config_.min_lr_ratio + (1.0 - config_.min_lr_ratio) * cosine);
}

void Trainer::run(const LossFunction& loss_fn, int64_t stop_at) {
  const int64_t end = stop_at < 0 ? config_.steps : std::min(stop_at, config_.steps);
  if (step_ >= end) return;
  const bool checkpointing = !config_.checkpoint_path.empty();
  const int64_t window = std::max<int64_t>(1, config_.log_every);

  ProgressBar bar(config_.label, end - step_);
  const int64_t first = step_;
  while (step_ < end) {
    // Gradients start undefined each step (not zero), so a parameter the loss did not reach is
    // skipped by AdamW, as torch.optim skips it.
    for (auto& [name, p] : params_) p.mutable_grad() = torch::Tensor();

    torch::Tensor loss = loss_fn(step_, generator_);
    if (!loss.defined() || loss.numel() != 1)
      throw Error(config_.label + ": the loss function must return a scalar tensor");
    const double value = loss.item<double>();
    if (!std::isfinite(value))
      throw Error(config_.label + ": loss is " + std::to_string(value) + " at step " + std::to_string(step_) +
                  " (try a lower learning rate or stronger gradient clipping)");
    if (!loss.requires_grad())
      throw Error(config_.label + ": the loss does not depend on any trainable parameter");
    loss.backward();
    optimizer_step();
    if (ema_) ema_->update(masters_, step_);
    losses_.push_back(value);
    ++step_;

    if (checkpointing && config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0 && step_ < end)
      save_checkpoint(config_.checkpoint_path);
    if ((step_ - first) % window == 0 || step_ == end) {
      const auto from = losses_.end() - std::min<int64_t>(window, static_cast<int64_t>(losses_.size()));
      const double mean = std::accumulate(from, losses_.end(), 0.0) / static_cast<double>(losses_.end() - from);
      char text[64];
      std::snprintf(text, sizeof text, "loss=%.4g", mean);
      bar.update(step_ - first, text);
    }
  }
  if (checkpointing) save_checkpoint(config_.checkpoint_path);
  bar.finish();
}

void Trainer::optimizer_step() {
  torch::NoGradGuard no_grad;
  // torch::nn::utils::clip_grad_norm_'s arithmetic, with each norm taken in fp32 (one parameter's
  // fp32 gradient at a time: a bf16 model never holds a second, fp32 set of gradients).
  auto fp32 = [](const torch::Tensor& g) { return g.scalar_type() == torch::kFloat32 ? g : g.to(torch::kFloat32); };
  torch::Tensor clip;
  if (config_.grad_clip > 0) {
    std::vector<torch::Tensor> norms;
    for (auto& [name, p] : params_)
      if (p.grad().defined()) norms.push_back(fp32(p.grad()).norm());
    torch::Tensor total = norms.empty() ? torch::zeros({}) : torch::stack(norms).norm();
    last_grad_norm_ = total.item<double>();
    clip = torch::clamp_max(config_.grad_clip / (total + 1e-6), 1.0);
  }
  AdamWHyper hyper;
  hyper.lr = lr_at(step_);
  hyper.beta1 = config_.beta1;
  hyper.beta2 = config_.beta2;
  hyper.eps = config_.eps;
  hyper.weight_decay = config_.weight_decay;
  hyper.state_dtype = config_.optimizer_state;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    if (!p.grad().defined()) continue;
    torch::Tensor grad = fp32(p.grad());
    if (clip.defined()) grad.mul_(clip.to(grad.device()));
    torch::Tensor& master = masters_[i].second;
    const uint64_t rounding_seed = config_.seed * 0x9E3779B97F4A7C15ULL + i * 0x100000001ULL + states_[i].step;
    adamw_step(master, grad, states_[i], hyper, rounding_seed);
    if (!master.is_same(p)) p.copy_(master);
  }
}

int64_t Trainer::optimizer_bytes() const {
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i].second;
    if (!masters_[i].second.is_same(p)) bytes += p.numel() * 4;
    bytes += p.numel() * adamw_state_bytes_per_element(config_.optimizer_state);
  }
  return bytes;
}

void Trainer::save_checkpoint(const std::string& path) const {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> tensors;
  for (size_t i = 0; i < masters_.size(); ++i) {
    const auto& [name, master] = masters_[i];
    tensors[kParam + name] = master.detach();  // the fp32 master of a low-precision weight
    const AdamWState& s = states_[i];
    if (s.exp_avg.defined()) {
      tensors[kExpAvg + name] = s.exp_avg;
      tensors[kExpAvgSq + name] = s.exp_avg_sq;
      tensors[kAdamStep + name] = torch::tensor({s.step}, torch::kInt64);
    }
  }
  if (ema_)
    for (const auto& [name, s] : ema_->shadow()) tensors[kEma + name] = s;
  tensors[kGenerator] = generator_.get_state();
  tensors[kLosses] = torch::tensor(losses_, torch::kFloat64);
  save_safetensors(path, tensors,
                   {{kKindMeta, kKind}, {kStepMeta, std::to_string(step_)}, {kConfigMeta, config_.to_json().dump()}});
}

bool Trainer::resume(const std::string& path) {
  if (!std::filesystem::exists(path)) return false;
  const SafeTensors file = SafeTensors::open(path);
  const auto& meta = file.metadata();
  auto kind = meta.find(kKindMeta);
  auto step_text = meta.find(kStepMeta);
  if (kind == meta.end() || kind->second != kKind || step_text == meta.end())
    throw Error(path + ": not a training checkpoint (no " + kStepMeta + " metadata)");
  const int64_t step = std::stoll(step_text->second);

  std::set<std::string> expected;
  for (const auto& [name, p] : params_) expected.insert(kParam + name);
  for (const auto& key : file.keys())
    if (key.rfind(kParam, 0) == 0 && !expected.count(key))
      throw Error(path + ": checkpoint has parameter '" + key.substr(kParam.size()) +
                  "' that this training does not have (a checkpoint of another run?)");

  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& [name, p] = params_[i];
    torch::Tensor& master = masters_[i].second;
    if (!file.contains(kParam + name)) throw Error(path + ": checkpoint lacks parameter '" + name + "'");
    torch::Tensor saved = file.get(kParam + name);
    if (!saved.sizes().equals(p.sizes()))
      throw Error(path + ": parameter '" + name + "' has shape " + shape_text(saved) + " in the checkpoint, " +
                  shape_text(p) + " in the model");
    master.copy_(saved);
    if (!master.is_same(p)) p.copy_(master);
    if (file.contains(kExpAvg + name)) {
      if (!file.contains(kExpAvgSq + name) || !file.contains(kAdamStep + name))
        throw Error(path + ": incomplete AdamW state for '" + name + "'");
      torch::Tensor exp_avg = file.get(kExpAvg + name), exp_avg_sq = file.get(kExpAvgSq + name);
      if (!exp_avg.sizes().equals(p.sizes()) || !exp_avg_sq.sizes().equals(p.sizes()))
        throw Error(path + ": AdamW state of '" + name + "' has shape " + shape_text(exp_avg) + ", parameter has " +
                    shape_text(p));
      const auto options = master.options().dtype(config_.optimizer_state == torch::kBFloat16 ? torch::kBFloat16
                                                  : master.scalar_type() == torch::kFloat64 ? torch::kFloat64
                                                                                            : torch::kFloat32);
      states_[i].step = file.get(kAdamStep + name).item<int64_t>();
      states_[i].exp_avg = exp_avg.to(options).clone();
      states_[i].exp_avg_sq = exp_avg_sq.to(options).clone();
    }
    if (ema_ && file.contains(kEma + name)) ema_->load(name, file.get(kEma + name));
  }
  if (!file.contains(kGenerator) || !file.contains(kLosses))
    throw Error(path + ": checkpoint lacks the generator state or loss history");
  generator_.set_state(file.get(kGenerator));
  torch::Tensor losses = file.get(kLosses).to(torch::kFloat64).contiguous();
  if (losses.numel() != step)
    throw Error(path + ": loss history has " + std::to_string(losses.numel()) + " entries for step " +
                std::to_string(step));
  losses_.assign(losses.data_ptr<double>(), losses.data_ptr<double>() + losses.numel());
  step_ = step;
  return true;
}

}  // namespace sine
