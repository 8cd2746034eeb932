#include "core/runtime.h"

#include <cstdlib>
#include <thread>

#include <dlfcn.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/error.h"

namespace sine {

void init_threads(int threads) {
  if (threads <= 0) {
    if (const char* env = std::getenv("SINE_THREADS")) threads = std::atoi(env);
  }
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
  single_thread_blas();
}

void single_thread_blas() {
  if (std::getenv("OPENBLAS_NUM_THREADS")) return;  // the user's choice
  using SetThreads = void (*)(int);
  // Looked up at run time: only Debian's LibTorch links OpenBLAS (PyPI's uses MKL, which follows
  // torch::set_num_threads on its own).
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(1);
}

void init_allocator() {
#if defined(__GLIBC__)
  const char* keep_default = std::getenv("SINE_SYSTEM_MALLOC");
  if (keep_default && std::string(keep_default) == "1") return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest allowed value (64-bit)
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

void release_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters(true)) p.set_data(torch::empty({0}, p.options()));
  for (auto& b : module.buffers(true)) b.set_data(torch::empty({0}, b.options()));
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

ScopedDefaultDtype::ScopedDefaultDtype(torch::ScalarType dtype) : previous_(torch::get_default_dtype()) {
  torch::set_default_dtype(c10::scalarTypeToTypeMeta(dtype));
}

ScopedDefaultDtype::~ScopedDefaultDtype() { torch::set_default_dtype(previous_); }

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("device: " + name + ": CUDA is not available in this build or on this machine");
    return torch::Device(name);
  }
  throw Error("device: unknown device '" + name + "' (expected cpu or cuda[:N])");
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "f32" || name == "float32") return torch::kFloat32;
  if (name == "fp16" || name == "f16" || name == "float16") return torch::kFloat16;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  throw Error("dtype: unknown dtype '" + name + "' (expected fp32, fp16 or bf16)");
}

std::string dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "fp32";
    case torch::kFloat16: return "fp16";
    case torch::kBFloat16: return "bf16";
    default: return c10::toString(dtype);
  }
}

}  // namespace sine
