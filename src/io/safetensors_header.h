#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

// The safetensors container's header, checked as huggingface/safetensors checks it (and more):
// no LibTorch here, so the parser builds and is fuzzed on its own (tests/fuzz/fuzz_safetensors.cpp).
namespace sine {

struct TensorInfo {
  std::string dtype;             // safetensors dtype string: F32, F16, BF16, I64, ...
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;     // byte range inside the data section
};

inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;  // as huggingface/safetensors

struct SafetensorsHeader {
  std::map<std::string, TensorInfo> infos;
  std::map<std::string, std::string> metadata;
  size_t data_offset = 0;  // where the data section starts in the file (8 + header length)
};

// Bytes per element of a safetensors dtype name; 0 when unknown.
size_t safetensors_dtype_size(const std::string& name);

// Parses and checks the header of a whole file held in `bytes` (`size` bytes): the 8-byte length
// (at most 100 MB and inside the file), JSON (UTF-8) whose top level is an object, string metadata,
// every tensor's dtype, non-negative shape whose byte size does not overflow and equals its byte
// range, ranges inside the data section and not overlapping. Any violation is a sine::Error that
// names `path` (and the tensor).
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& path);

}  // namespace sine
