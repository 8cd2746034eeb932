#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sine {

// Trainable tensors with the names they are saved under (checkpoint keys).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Exponential moving average of parameters: shadow = d * shadow + (1 - d) * param after each
// optimizer step. The shadow stays fp32 whatever the parameters' dtype, because per-step
// changes of (1 - d) ~ 1e-4 would vanish in fp16/bf16 rounding.
class ParameterEMA {
 public:
  ParameterEMA(const NamedTensors& params, double decay);

  // The decay used for the update after `updates` earlier ones: min(decay, (1 + n) / (10 + n)).
  // Early on the average follows the parameters closely, so a short run (or the first thousand
  // steps of a long one) is not dominated by the random initialization.
  double decay_at(int64_t updates) const;

  // Folds the current parameters into the average; `updates` counts the earlier updates.
  void update(const NamedTensors& params, int64_t updates);

  const NamedTensors& shadow() const { return shadow_; }
  torch::Tensor get(const std::string& name) const;
  // Overwrites `params` (matched by name, converted to their dtype) with the average.
  void copy_to(const NamedTensors& params) const;
  // Replaces the shadow of `name` (resume); shape must match.
  void load(const std::string& name, const torch::Tensor& value);

 private:
  size_t slot(const std::string& name) const;

  double decay_;
  NamedTensors shadow_;
  std::map<std::string, size_t> index_;
};

}  // namespace sine
