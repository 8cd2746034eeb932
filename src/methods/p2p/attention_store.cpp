#include "methods/p2p/attention_store.h"

namespace sine::p2p {

void AttentionStore::record(bool is_cross, int layer, const torch::Tensor& cond_probs) {
  const int64_t n = cond_probs.size(2);
  if (!wants(n)) return;
  auto mean = cond_probs.detach().to(torch::kFloat32).mean(1);
  auto& slot = step_[{is_cross, layer}];
  // One call per layer and step; a second call in the same step (not expected) is summed too.
  slot = slot.defined() ? slot + mean : mean;
}

void AttentionStore::end_step() {
  for (auto& [key, value] : step_) {
    auto& s = sum_[key];
    s = s.defined() ? s + value : value.clone();
  }
  step_.clear();
  ++steps_;
}

torch::Tensor AttentionStore::sum(bool is_cross, int layer) const {
  auto it = sum_.find({is_cross, layer});
  return it == sum_.end() ? torch::Tensor() : it->second;
}

torch::Tensor AttentionStore::average(bool is_cross, int layer) const {
  auto s = sum(is_cross, layer);
  return s.defined() && steps_ > 0 ? s / static_cast<double>(steps_) : s;
}

void AttentionStore::reset() {
  step_.clear();
  sum_.clear();
  steps_ = 0;
}

}  // namespace sine::p2p
