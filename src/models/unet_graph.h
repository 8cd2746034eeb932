#pragma once
// The UNet call as a CUDA graph: captured once at fixed shapes, replayed every sampling step, so a
// step launches one graph instead of ~1,000 kernels from the host. Only where nothing changes the
// graph between steps: no attention hook (hooks read or swap tensors per step), no tap, inference.
#include <torch/torch.h>

#include <memory>

#include "models/unet.h"

namespace sine {

class UNetGraph {
 public:
  // True when `unet` on `device` can be captured: a CUDA build, a CUDA device, no hook.
  static bool supported(const UNetModel& unet, const torch::Device& device);

  // Captures unet(x, t, context) at the shapes and dtypes of these examples (after warm-up runs on a
  // side stream, as CUDA graph capture needs). Throws sine::Error where !supported().
  UNetGraph(UNetModel unet, const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& context);
  ~UNetGraph();
  UNetGraph(UNetGraph&&) noexcept;
  UNetGraph& operator=(UNetGraph&&) noexcept;

  // The captured call on new values (same shapes, dtypes, device); the result is a fresh tensor.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& context);
  // True if these inputs have the captured shapes/dtypes (else call the UNet directly).
  bool matches(const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& context) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sine
