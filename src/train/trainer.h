#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "train/ema.h"

namespace sine {

struct TrainConfig {
  int64_t steps = 0;
  double lr = 1e-4;
  double weight_decay = 1e-2;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double grad_clip = 1.0;          // max global L2 norm of the gradients; 0 = off
  double ema_decay = 0;            // 0 = no EMA
  int64_t checkpoint_every = 0;    // 0 = only at the end of a run
  std::string checkpoint_path;     // empty = no checkpoints
  uint64_t seed = 0;               // of the generator handed to the loss function
  int64_t log_every = 10;          // the progress bar shows the mean loss of this many steps
  std::string label = "train";     // progress label
  int64_t warmup_steps = 0;        // linear learning-rate warmup
  double min_lr_ratio = 1.0;       // cosine decay to lr * min_lr_ratio after warmup; 1 = constant

  nlohmann::json to_json() const;
};

// The loss of one step; randomness (noise, timesteps, data) must come from `gen` so that a
// resumed run draws exactly what the uninterrupted one would have.
using LossFunction = std::function<torch::Tensor(int64_t step, torch::Generator& gen)>;

// The training loop every method of the project reuses: AdamW over named parameters with a
// user-supplied loss, gradient clipping, optional EMA, a seeded generator for the loss's
// randomness, and resumable checkpoints. Resuming restores parameters, AdamW moments and step
// counts, EMA, generator state, step and loss history, so an interrupted run continues bit for
// bit as if it had not been interrupted.
class Trainer {
 public:
  Trainer(NamedTensors params, TrainConfig config);
  ~Trainer();

  // Trains from the current step up to `stop_at` (default: config.steps). A checkpoint is
  // written every checkpoint_every steps and when the run stops.
  void run(const LossFunction& loss_fn, int64_t stop_at = -1);

  // Restores a checkpoint written by a Trainer over the same parameter names and shapes.
  // Returns false when `path` does not exist; a checkpoint of other parameters is an error.
  // The current config (steps, lr, ...) stays in force, so a finished run can be extended.
  bool resume(const std::string& path);
  void save_checkpoint(const std::string& path) const;

  int64_t step() const { return step_; }
  const TrainConfig& config() const { return config_; }
  const NamedTensors& parameters() const { return params_; }
  const std::vector<double>& loss_history() const { return losses_; }
  // L2 norm of the gradients before clipping, at the last step (0 before the first one).
  double last_grad_norm() const { return last_grad_norm_; }
  double lr_at(int64_t step) const;
  torch::Generator& generator() { return generator_; }
  // The parameter average, or nullptr without EMA.
  const ParameterEMA* ema() const { return ema_.get(); }

 private:
  void restore_optimizer_state(const std::string& name, const torch::Tensor& param, int64_t step,
                               const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq);

  NamedTensors params_;
  TrainConfig config_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<ParameterEMA> ema_;
  torch::Generator generator_;
  int64_t step_ = 0;
  std::vector<double> losses_;
  double last_grad_norm_ = 0;
};

}  // namespace sine
