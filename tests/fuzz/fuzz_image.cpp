// libFuzzer: the project's image reader on arbitrary bytes (stb_image's PNG/JPEG/BMP/TGA/GIF/PSD/
// PNM/HDR decoders behind the header size check, the JPEG EXIF orientation, alpha over white, the
// mask channel) and the PNG text reader (libpng; A1111's parameters parsed from it).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/error.h"
#include "io/generation_parameters.h"
#include "io/image.h"
#include "io/image_bytes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    auto header = sine::image_bytes_header(bytes, "fuzz");
    auto rgb = sine::decode_image_rgb_bytes(bytes, "fuzz");
    if (rgb.dim() != 3 || rgb.size(2) != 3 || rgb.size(0) * rgb.size(1) != header.width * header.height) std::abort();
    // A header may announce up to 67 megapixels that stb fills in: decoding one takes seconds under
    // ASan, so the mask reader (the same decoder, then one conversion) sees the images of up to 4
    // megapixels; the large ones go through the decoder once, above, within libFuzzer's timeout.
    if (header.width * header.height <= (int64_t(1) << 22)) {
      auto mask = sine::decode_mask_bytes(bytes, "fuzz");
      if (mask.min().item<float>() < 0 || mask.max().item<float>() > 1) std::abort();
    }
  } catch (const sine::Error&) {
  }
  static const std::string path = "/tmp/sine-fuzz-image-" + std::to_string(::getpid()) + ".png";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  try {
    auto text = sine::read_png_text(path);
    auto it = text.find("parameters");
    if (it != text.end()) sine::GenerationParameters::parse(it->second);
  } catch (const sine::Error&) {
  }
  return 0;
}
