#include "pipeline/memory_estimate.h"

#include <cstdio>

#include "core/device.h"
#include "core/error.h"

namespace sine {

MemoryEstimate estimate_generation_memory(const ModelConfig& config, torch::ScalarType dtype, int64_t height,
                                          int64_t width, int64_t batch, bool fused_attention) {
  const double bytes = static_cast<double>(c10::elementSize(dtype));
  const int64_t f = config.vae.downsample_factor();
  const double h = static_cast<double>(height / f), w = static_cast<double>(width / f);
  const double tokens = h * w;
  const auto& u = config.unet;
  MemoryEstimate e;
  // Level 0 holds the largest maps: conv_in's output and num_res_blocks + 1 skips per level, plus the
  // working set of one ResBlock (input, norm, conv, output): about 2·(n + 1) + 4 maps of C0·h·w.
  const double level0_map = static_cast<double>(batch) * static_cast<double>(u.model_channels) * tokens * bytes;
  e.unet_bytes = level0_map * static_cast<double>(2 * (u.num_res_blocks + 1) + 4);
  const bool level0_attention =
      std::find(u.attention_levels.begin(), u.attention_levels.end(), int64_t(0)) != u.attention_levels.end();
  if (level0_attention && !fused_attention)  // self-attention scores [B, heads, N, N] and their softmax
    e.unet_bytes += 2.0 * static_cast<double>(batch * u.num_heads) * tokens * tokens * bytes;
  // The decoder's last level: ch channels at full resolution, input + norm + conv + output.
  const double pixels = static_cast<double>(height) * static_cast<double>(width);
  e.vae_bytes = 4.0 * static_cast<double>(config.vae.ch) * pixels * bytes;
  if (!fused_attention)  // the mid-block's single-head attention over the latent's positions
    e.vae_bytes = std::max(e.vae_bytes, 2.0 * tokens * tokens * bytes);
  return e;
}

std::string format_bytes(double bytes) {
  char buf[64];
  if (bytes >= 1e12)
    std::snprintf(buf, sizeof buf, "%.3g TB", bytes / 1e12);
  else if (bytes >= 1e9)
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
  else
    std::snprintf(buf, sizeof buf, "%.0f MB", bytes / 1e6);
  return buf;
}

void check_fits(const MemoryEstimate& estimate, const torch::Device& device, const std::string& what) {
  const double available = available_memory_bytes(device);
  if (available <= 0 || estimate.peak_bytes() <= available) return;
  throw Error(what + ": needs about " + format_bytes(estimate.peak_bytes()) + " for activations but " +
              device.str() + " has " + format_bytes(available) + " available (use a smaller size, or --force to try anyway)");
}

}  // namespace sine
