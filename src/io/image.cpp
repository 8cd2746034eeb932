#include "io/image.h"
#include "io/image_bytes.h"

#include <png.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/atomic_file.h"
#include "core/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
// Static so these copies never clash with another library's stb symbols.
#define STB_IMAGE_STATIC
// stb's own limit (its loaders refuse larger sides themselves) is above ours, so that stbi_info
// still reports the size and the check in decode_bytes can name it.
#define STBI_MAX_DIMENSIONS (1 << 20)
// The formats images are exchanged in (PNG, JPEG, BMP, TGA, GIF). Debian's stb_image 2.27 has
// integer overflows in the PNM header reader (found by fuzz_image) and the rarely used PSD, HDR
// and PIC readers are left out with it: less code reading strangers' bytes.
#define STBI_NO_PNM
#define STBI_NO_PSD
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace sine {

namespace {

namespace F = torch::nn::functional;

[[noreturn]] void cannot_read(const std::string& path, const std::string& reason) {
  throw Error(path + ": cannot read image (" + reason + ")");
}

std::vector<uint8_t> read_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) cannot_read(path, "it is a folder");
  std::ifstream in(path, std::ios::binary);
  if (!in) cannot_read(path, std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) cannot_read(path, "read error");
  if (bytes.empty()) cannot_read(path, "empty file");
  return bytes;
}

