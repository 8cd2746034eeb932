#pragma once
#include <torch/torch.h>

#include <map>
#include <utility>

// Prompt-to-Prompt's AttentionStore: the conditional half of every attention map with at most
// `max_pixels` queries (SD 1.5: 32^2; see attention_layout.h), averaged over heads, collected per
// step and added into a running sum between steps. Maps are recorded after the controller's
// edit (the notebook stores views that the edit then overwrites).
namespace sine::p2p {

struct StoreKey {
  bool is_cross = false;
  int layer = 0;
  bool operator<(const StoreKey& o) const { return std::make_pair(is_cross, layer) < std::make_pair(o.is_cross, o.layer); }
};

class AttentionStore {
 public:
  explicit AttentionStore(int64_t max_pixels = 32 * 32) : max_pixels_(max_pixels) {}

  bool wants(int64_t pixels) const { return pixels <= max_pixels_; }
  // cond_probs: [P, heads, N, M] (the conditional half); stored as the head mean [P, N, M].
  void record(bool is_cross, int layer, const torch::Tensor& cond_probs);
  // between_steps: adds this step's maps into the running sum.
  void end_step();

  int64_t steps() const { return steps_; }
  // Running sum over finished steps (undefined if the layer was never stored).
  torch::Tensor sum(bool is_cross, int layer) const;
  // sum / steps (get_average_attention).
  torch::Tensor average(bool is_cross, int layer) const;
  const std::map<StoreKey, torch::Tensor>& sums() const { return sum_; }
  void reset();

 private:
  int64_t max_pixels_;
  int64_t steps_ = 0;
  std::map<StoreKey, torch::Tensor> step_, sum_;
};

}  // namespace sine::p2p
