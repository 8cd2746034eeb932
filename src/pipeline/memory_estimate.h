#pragma once
// What a generation will need beyond the weights, estimated before anything is allocated, so an
// impossible size is refused with a clear line instead of the kernel's OOM killer (exit 137).
#include <torch/torch.h>

#include <string>

#include "models/config.h"

namespace sine {

struct MemoryEstimate {
  double unet_bytes = 0;  // the UNet's peak activations at this size and batch (CFG doubles it)
  double vae_bytes = 0;   // the VAE decoder's peak activations at full resolution
  double peak_bytes() const { return std::max(unet_bytes, vae_bytes); }
};

// A lower bound of the activations of one sampling step (batch = images × 2 with CFG) and of the
// decode: the largest feature maps kept for the skip connections, and the attention scores where
// the attention is not fused (LibTorch 1.13 has no SDPA; hooks that read probabilities).
MemoryEstimate estimate_generation_memory(const ModelConfig& config, torch::ScalarType dtype, int64_t height,
                                          int64_t width, int64_t batch, bool fused_attention);

// Throws sine::Error when `estimate` exceeds what `device` has available, naming `what` (e.g.
// "-W/-H 100000x100000"), the estimate and the available memory; does nothing when the available
// memory is unknown.
void check_fits(const MemoryEstimate& estimate, const torch::Device& device, const std::string& what);

std::string format_bytes(double bytes);  // "1.3 GB"

}  // namespace sine
