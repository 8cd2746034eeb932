#include "server/image_codec.h"

#include <png.h>

#include <csetjmp>
#include <cstring>
#include <vector>

#include "server/request_fields.h"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#include <stb/stb_image.h>

namespace sine::server {

namespace {

const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;  // '-' and '_': the URL-safe alphabet
  if (c == '/' || c == '_') return 63;
  return -1;
}

struct DecodedPixels {
  int width = 0, height = 0, channels = 0;
  stbi_uc* data = nullptr;
  ~DecodedPixels() { stbi_image_free(data); }
};

// Checks the header's size, then decodes to `want` channels.
void decode_checked(const std::string& bytes, const std::string& field, const ImageLimits& limits, int want,
                    DecodedPixels& out) {
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, c = 0;
  if (bytes.empty() || !stbi_info_from_memory(data, len, &w, &h, &c))
    throw bad_field(field, std::string("not an image stb_image reads (") + stbi_failure_reason() + ")");
  if (w > limits.max_side || h > limits.max_side || int64_t(w) * h > limits.max_pixels)
    throw HttpError(413, field,
                    "image is " + std::to_string(w) + "x" + std::to_string(h) + ", the limit is " +
                        std::to_string(limits.max_side) + " px a side");
  out.data = stbi_load_from_memory(data, len, &out.width, &out.height, &out.channels, want);
  if (!out.data) throw bad_field(field, std::string("cannot decode image (") + stbi_failure_reason() + ")");
}

struct PngBuffer {
  std::string bytes;
  std::string error;
};

void png_write_to_buffer(png_structp png, png_bytep data, png_size_t length) {
  static_cast<PngBuffer*>(png_get_io_ptr(png))->bytes.append(reinterpret_cast<const char*>(data), length);
}
void png_flush_nothing(png_structp) {}
void png_error_to_string(png_structp png, png_const_charp message) {
  static_cast<PngBuffer*>(png_get_error_ptr(png))->error = message;
  png_longjmp(png, 1);
}
void png_no_warning(png_structp, png_const_charp) {}

bool is_ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

}  // namespace

std::string base64_encode(const std::string& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t n = uint8_t(bytes[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t n = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string base64_decode(const std::string& text, const std::string& field) {
  size_t start = 0;
  if (text.rfind("data:", 0) == 0) {
    const size_t comma = text.find(',');
    if (comma == std::string::npos) throw bad_field(field, "data: URL without a comma");
    start = comma + 1;
  }
  std::string out;
  out.reserve((text.size() - start) / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = start; i < text.size(); ++i) {
    const unsigned char c = text[i];
    if (c == '=') break;
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    const int v = base64_value(c);
    if (v < 0) throw bad_field(field, "not base64 (character " + std::to_string(i) + ")");
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

torch::Tensor decode_image(const std::string& bytes, const std::string& field, const ImageLimits& limits) {
  DecodedPixels px;
  decode_checked(bytes, field, limits, 4, px);
  auto rgba = torch::from_blob(px.data, {px.height, px.width, 4}, torch::kUInt8).to(torch::kFloat32);
  auto alpha = rgba.narrow(2, 3, 1) / 255.0;
  auto rgb = rgba.narrow(2, 0, 3) * alpha + 255.0 * (1 - alpha);  // transparent -> white
  return rgb.round().clamp(0, 255).to(torch::kUInt8).contiguous();
}

torch::Tensor decode_mask(const std::string& bytes, const std::string& field, const ImageLimits& limits) {
  DecodedPixels px;
  decode_checked(bytes, field, limits, 4, px);
  auto rgba = torch::from_blob(px.data, {px.height, px.width, 4}, torch::kUInt8).to(torch::kFloat32) / 255.0;
  auto alpha = rgba.select(2, 3);
  if (alpha.min().item<float>() < 1.0f) return alpha.contiguous();
  return std::get<0>(rgba.narrow(2, 0, 3).max(2)).contiguous();
}

std::string encode_png(const torch::Tensor& rgb_u8, const std::map<std::string, std::string>& text) {
  auto img = rgb_u8.to(torch::kCPU).contiguous();
  if (img.dim() != 3 || img.size(2) != 3 || img.scalar_type() != torch::kUInt8)
    throw Error("encode_png: expected uint8 [H, W, 3]");
  const auto height = static_cast<png_uint_32>(img.size(0)), width = static_cast<png_uint_32>(img.size(1));
  const uint8_t* rgb = img.data_ptr<uint8_t>();

  PngBuffer buffer;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &buffer, png_error_to_string, png_no_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    throw Error("encode_png: out of memory");
  }
  // Kept alive until png_write_info has copied them.
  std::vector<std::string> keys, values;
  std::vector<png_text> chunks(text.size());
  for (const auto& [k, v] : text) {
    keys.push_back(k);
    values.push_back(v);
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    std::memset(&chunks[i], 0, sizeof(png_text));
    chunks[i].compression = is_ascii(values[i]) ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
    chunks[i].key = keys[i].data();
    chunks[i].text = values[i].data();
    if (chunks[i].compression == PNG_TEXT_COMPRESSION_NONE)
      chunks[i].text_length = values[i].size();
    else
      chunks[i].itxt_length = values[i].size();
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw Error("encode_png: " + buffer.error);
  }
  png_set_write_fn(png, &buffer, png_write_to_buffer, png_flush_nothing);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 3);  // responses: speed over the last few percent of size
  if (!chunks.empty()) png_set_text(png, info, chunks.data(), static_cast<int>(chunks.size()));
  png_write_info(png, info);
  for (png_uint_32 y = 0; y < height; ++y) png_write_row(png, const_cast<png_bytep>(rgb + size_t(y) * width * 3));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return std::move(buffer.bytes);
}

}  // namespace sine::server