// The EXIF orientation tag (1..8) of a JPEG, 1 when absent or malformed.
int jpeg_exif_orientation(const std::vector<uint8_t>& b) {
  if (b.size() < 4 || b[0] != 0xFF || b[1] != 0xD8) return 1;
  size_t pos = 2;
  while (pos + 4 <= b.size() && b[pos] == 0xFF) {
    const uint8_t marker = b[pos + 1];
    if (marker == 0xDA || marker == 0xD9) break;  // image data starts: no metadata after this
    const size_t len = (size_t(b[pos + 2]) << 8) | b[pos + 3];
    if (len < 2 || pos + 2 + len > b.size()) break;
    if (marker == 0xE1 && len >= 16 && std::memcmp(&b[pos + 4], "Exif\0\0", 6) == 0) {
      const uint8_t* tiff = &b[pos + 10];
      const size_t size = len - 8;
      const bool le = tiff[0] == 'I' && tiff[1] == 'I';
      if (!le && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
      auto u16 = [&](size_t o) { return le ? uint32_t(tiff[o]) | uint32_t(tiff[o + 1]) << 8
                                           : uint32_t(tiff[o]) << 8 | uint32_t(tiff[o + 1]); };
      auto u32 = [&](size_t o) { return le ? u16(o) | u16(o + 2) << 16 : u16(o) << 16 | u16(o + 2); };
      if (u16(2) != 42) return 1;
      const size_t ifd = u32(4);
      if (ifd + 2 > size) return 1;
      const size_t count = u16(ifd);
      for (size_t i = 0; i < count && ifd + 2 + 12 * (i + 1) <= size; ++i) {
        const size_t entry = ifd + 2 + 12 * i;
        if (u16(entry) == 0x0112 && u16(entry + 2) == 3) {
          const int value = static_cast<int>(u16(entry + 8));
          return value >= 1 && value <= 8 ? value : 1;
        }
      }
      return 1;
    }
    pos += 2 + len;
  }
  return 1;
}

// Turns a stored [H,W,C] image into its display orientation (EXIF 2..8).
torch::Tensor apply_orientation(const torch::Tensor& img, int orientation) {
  switch (orientation) {
    case 2: return img.flip({1});
    case 3: return img.flip({0, 1});
    case 4: return img.flip({0});
    case 5: return img.transpose(0, 1);
    case 6: return img.transpose(0, 1).flip({1});
    case 7: return img.transpose(0, 1).flip({0, 1});
    case 8: return img.transpose(0, 1).flip({0});
    default: return img;
  }
}

// What a file may announce before it is decoded (RGBA: 256 MiB at most).
constexpr int kMaxImageSide = 16384;
constexpr int64_t kMaxImagePixels = int64_t(1) << 26;  // 67 MP

// Debian's stb_image is 2.27, whose JPEG Huffman table builder writes past its 257-entry size
// list when a DHT table's 16 code counts sum to more than 256 (upstream 2.28 added the check; found
// here by fuzz_image under UBSan). The same check before stb sees the bytes: every DHT table in
// the file, in the header and between scans, must hold at most 256 codes and fit its segment.
bool jpeg_huffman_tables_valid(const uint8_t* data, size_t size) {
  // stb takes any run of 0xFF fill bytes before the SOI marker.
  size_t pos = 0;
  while (pos < size && data[pos] == 0xFF) ++pos;
  if (pos == 0 || pos >= size || data[pos] != 0xD8) return true;  // not a JPEG
  ++pos;
  while (pos + 1 < size) {
    if (data[pos] != 0xFF) {  // entropy-coded data after a scan: skip to the next marker
      ++pos;
      continue;
    }
    const uint8_t marker = data[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    pos += 2;
    if (marker == 0x00 || marker == 0x01 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7)) continue;
    if (marker == 0xD9) return true;  // end of image
    if (pos + 2 > size) return true;  // truncated: stb reports it
    const size_t length = (size_t(data[pos]) << 8) | data[pos + 1];
    if (length < 2) return false;
    if (marker == 0xC4) {
      // As stb reads it: tables until the declared length is used up, bytes past the end of the
      // file reading as 0.
      auto byte = [&](size_t i) -> size_t { return i < size ? data[i] : 0; };
      for (size_t p = pos + 2; p < pos + length;) {
        size_t codes = 0;
        for (size_t i = 1; i <= 16; ++i) codes += byte(p + i);
        if (codes > 256) return false;
        p += 17 + codes;
      }
    }
    pos = std::min(size, pos + length);
  }
  return true;
}

struct Decoded {
  torch::Tensor rgba;      // uint8 [H,W,4]
  bool has_alpha = false;  // the file stores an alpha channel
};

Decoded decode_bytes(const uint8_t* data, size_t size, const std::string& what) {
  if (size == 0) cannot_read(what, "empty");
  if (size > size_t(INT32_MAX)) cannot_read(what, "larger than 2 GB");
  if (!jpeg_huffman_tables_valid(data, size)) cannot_read(what, "corrupt JPEG (a Huffman table holds more than 256 codes)");
  int width = 0, height = 0, channels = 0;
  // The header's size is checked before anything is decoded: a few bytes can announce gigapixels.
  if (stbi_info_from_memory(data, static_cast<int>(size), &width, &height, &channels)) {
    const int64_t pixels = int64_t(width) * int64_t(height);
    if (width > kMaxImageSide || height > kMaxImageSide || pixels > kMaxImagePixels)
      cannot_read(what, "its header announces " + std::to_string(width) + "x" + std::to_string(height) +
                            " pixels (at most " + std::to_string(kMaxImageSide) + " a side and " +
                            std::to_string(kMaxImagePixels / 1000000) + " megapixels are read)");
  }
  stbi_uc* pixels = stbi_load_from_memory(data, static_cast<int>(size), &width, &height, &channels, 4);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    cannot_read(what, reason && *reason ? std::string(reason) + ", or not an image format stb_image reads"
                                        : "truncated or corrupt image data");
  }
  if (width < 1 || height < 1) {
    stbi_image_free(pixels);
    cannot_read(what, "the image has no pixels (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  }
  // stb's buffer becomes the tensor's storage: no second copy of a large image.
  auto rgba = torch::from_blob(pixels, {height, width, 4}, [](void* p) { stbi_image_free(p); }, torch::kUInt8);
  rgba = apply_orientation(rgba, jpeg_exif_orientation(std::vector<uint8_t>(data, data + std::min<size_t>(size, 1 << 17))))
             .contiguous();
  return {rgba, channels == 2 || channels == 4};
}

Decoded decode(const std::string& path) {
  const auto bytes = read_file(path);
  return decode_bytes(bytes.data(), bytes.size(), path);
}

// Integer "over white" with rounding: exact for alpha 0 and 255.
// One pass in uint8: a 16-megapixel image needs its 48 MB of output and nothing else (wider
// integer tensors held several hundred MB each; found by fuzz_image).
torch::Tensor over_white(const torch::Tensor& rgba_u8) {
  const auto rgba = rgba_u8.contiguous();
  const int64_t pixels = rgba.size(0) * rgba.size(1);
  auto rgb = torch::empty({rgba.size(0), rgba.size(1), 3}, torch::kUInt8);
  const uint8_t* src = rgba.data_ptr<uint8_t>();
  uint8_t* dst = rgb.data_ptr<uint8_t>();
  for (int64_t i = 0; i < pixels; ++i, src += 4, dst += 3) {
    const int alpha = src[3];
    for (int c = 0; c < 3; ++c) dst[c] = static_cast<uint8_t>((src[c] * alpha + 255 * (255 - alpha) + 127) / 255);
  }
  return rgb;
}

// The alpha channel when the image has a non-opaque one, else the brightest of R, G, B; uint8 [H,W].
torch::Tensor mask_channel(const Decoded& decoded) {
  auto alpha = decoded.rgba.select(2, 3);
  return decoded.has_alpha && alpha.min().item<int64_t>() < 255 ? alpha
                                                                 : decoded.rgba.narrow(2, 0, 3).amax(2);
}

torch::Tensor checked_rgb(const torch::Tensor& t, const char* what) {
  if (!t.defined() || t.scalar_type() != torch::kUInt8 || t.dim() != 3 || t.size(2) != 3 || t.size(0) < 1 ||
      t.size(1) < 1)
    throw Error(std::string(what) + ": expected a uint8 [H,W,3] image, got " +
                (t.defined() ? std::string(c10::toString(t.scalar_type())) + " " + c10::str(t.sizes()) : "nothing"));
  return t.to(torch::kCPU).contiguous();
}

void check_size(int64_t height, int64_t width, const char* what) {
  if (height < 1 || width < 1)
    throw Error(std::string(what) + ": target size " + std::to_string(width) + "x" + std::to_string(height) +
                " must be positive");
}

// Float [N,C,H,W]; the antialiasing widens the filter when shrinking, as PIL does.
torch::Tensor bicubic_resize(const torch::Tensor& x, int64_t height, int64_t width) {
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBicubic)
                               .align_corners(false)
                               .antialias(true));
}

