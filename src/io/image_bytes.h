#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

// Images as bytes in memory (uploads, HTTP responses), decoded and encoded exactly as the file
// functions of io/image.h do: stb_image with the JPEG EXIF orientation applied, alpha over white,
// masks from alpha or the brightest channel; PNG via libpng with text chunks. `what` names the
// source in errors ("init_images[0]: cannot read image (...)").
namespace sine {

struct ImageHeader {
  int64_t width = 0, height = 0;
};
// The size the header announces, nothing decoded; throws sine::Error when the bytes are not an image.
ImageHeader image_bytes_header(const std::string& bytes, const std::string& what);

// uint8 [H,W,3], as read_image_rgb.
torch::Tensor decode_image_rgb_bytes(const std::string& bytes, const std::string& what);
// float [H,W] in [0,1], as read_mask at the image's own size.
torch::Tensor decode_mask_bytes(const std::string& bytes, const std::string& what);

// uint8 [H,W,3] -> PNG bytes with a tEXt/iTXt chunk per entry (as write_png, which writes these bytes).
std::string encode_png_bytes(const torch::Tensor& rgb_u8, const std::map<std::string, std::string>& text = {});

}  // namespace sine
