#include "server/image_codec.h"

#include "io/image_bytes.h"
#include "server/request_fields.h"

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

// The header's size against the limits (413) before anything is decoded; not an image: 400.
void check_limits(const std::string& bytes, const std::string& field, const ImageLimits& limits) {
  ImageHeader header;
  try {
    header = image_bytes_header(bytes, field);
  } catch (const Error& e) {
    throw bad_field(field, std::string(e.what()).substr(field.size() + 2));
  }
  if (header.width > limits.max_side || header.height > limits.max_side ||
      header.width * header.height > limits.max_pixels)
    throw HttpError(413, field,
                    "image is " + std::to_string(header.width) + "x" + std::to_string(header.height) +
                        ", the limit is " + std::to_string(limits.max_side) + " px a side");
}

template <class F>
torch::Tensor decode_checked(const std::string& bytes, const std::string& field, const ImageLimits& limits, F decode) {
  check_limits(bytes, field, limits);
  try {
    return decode(bytes, field);
  } catch (const HttpError&) {
    throw;
  } catch (const Error& e) {
    throw bad_field(field, std::string(e.what()).substr(field.size() + 2));
  }
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
  return decode_checked(bytes, field, limits, decode_image_rgb_bytes);
}

torch::Tensor decode_mask(const std::string& bytes, const std::string& field, const ImageLimits& limits) {
  return decode_checked(bytes, field, limits, decode_mask_bytes);
}

std::string encode_png(const torch::Tensor& rgb_u8, const std::map<std::string, std::string>& text) {
  return encode_png_bytes(rgb_u8, text);
}

}  // namespace sine::server