std::string latin1_to_utf8(const char* s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

bool is_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// libpng reports errors by longjmp: the two functions below keep only trivially destructible
// state alive across libpng calls and return an error message (empty on success).
struct PngError {
  char message[256] = {0};
};

void png_error_to_buffer(png_structp png, png_const_charp message) {
  auto* error = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(error->message, sizeof(error->message), "%s", message ? message : "libpng error");
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

void png_append(png_structp png, png_bytep data, png_size_t length) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), length);
}
void png_flush_nothing(png_structp) {}

// PNG bytes appended to *out; returns an error message (empty on success). `out` outlives the
// longjmp libpng may take, so nothing here needs unwinding.
std::string encode_png_memory(std::string* out, const uint8_t* rgb, png_uint_32 height, png_uint_32 width,
                              png_textp texts, int num_texts) {
  PngError error;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &error, png_error_to_buffer, png_ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, nullptr);
    return "out of memory";
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return error.message;
  }
  png_set_write_fn(png, out, png_append, png_flush_nothing);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (num_texts > 0) png_set_text(png, info, texts, num_texts);
  png_write_info(png, info);
  for (png_uint_32 y = 0; y < height; ++y) png_write_row(png, rgb + size_t(y) * width * 3);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return {};
}

std::string decode_png_text(const char* path, std::map<std::string, std::string>* out) {
  PngError error;
  FILE* fp = std::fopen(path, "rb");
  if (!fp) return std::strerror(errno);
  png_byte signature[8] = {0};
  if (std::fread(signature, 1, 8, fp) != 8 || png_sig_cmp(signature, 0, 8) != 0) {
    std::fclose(fp);
    return "not a PNG file";
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, png_error_to_buffer, png_ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  png_infop end_info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || !end_info) {
    png_destroy_read_struct(&png, &info, &end_info);
    std::fclose(fp);
    return "out of memory";
  }
  // volatile: assigned after setjmp and read after the longjmp (found by fuzz_image as a leak).
  png_bytep volatile row = nullptr;
  if (setjmp(png_jmpbuf(png))) {
    png_free(png, row);
    png_destroy_read_struct(&png, &info, &end_info);
    std::fclose(fp);
    return error.message;
  }
  png_init_io(png, fp);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  // Text chunks may follow the image data, so the rows have to be read (and dropped) to reach them.
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  row = static_cast<png_bytep>(png_malloc(png, png_get_rowbytes(png, info)));
  const png_uint_32 height = png_get_image_height(png, info);
  for (int pass = 0; pass < passes; ++pass)
    for (png_uint_32 y = 0; y < height; ++y) png_read_row(png, row, nullptr);
  png_read_end(png, end_info);
  for (png_infop source : {info, end_info}) {
    png_textp texts = nullptr;
    const int n = png_get_text(png, source, &texts, nullptr);
    for (int i = 0; i < n; ++i) {
      const bool utf8 = texts[i].compression == PNG_ITXT_COMPRESSION_NONE ||
                        texts[i].compression == PNG_ITXT_COMPRESSION_zTXt;
      const size_t length = utf8 ? texts[i].itxt_length : texts[i].text_length;
      std::string key = latin1_to_utf8(texts[i].key, std::strlen(texts[i].key));
      (*out)[key] = utf8 ? std::string(texts[i].text, length) : latin1_to_utf8(texts[i].text, length);
    }
  }
  png_free(png, row);
  png_destroy_read_struct(&png, &info, &end_info);
  std::fclose(fp);
  return {};
}

