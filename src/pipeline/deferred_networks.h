#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace sine {

// The networks of a model loaded with LoadOptions::defer_weights: each one's keys and shapes are
// checked against the file when the model is built, its random weights freed, and its weights copied
// from the memory-mapped file only when it is first used. A one-shot txt2img then holds the text
// encoder, the UNet and the VAE one after another (with release_after_use), never all three.
class DeferredNetworks {
 public:
  explicit DeferredNetworks(CheckpointData checkpoint);

  // At build time: checks `network` against the file's tensors under `prefix` (the errors of
  // take_module_weights), records its shapes and frees its tensors.
  void defer(torch::nn::Module& network, const std::string& prefix);
  // Loads `network` from the file if it is still deferred; a no-op otherwise.
  void materialize(torch::nn::Module& network);
  bool empty() const { return pending_.empty(); }
  int64_t size() const { return static_cast<int64_t>(pending_.size()); }

  CheckpointData& checkpoint() { return checkpoint_; }

 private:
  struct Pending {
    const torch::nn::Module* network;
    std::map<std::string, std::vector<int64_t>> shapes;
  };
  CheckpointData checkpoint_;
  std::map<std::string, Pending> pending_;  // by prefix: a network built again replaces its entry
};

}  // namespace sine
