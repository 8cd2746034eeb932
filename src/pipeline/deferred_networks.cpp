#include "pipeline/deferred_networks.h"

#include "core/runtime.h"
#include "models/weights.h"

namespace sine {

DeferredNetworks::DeferredNetworks(CheckpointData checkpoint) : checkpoint_(std::move(checkpoint)) {}

void DeferredNetworks::defer(torch::nn::Module& network, const std::string& prefix) {
  check_module_weights(network, checkpoint_.tensors, prefix, checkpoint_.source);
  release_weights(network);
  pending_[prefix] = &network;
}

bool DeferredNetworks::materialize(torch::nn::Module& network) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->second != &network) continue;
    materialize_module_weights(network, checkpoint_.tensors, it->first, checkpoint_.source);
    pending_.erase(it);
    return true;
  }
  return false;
}

}  // namespace sine