void check_png_key(const std::string& path, const std::string& key, const std::string& value) {
  const bool printable = std::all_of(key.begin(), key.end(), [](char c) { return c >= 32 && c <= 126; });
  if (key.empty() || key.size() > 79 || !printable || key.front() == ' ' || key.back() == ' ' ||
      key.find("  ") != std::string::npos)
    throw Error(path + ": PNG text key '" + key +
                "' is invalid (1-79 printable ASCII characters, no leading, trailing or double spaces)");
  if (value.find('\0') != std::string::npos) throw Error(path + ": PNG text '" + key + "' contains a NUL byte");
}

// Blackens the rectangle [x0,x1)×[y0,y1) of an [H,W,3] uint8 image, clipped to the box
// [bx0,bx1)×[by0,by1).
void fill_black(uint8_t* img, int64_t img_width, int64_t bx0, int64_t by0, int64_t bx1, int64_t by1, int64_t x0,
                int64_t y0, int64_t x1, int64_t y1) {
  x0 = std::max(x0, bx0), y0 = std::max(y0, by0), x1 = std::min(x1, bx1), y1 = std::min(y1, by1);
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) std::memset(img + (y * img_width + x) * 3, 0, 3);
}

}  // namespace

torch::Tensor read_image_rgba(const std::string& path) { return decode(path).rgba; }

torch::Tensor read_image_rgb(const std::string& path) { return over_white(decode(path).rgba); }

