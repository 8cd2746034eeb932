#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

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
  // take_module_weights) and frees its tensors.
  void defer(torch::nn::Module& network, const std::string& prefix);
  // Loads `network` from the file if it is still deferred (returns true); a no-op otherwise.
  bool materialize(torch::nn::Module& network);
  bool empty() const { return pending_.empty(); }
  int64_t size() const { return static_cast<int64_t>(pending_.size()); }

  CheckpointData& checkpoint() { return checkpoint_; }

 private:
  CheckpointData checkpoint_;
  // Checkpoint prefix -> the network still to load (a network built again replaces its entry).
  std::map<std::string, const torch::nn::Module*> pending_;
};

}  // namespace sine
