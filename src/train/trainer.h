#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "train/adamw.h"
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
  // Mixed precision: a bf16/fp16 parameter is trained through an fp32 master copy (AdamW updates the
  // master; the model's weight is the master rounded after each step), so updates smaller than the
  // low-precision step are not lost. Off: low-precision weights are updated directly (an lr of 1e-6
  // then leaves bf16 weights unchanged). fp32 parameters have no copy either way.
  bool master_weights = true;
  torch::ScalarType optimizer_state = torch::kFloat32;  // AdamW moments: fp32, or bf16 (train/adamw.h)

  nlohmann::json to_json() const;
};

// The loss of one step; randomness (noise, timesteps, data) must come from `gen` so that a
// resumed run draws exactly what the uninterrupted one would have.
using LossFunction = std::function<torch::Tensor(int64_t step, torch::Generator& gen)>;

// The training loop every method of the project reuses: AdamW (train/adamw.h) over named parameters
// with a user-supplied loss, gradient clipping, optional EMA, fp32 master weights for bf16/fp16
// parameters, a seeded generator for the loss's randomness, and resumable checkpoints. Resuming restores parameters, AdamW moments and step
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
  // What AdamW updates: the fp32 masters of low-precision parameters, the parameters themselves
  // otherwise (same names and order as parameters()).
  const NamedTensors& master_parameters() const { return masters_; }
  // Bytes the optimizer holds beside the model: fp32 masters and AdamW moments (gradients excluded).
  int64_t optimizer_bytes() const;
  const std::vector<double>& loss_history() const { return losses_; }
  // L2 norm of the gradients before clipping, at the last step (0 before the first one).
  double last_grad_norm() const { return last_grad_norm_; }
  double lr_at(int64_t step) const;
  torch::Generator& generator() { return generator_; }
  // The parameter average, or nullptr without EMA.
  const ParameterEMA* ema() const { return ema_.get(); }

 private:
  // Clips the gradients (global L2 norm) and applies one AdamW update to every parameter that has
  // one, then copies the masters back into the model.
  void optimizer_step();

  NamedTensors params_;
  NamedTensors masters_;
  std::vector<AdamWState> states_;
  TrainConfig config_;
  std::unique_ptr<ParameterEMA> ema_;
  torch::Generator generator_;
  int64_t step_ = 0;
  std::vector<double> losses_;
  double last_grad_norm_ = 0;
};

}  // namespace sine
