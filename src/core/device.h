#pragma once
// Device queries that need CUDA headers when CUDA is compiled in; the one place that includes them.
#include <torch/torch.h>

#include <string>

namespace sine {

// Waits for the device's queued work (a no-op on the CPU).
void synchronize(const torch::Device& device);

// Starts a new peak-memory window on `device` (CUDA allocator statistics; nothing to do on the CPU,
// whose peak RSS is a process-wide high-water mark).
void reset_peak_memory(const torch::Device& device);

// Bytes at the peak: CUDA's max_memory_allocated since the last reset, or the process's peak RSS.
double peak_memory_bytes(const torch::Device& device);
std::string peak_memory_kind(const torch::Device& device);  // "CUDA allocator peak" / "process peak RSS"

// Bytes a new allocation can still get on `device`: MemAvailable from /proc/meminfo on the CPU
// (cgroup limits included where one is set), cudaMemGetInfo's free memory plus what the caching
// allocator holds unused on CUDA. 0 when unknown.
double available_memory_bytes(const torch::Device& device);

// "cpu" plus one "cuda:N NAME (X GiB)" per visible GPU, for --version and the bench header.
std::string describe_devices();

// The multi-line answer of `sine --version`: sine, LibTorch, CUDA compiled in, devices found.
std::string version_report();

}  // namespace sine
