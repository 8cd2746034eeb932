#pragma once
#include <torch/torch.h>
#include <string>

namespace sine {

// LibTorch defaults to one thread on some machines: use every core unless told otherwise.
void init_threads(int threads = 0);

torch::Device parse_device(const std::string& name);        // "cpu", "cuda", "cuda:1"
torch::ScalarType parse_dtype(const std::string& name);     // "fp32", "fp16", "bf16"
std::string dtype_name(torch::ScalarType dtype);

}  // namespace sine
