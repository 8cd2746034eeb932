#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace sine {

using CheckpointedFunction = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

// Gradient checkpointing: runs fn(inputs) without keeping its activations and recomputes them
// during backward, trading one extra forward of `fn` for the memory of its intermediates.
// Gradients flow to the inputs that require grad and accumulate into the trainable parameters of
// `owner` (the module whose parameters fn uses). fn must be deterministic (no dropout); attention
// hooks inside it run a second time during the recomputation. Every input must be defined.
torch::Tensor checkpoint(const CheckpointedFunction& fn, const std::vector<torch::Tensor>& inputs,
                         const torch::nn::Module& owner);

}  // namespace sine
