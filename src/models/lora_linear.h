#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace sine {

// One low-rank adapter: ΔW = scale · up · down (down [rank, in], up [out, rank]).
struct LoRAAdapter {
  std::string name;  // who attached it (a concept, a fine-tune), so it can be removed again
  torch::Tensor down, up;
  double scale = 1.0;
};

// A linear layer that may carry low-rank adapters: y = W·x + b + Σ_i scale_i · up_i(down_i(x)).
// Parameters are registered as "weight"/"bias" exactly like torch::nn::Linear, so checkpoint
// keys do not change; adapters are not registered (they are not part of the base checkpoint) and
// are owned by whoever attaches them (models/lora.h collects them into a trainable set).
class AdaptableLinearImpl : public torch::nn::Cloneable<AdaptableLinearImpl> {
 public:
  AdaptableLinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);

  // Folds every adapter into `weight` (W += scale·up·down) and removes them.
  void merge_adapters();
  // The summed update of all adapters, [out, in] (zeros when there are none).
  torch::Tensor adapter_delta() const;

  int64_t in_features, out_features;
  bool with_bias;
  torch::Tensor weight, bias;
  std::vector<LoRAAdapter> adapters;
};
TORCH_MODULE(AdaptableLinear);

}  // namespace sine
