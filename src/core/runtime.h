#pragma once
#include <torch/torch.h>
#include <string>

namespace sine {

// LibTorch defaults to one thread on some machines: use every core unless told otherwise.
// Also calls single_thread_blas().
void init_threads(int threads = 0);

// OpenBLAS (under Debian's LibTorch) keeps a pthread pool of its own, sized by the cores, beside
// LibTorch's OpenMP threads; with both at two threads their idle workers spin against each other.
// Measured on 2 cores (docs/performance.md): the shapes fine-tune ran 3x slower with --threads 2 than
// with 1, SD 1.5's UNet forward no faster. One BLAS thread per caller, with LibTorch's OpenMP threads
// doing the parallel work, is faster in both (fp32 CFG step 1.09x at 512², 1.38x at 256²; shapes
// fine-tune 3.2x). Does nothing
// when OPENBLAS_NUM_THREADS is set or when OpenBLAS is not loaded.
void single_thread_blas();

// glibc hands every freed block above its (adaptive) mmap threshold back to the kernel and trims
// the heap top eagerly; a training step frees and re-allocates the same activation-sized buffers,
// so the page faults cost ~35% of a CPU step on the shapes model. Keep blocks up to 32 MiB in the
// heap for reuse by the next step (the heap is trimmed only above 1 GiB free). SINE_SYSTEM_MALLOC=1
// keeps glibc's defaults, for comparison. No effect with other C libraries.
void init_allocator();

// Frees the parameters and buffers of `module` (each becomes an empty tensor of its dtype/device)
// and hands the freed heap pages back to the system (malloc_trim): memory a one-shot run no longer
// needs. The module cannot run afterwards.
void release_weights(torch::nn::Module& module);

// While alive, new tensors without an explicit dtype (module parameters at construction) get `dtype`,
// so a bf16 model is built in bf16 instead of in fp32 and converted (twice the memory at the peak).
class ScopedDefaultDtype {
 public:
  explicit ScopedDefaultDtype(torch::ScalarType dtype);
  ~ScopedDefaultDtype();
  ScopedDefaultDtype(const ScopedDefaultDtype&) = delete;
  ScopedDefaultDtype& operator=(const ScopedDefaultDtype&) = delete;

 private:
  caffe2::TypeMeta previous_;
};

torch::Device parse_device(const std::string& name);        // "cpu", "cuda", "cuda:1"
torch::ScalarType parse_dtype(const std::string& name);     // "fp32", "fp16", "bf16"
std::string dtype_name(torch::ScalarType dtype);

}  // namespace sine
