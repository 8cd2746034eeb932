// libFuzzer: the safetensors header and tensor table (length, JSON, dtypes, shapes, offsets).
// Every input either parses into a table whose ranges are inside the data and do not overlap, or
// is a sine::Error; nothing else (a crash, a sanitizer report, another exception) is allowed.
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "io/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto header = sine::parse_safetensors_header(data, size, "fuzz.safetensors");
    const size_t data_size = size - header.data_offset;
    for (const auto& [key, info] : header.infos) {
      size_t bytes = sine::safetensors_dtype_size(info.dtype);
      for (int64_t d : info.shape) bytes *= static_cast<size_t>(d);
      if (info.begin > info.end || info.end > data_size || info.end - info.begin != bytes) std::abort();
    }
  } catch (const sine::Error&) {
  }
  return 0;
}
