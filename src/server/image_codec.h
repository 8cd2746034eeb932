#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

// Images travelling in requests and responses: base64 text (optionally a data: URL), PNG/JPEG
// bytes checked against the size limits from their header before anything is decoded.
namespace sine::server {

struct ImageLimits {
  int64_t max_side = 4096;                    // pixels, either side
  int64_t max_pixels = 4096LL * 4096;         // width × height
};

std::string base64_encode(const std::string& bytes);
// Accepts "data:image/png;base64,...." as well as bare base64; `field` names the request field in
// the 400 error for malformed text.
std::string base64_decode(const std::string& text, const std::string& field);

// Decodes PNG/JPEG/BMP/... bytes to uint8 [H, W, 3] as io/image_bytes.h does (EXIF orientation,
// alpha composited over white). Throws
// HttpError 413 when the header announces a size over the limits (nothing is decoded then), 400
// when the bytes are not an image; both name `field`.
torch::Tensor decode_image(const std::string& bytes, const std::string& field, const ImageLimits& limits = {});
// A mask image as float [H, W] in [0, 1]: its alpha channel when it has a non-opaque one,
// otherwise the brightest of R, G, B (white = 1), as io/image.h's read_mask.
torch::Tensor decode_mask(const std::string& bytes, const std::string& field, const ImageLimits& limits = {});

// uint8 [H, W, 3] -> PNG bytes, with tEXt/iTXt chunks for `text` (e.g. A1111's "parameters").
std::string encode_png(const torch::Tensor& rgb_u8, const std::map<std::string, std::string>& text = {});

}  // namespace sine::server
