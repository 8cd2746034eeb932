#include "models/unet_graph.h"

#include "core/error.h"
#ifdef SINE_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace sine {

struct UNetGraph::State {
  UNetModel unet{nullptr};
  torch::Tensor x, t, context, out;  // static buffers the graph reads and writes
#ifdef SINE_WITH_CUDA
  at::cuda::CUDAGraph graph;
#endif
};

bool UNetGraph::supported(const UNetModel& unet, const torch::Device& device) {
#ifdef SINE_WITH_CUDA
  return device.is_cuda() && unet->attention_hook() == nullptr;
#else
  (void)unet;
  (void)device;
  return false;
#endif
}

UNetGraph::UNetGraph(UNetModel unet, const torch::Tensor& x, const torch::Tensor& timesteps,
                     const torch::Tensor& context)
    : state_(std::make_unique<State>()) {
  if (!supported(unet, x.device()))
    throw Error("CUDA graphs need a CUDA build (SINE_CUDA=ON), a CUDA device and no attention hook");
#ifdef SINE_WITH_CUDA
  torch::NoGradGuard no_grad;
  auto& s = *state_;
  s.unet = unet;
  s.x = x.clone();
  s.t = timesteps.to(x.device(), torch::kLong).expand({x.size(0)}).contiguous();
  s.context = context.clone();
  c10::cuda::CUDAGuard device_guard(x.device());
  auto side = c10::cuda::getStreamFromPool();
  at::cuda::CUDAEvent inputs_ready;
  inputs_ready.record(c10::cuda::getCurrentCUDAStream());
  inputs_ready.block(side);
  {
    c10::cuda::CUDAStreamGuard stream_guard(side);
    for (int i = 0; i < 3; ++i) s.out = s.unet->forward(s.x, s.t, s.context);  // cuBLAS/cuDNN set-up off the graph
    s.graph.capture_begin();
    s.out = s.unet->forward(s.x, s.t, s.context);
    s.graph.capture_end();
  }
  at::cuda::CUDAEvent captured;
  captured.record(side);
  captured.block(c10::cuda::getCurrentCUDAStream());
#endif
}

UNetGraph::~UNetGraph() = default;
UNetGraph::UNetGraph(UNetGraph&&) noexcept = default;
UNetGraph& UNetGraph::operator=(UNetGraph&&) noexcept = default;

bool UNetGraph::matches(const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& context) const {
  const auto& s = *state_;
  return x.sizes() == s.x.sizes() && x.scalar_type() == s.x.scalar_type() && x.device() == s.x.device() &&
         context.sizes() == s.context.sizes() && context.scalar_type() == s.context.scalar_type() &&
         (timesteps.numel() == 1 || timesteps.numel() == s.t.numel());
}

torch::Tensor UNetGraph::forward(const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& context) {
  if (!matches(x, timesteps, context))
    throw Error("CUDA graph: inputs differ from the captured shapes " + c10::str(state_->x.sizes()) + " / " +
                c10::str(state_->context.sizes()));
#ifdef SINE_WITH_CUDA
  auto& s = *state_;
  torch::NoGradGuard no_grad;
  s.x.copy_(x);
  s.t.copy_(timesteps.to(s.t.device(), torch::kLong).expand_as(s.t));
  s.context.copy_(context);
  s.graph.replay();
  return s.out.clone();
#else
  return {};
#endif
}

}  // namespace sine
