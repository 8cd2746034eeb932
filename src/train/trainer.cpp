#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>
#include <sstream>
#include <type_traits>

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

// LibTorch keys optimizer state by the parameter's TensorImpl: as a printed pointer in 1.x, as
// the pointer itself in 2.x. The key type tells which.
template <typename StateMap>
typename StateMap::key_type state_key(const StateMap&, const torch::Tensor& param) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << param.unsafeGetTensorImpl();
    return os.str();
  } else {
    return static_cast<Key>(param.unsafeGetTensorImpl());
  }
}

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
          {"min_lr_ratio", min_lr_ratio}};
}

Trainer::Trainer(NamedTensors params, TrainConfig config)
    : params_(std::move(params)),
      config_(std::move(config)),
      generator_(at::make_generator<at::CPUGeneratorImpl>(config_.seed)) {
  if (params_.empty()) throw Error(config_.label + ": nothing to train (no parameters)");
  if (config_.lr <= 0) throw Error(config_.label + ": learning rate must be positive");
  std::set<std::string> names;
  std::vector<torch::Tensor> tensors;
  for (auto& [name, p] : params_) {
    if (!names.insert(name).second) throw Error(config_.label + ": parameter '" + name + "' listed twice");
    if (!p.is_leaf()) throw Error(config_.label + ": parameter '" + name + "' is not a leaf tensor");
    if (!torch::isFloatingType(p.scalar_type()))
      throw Error(config_.label + ": parameter '" + name + "' is not floating point");
    p.requires_grad_(true);
    tensors.push_back(p);
  }
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      tensors, torch::optim::AdamWOptions(config_.lr)
                   .betas({config_.beta1, config_.beta2})
                   .eps(config_.eps)
                   .weight_decay(config_.weight_decay));
  if (config_.ema_decay > 0) ema_ = std::make_unique<ParameterEMA>(params_, config_.ema_decay);
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
  std::vector<torch::Tensor> tensors;
  for (const auto& [name, p] : params_) tensors.push_back(p);
  const bool checkpointing = !config_.checkpoint_path.empty();
  const int64_t window = std::max<int64_t>(1, config_.log_every);

  ProgressBar bar(config_.label, end - step_);
  const int64_t first = step_;
  while (step_ < end) {
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr_at(step_));
    // Gradients start undefined each step (not zero), so a parameter the loss did not reach is
    // skipped by AdamW the same way in LibTorch 1.x and 2.x.
    for (auto& p : tensors) p.mutable_grad() = torch::Tensor();

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
    if (config_.grad_clip > 0) last_grad_norm_ = torch::nn::utils::clip_grad_norm_(tensors, config_.grad_clip);
    optimizer_->step();
    if (ema_) ema_->update(params_, step_);
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

void Trainer::save_checkpoint(const std::string& path) const {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> tensors;
  const auto& state = optimizer_->state();
  for (const auto& [name, p] : params_) {
    tensors[kParam + name] = p.detach();
    auto it = state.find(state_key(state, p));
    if (it != state.end()) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      tensors[kExpAvg + name] = s.exp_avg();
      tensors[kExpAvgSq + name] = s.exp_avg_sq();
      tensors[kAdamStep + name] = torch::tensor({s.step()}, torch::kInt64);
    }
  }
  if (ema_)
    for (const auto& [name, s] : ema_->shadow()) tensors[kEma + name] = s;
  tensors[kGenerator] = generator_.get_state();
  tensors[kLosses] = torch::tensor(losses_, torch::kFloat64);
  save_safetensors(path, tensors,
                   {{kKindMeta, kKind}, {kStepMeta, std::to_string(step_)}, {kConfigMeta, config_.to_json().dump()}});
}

void Trainer::restore_optimizer_state(const std::string& name, const torch::Tensor& param, int64_t step,
                                      const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq) {
  if (!exp_avg.sizes().equals(param.sizes()) || !exp_avg_sq.sizes().equals(param.sizes()))
    throw Error("AdamW state of '" + name + "' has shape " + shape_text(exp_avg) + ", parameter has " +
                shape_text(param));
  auto s = std::make_unique<torch::optim::AdamWParamState>();
  s->step(step);
  s->exp_avg(exp_avg.to(param.options()));
  s->exp_avg_sq(exp_avg_sq.to(param.options()));
  auto& state = optimizer_->state();
  state[state_key(state, param)] = std::move(s);
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
  for (const auto& [name, p] : params_) {
    if (!file.contains(kParam + name)) throw Error(path + ": checkpoint lacks parameter '" + name + "'");
    torch::Tensor saved = file.get(kParam + name);
    if (!saved.sizes().equals(p.sizes()))
      throw Error(path + ": parameter '" + name + "' has shape " + shape_text(saved) + " in the checkpoint, " +
                  shape_text(p) + " in the model");
    p.copy_(saved);
    if (file.contains(kExpAvg + name)) {
      if (!file.contains(kExpAvgSq + name) || !file.contains(kAdamStep + name))
        throw Error(path + ": incomplete AdamW state for '" + name + "'");
      restore_optimizer_state(name, p, file.get(kAdamStep + name).item<int64_t>(), file.get(kExpAvg + name),
                              file.get(kExpAvgSq + name));
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