torch::Tensor read_mask(const std::string& path, int64_t height, int64_t width) {
  check_size(height, width, "mask");
  auto m = mask_channel(decode(path)).to(torch::kFloat32).div(255.0).unsqueeze(0).unsqueeze(0);
  if (m.size(2) == height && m.size(3) == width) return m;
  m = F::interpolate(m, F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{height, width})
                            .mode(torch::kBilinear)
                            .align_corners(false)
                            .antialias(true));
  return m.clamp(0.0, 1.0);
}

torch::Tensor to_model_input(const torch::Tensor& rgb_u8) {
  if (!rgb_u8.defined() || rgb_u8.scalar_type() != torch::kUInt8 || rgb_u8.dim() != 3 || rgb_u8.size(2) != 3)
    throw Error("model input: expected a uint8 [H,W,3] image");
  return rgb_u8.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32).div(255.0).mul(2.0).sub(1.0).contiguous();
}

torch::Tensor from_model_output(const torch::Tensor& x) {
  auto t = x.detach();
  if (t.dim() == 4 && t.size(0) == 1) t = t.squeeze(0);
  if (t.dim() != 3 || t.size(0) != 3)
    throw Error("model output: expected a [1,3,H,W] image, got " + c10::str(x.sizes()));
  t = t.to(torch::kCPU, torch::kFloat32);
  return (t / 2 + 0.5).clamp(0.0, 1.0).mul(255.0).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous();
}

torch::Tensor resize_rgb(const torch::Tensor& rgb_u8, int64_t height, int64_t width) {
  auto img = checked_rgb(rgb_u8, "resize");
  check_size(height, width, "resize");
  if (img.size(0) == height && img.size(1) == width) return img.clone();
  auto x = img.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32);
  auto y = bicubic_resize(x, height, width);
  return y.round().clamp(0, 255).to(torch::kUInt8).squeeze(0).permute({1, 2, 0}).contiguous();
}

FitPolicy parse_fit_policy(const std::string& name) {
  if (name == "crop") return FitPolicy::CenterCrop;
  if (name == "resize") return FitPolicy::Resize;
  if (name == "pad") return FitPolicy::Pad;
  throw Error("fit: unknown value '" + name + "' (expected crop, resize or pad)");
}

const char* fit_policy_name(FitPolicy policy) {
  switch (policy) {
    case FitPolicy::CenterCrop: return "crop";
    case FitPolicy::Resize: return "resize";
    case FitPolicy::Pad: return "pad";
  }
  return "crop";
}

const char* const kImageFitPolicyHelp =
    "How an input image of any size meets the target size: 'crop' (default) keeps the aspect ratio and cuts "
    "the largest centred box of the target's shape, 'resize' stretches the whole image, 'pad' fits it inside "
    "and fills the borders with white. Scaling is antialiased bicubic. Transparent pixels are composited over "
    "white. Where no size is given, the image's own size rounded down to multiples of 8 is used.";

torch::Tensor fit_image(const torch::Tensor& rgb_u8, int64_t height, int64_t width, FitPolicy policy) {
  auto img = checked_rgb(rgb_u8, "fit");
  check_size(height, width, "fit");
  const int64_t h = img.size(0), w = img.size(1);
  if (h == height && w == width) return img.clone();
  switch (policy) {
    case FitPolicy::Resize: return resize_rgb(img, height, width);
    case FitPolicy::CenterCrop: {
      // Compare aspect ratios as w/h > width/height without rounding.
      int64_t ch = h, cw = w;
      if (w * height > width * h)
        cw = std::clamp<int64_t>((h * width + height / 2) / height, 1, w);
      else
        ch = std::clamp<int64_t>((w * height + width / 2) / width, 1, h);
      auto crop = img.narrow(0, (h - ch) / 2, ch).narrow(1, (w - cw) / 2, cw);
      return resize_rgb(crop, height, width);
    }
    case FitPolicy::Pad: {
      int64_t rh = height, rw = width;
      if (w * height > width * h)
        rh = std::clamp<int64_t>((h * width + w / 2) / w, 1, height);
      else
        rw = std::clamp<int64_t>((w * height + h / 2) / h, 1, width);
      auto canvas = torch::full({height, width, 3}, 255, torch::kUInt8);
      canvas.narrow(0, (height - rh) / 2, rh).narrow(1, (width - rw) / 2, rw).copy_(resize_rgb(img, rh, rw));
      return canvas;
    }
  }
  return img;
}

