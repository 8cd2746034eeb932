#include "core/device.h"

#include <fstream>

#include <sys/resource.h>

#include <sstream>

#include "core/torch_compat.h"
#ifdef SINE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#include <torch/cuda.h>
#endif

namespace sine {

namespace {
#ifdef SINE_WITH_CUDA
c10::DeviceIndex index_of(const torch::Device& device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
#endif
}  // namespace

void synchronize(const torch::Device& device) {
#ifdef SINE_WITH_CUDA
  if (device.is_cuda()) torch::cuda::synchronize(index_of(device));
#endif
}

void reset_peak_memory(const torch::Device& device) {
#ifdef SINE_WITH_CUDA
  if (device.is_cuda()) {
    torch::cuda::synchronize(index_of(device));
    c10::cuda::CUDACachingAllocator::resetPeakStats(index_of(device));
  }
#endif
}

double peak_memory_bytes(const torch::Device& device) {
#ifdef SINE_WITH_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_of(device));
    return static_cast<double>(stats.allocated_bytes[0].peak);
  }
#endif
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) * 1024.0;  // Linux reports KiB
}

std::string peak_memory_kind(const torch::Device& device) {
  return device.is_cuda() ? "CUDA allocator peak" : "process peak RSS";
}

double available_memory_bytes(const torch::Device& device) {
#ifdef SINE_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(index_of(device));
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_of(device));
    const double cached = static_cast<double>(stats.reserved_bytes[0].current - stats.allocated_bytes[0].current);
    return static_cast<double>(free) + cached;
  }
#endif
  if (!device.is_cpu()) return 0;
  double available = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit)
    if (key == "MemAvailable:") available = kb * 1024.0;
  // A container's memory limit (cgroup v2, then v1) bounds what the kernel will give us.
  for (const auto& [limit_path, usage_path] :
       {std::pair<const char*, const char*>{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    std::ifstream limit_file(limit_path), usage_file(usage_path);
    double limit = 0, usage = 0;
    if (limit_file >> limit && usage_file >> usage && limit > usage && limit < 1e18) {
      available = available > 0 ? std::min(available, limit - usage) : limit - usage;
      break;
    }
  }
  return available;
}

std::string describe_devices() {
  std::ostringstream o;
  o << "cpu (" << torch::get_num_threads() << " threads)";
#ifdef SINE_WITH_CUDA
  const int n = torch::cuda::device_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess)
      o << ", cuda:" << i << " " << prop.name << " (" << (prop.totalGlobalMem >> 30) << " GiB, sm_" << prop.major
        << prop.minor << ")";
  }
  if (n == 0) o << ", no CUDA device";
#endif
  return o.str();
}

std::string version_report() {
  std::ostringstream o;
  o << "sine " << SINE_VERSION << "\n"
    << "LibTorch " << compat::torch_version() << (compat::has_sdpa ? " (fused SDPA attention)" : "") << "\n"
    << "CUDA compiled in: ";
#ifdef SINE_WITH_CUDA
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  o << "yes (runtime " << runtime / 1000 << "." << (runtime % 1000) / 10 << ")\n";
#else
  o << "no\n";
#endif
  o << "devices: " << describe_devices();
  return o.str();
}

}  // namespace sine
