// libFuzzer: a fuzzed single-file checkpoint through the whole loader (header, layout detection and
// key mapping, component checks, config inference from the shapes, `sine.config` metadata and
// their consistency checks). Only sine::Error may come out.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/error.h"
#include "io/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/sine-fuzz-checkpoint-" + std::to_string(::getpid()) + ".safetensors";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    auto ckpt = sine::load_checkpoint(path);
    (void)ckpt;
  } catch (const sine::Error&) {
  }
  return 0;
}
