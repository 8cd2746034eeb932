// Thread set-up: LibTorch's OpenMP pool does the parallel work, OpenBLAS one thread per caller.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cstdlib>

#include "core/runtime.h"

namespace {

using GetThreads = int (*)();
using SetThreads = void (*)(int);

GetThreads openblas_get() {
  return reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
}
SetThreads openblas_set() {
  return reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}

TEST(Runtime, InitThreadsSetsTorchThreadsAndOneBlasThread) {
  unsetenv("OPENBLAS_NUM_THREADS");
  sine::init_threads(2);
  EXPECT_EQ(torch::get_num_threads(), 2);
  if (!openblas_get()) GTEST_SKIP() << "OpenBLAS is not loaded in this build (LibTorch with MKL)";
  openblas_set()(2);
  sine::init_threads(2);
  EXPECT_EQ(openblas_get()(), 1);
}

TEST(Runtime, TheUsersOpenBlasThreadCountIsKept) {
  if (!openblas_get()) GTEST_SKIP() << "OpenBLAS is not loaded in this build (LibTorch with MKL)";
  setenv("OPENBLAS_NUM_THREADS", "2", 1);
  openblas_set()(2);
  sine::single_thread_blas();
  EXPECT_EQ(openblas_get()(), 2);
  unsetenv("OPENBLAS_NUM_THREADS");
  sine::single_thread_blas();
  EXPECT_EQ(openblas_get()(), 1);
}

}  // namespace