std::pair<int64_t, int64_t> snap_size(int64_t height, int64_t width, int64_t multiple) {
  if (multiple < 1) throw Error("snap_size: multiple must be positive (got " + std::to_string(multiple) + ")");
  check_size(height, width, "snap_size");
  auto snap = [&](int64_t v) { return std::max(multiple, v / multiple * multiple); };
  return {snap(height), snap(width)};
}

namespace {

// PNG bytes of a checked image with `text` chunks; `what` names the destination in errors.
std::string png_bytes(const torch::Tensor& rgb_u8, const std::map<std::string, std::string>& text, const std::string& what) {
  auto img = checked_rgb(rgb_u8, what.c_str());
  if (img.size(0) > PNG_UINT_31_MAX || img.size(1) > PNG_UINT_31_MAX) throw Error(what + ": image too large for PNG");
  std::vector<png_text> chunks;
  for (const auto& [key, value] : text) {
    check_png_key(what, key, value);
    png_text chunk;
    std::memset(&chunk, 0, sizeof(chunk));
    chunk.key = const_cast<char*>(key.c_str());
    chunk.text = const_cast<char*>(value.c_str());
    if (is_ascii(value)) {
      chunk.compression = PNG_TEXT_COMPRESSION_NONE;
      chunk.text_length = value.size();
    } else {
      chunk.compression = PNG_ITXT_COMPRESSION_NONE;
      chunk.itxt_length = value.size();
    }
    chunks.push_back(chunk);
  }
  std::string out;
  auto error = encode_png_memory(&out, img.data_ptr<uint8_t>(), static_cast<png_uint_32>(img.size(0)),
                                 static_cast<png_uint_32>(img.size(1)), chunks.data(), static_cast<int>(chunks.size()));
  if (!error.empty()) throw Error(what + ": cannot write PNG (" + error + ")");
  return out;
}

}  // namespace

void write_png(const std::string& path, const torch::Tensor& rgb_u8, const std::map<std::string, std::string>& text) {
  const std::string bytes = png_bytes(rgb_u8, text, path);
  write_atomically(path, [&](const std::string& tmp) {
    FILE* fp = std::fopen(tmp.c_str(), "wb");
    if (!fp) throw Error(path + ": cannot write PNG (" + std::strerror(errno) + ")");
    const bool written = std::fwrite(bytes.data(), 1, bytes.size(), fp) == bytes.size();
    const int saved = errno;
    if (std::fclose(fp) != 0 || !written)
      throw Error(path + ": cannot write PNG (" + std::strerror(written ? errno : (saved ? saved : EIO)) + ")");
  });
}

std::string encode_png_bytes(const torch::Tensor& rgb_u8, const std::map<std::string, std::string>& text) {
  return png_bytes(rgb_u8, text, "PNG");
}

ImageHeader image_bytes_header(const std::string& bytes, const std::string& what) {
  int w = 0, h = 0, c = 0;
  if (!jpeg_huffman_tables_valid(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()))
    cannot_read(what, "corrupt JPEG (a Huffman table holds more than 256 codes)");
  if (bytes.empty() || bytes.size() > size_t(INT32_MAX) ||
      !stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), static_cast<int>(bytes.size()), &w, &h, &c)) {
    const char* reason = bytes.empty() ? "empty" : stbi_failure_reason();
    cannot_read(what, reason && *reason ? std::string(reason) + ", or not an image format stb_image reads"
                                        : "truncated or corrupt image data");
  }
  return {w, h};
}

torch::Tensor decode_image_rgb_bytes(const std::string& bytes, const std::string& what) {
  return over_white(decode_bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), what).rgba);
}

torch::Tensor decode_mask_bytes(const std::string& bytes, const std::string& what) {
  auto decoded = decode_bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), what);
  return mask_channel(decoded).to(torch::kFloat32).div(255.0).contiguous();
}

std::map<std::string, std::string> read_png_text(const std::string& path) {
  std::map<std::string, std::string> out;
  auto error = decode_png_text(path.c_str(), &out);
  if (!error.empty()) throw Error(path + ": cannot read PNG text (" + error + ")");
  return out;
}

torch::Tensor make_grid(const std::vector<torch::Tensor>& images_u8, int64_t columns, int64_t padding,
                        const std::vector<std::string>& labels) {
  if (images_u8.empty()) throw Error("grid: no images");
  if (!labels.empty() && labels.size() != images_u8.size())
    throw Error("grid: " + std::to_string(labels.size()) + " labels for " + std::to_string(images_u8.size()) +
                " images");
  if (padding < 0) throw Error("grid: padding must be >= 0");
  std::vector<torch::Tensor> images;
  int64_t cell_h = 0, cell_w = 0;
  for (const auto& image : images_u8) {
    images.push_back(checked_rgb(image, "grid"));
    cell_h = std::max(cell_h, images.back().size(0));
    cell_w = std::max(cell_w, images.back().size(1));
  }
  const auto n = static_cast<int64_t>(images.size());
  const int64_t cols = columns < 1 ? n : std::min(columns, n);
  const int64_t rows = (n + cols - 1) / cols;
  // stb_easy_font glyphs sit on a 12-pixel line; scale them up on large cells to stay legible.
  const int64_t scale = std::max<int64_t>(1, cell_w / 256);
  const int64_t label_h = labels.empty() ? 0 : 12 * scale + 2;
  const int64_t grid_h = rows * (cell_h + label_h) + (rows + 1) * padding;
  const int64_t grid_w = cols * cell_w + (cols + 1) * padding;
  auto grid = torch::full({grid_h, grid_w, 3}, 255, torch::kUInt8);
  auto* pixels = grid.data_ptr<uint8_t>();
  std::vector<char> vertices(64 * 4096);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t top = padding + (i / cols) * (cell_h + label_h + padding);
    const int64_t left = padding + (i % cols) * (cell_w + padding);
    const auto& img = images[static_cast<size_t>(i)];
    grid.narrow(0, top + (cell_h - img.size(0)) / 2, img.size(0))
        .narrow(1, left + (cell_w - img.size(1)) / 2, img.size(1))
        .copy_(img);
    if (labels.empty()) continue;
    std::string label = labels[static_cast<size_t>(i)];
    for (char& c : label)
      if (c < 32 || c > 126) c = '?';
    const int quads = stb_easy_font_print(0, 0, label.data(), nullptr, vertices.data(), static_cast<int>(vertices.size()));
    const int64_t text_top = top + cell_h + 1;
    for (int q = 0; q < quads; ++q) {
      // Each quad is an axis-aligned rectangle: vertices 0 and 2 are opposite corners.
      const auto* v = reinterpret_cast<const float*>(vertices.data() + size_t(q) * 64);
      const int64_t x0 = static_cast<int64_t>(v[0]), y0 = static_cast<int64_t>(v[1]);
      const int64_t x1 = static_cast<int64_t>(v[8]), y1 = static_cast<int64_t>(v[9]);
      fill_black(pixels, grid_w, left, text_top, left + cell_w, text_top + label_h, left + x0 * scale,
                 text_top + y0 * scale, left + x1 * scale, text_top + y1 * scale);
    }
  }
  return grid;
}

}  // namespace sine
