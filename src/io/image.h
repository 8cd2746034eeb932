#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sine {

// Images in memory are uint8 [H,W,3] (or [H,W,4]) CPU tensors, rows top to bottom, as decoded.
// Reading uses stb_image (PNG, JPEG, BMP, TGA, GIF first frame), applies the JPEG EXIF orientation
// so phone photos come out upright, and throws sine::Error("<path>: cannot read image (<reason>)").
// The header's size is checked before decoding: at most 16384 px a side and 67 megapixels.

// Transparent pixels are composited over white (a cutout on a transparent background becomes a
// cutout on white); gray images are repeated into three channels.
torch::Tensor read_image_rgb(const std::string& path);
// uint8 [H,W,4]; alpha is 255 where the file has none.
torch::Tensor read_image_rgba(const std::string& path);
// float [1,1,height,width] in [0,1]: the alpha channel when the file has a non-opaque one,
// otherwise the brightest of R, G, B per pixel (so white-on-black masks and black-background
// cutouts both work). Resized with antialiased bilinear filtering, so edges may be fractional:
// threshold it where a binary mask is needed.
torch::Tensor read_mask(const std::string& path, int64_t height, int64_t width);

// uint8 [H,W,3] -> float32 [1,3,H,W] in [-1,1] (x/255·2−1), on the input's device.
torch::Tensor to_model_input(const torch::Tensor& rgb_u8);
// [1,3,H,W] or [3,H,W] in [-1,1], any device/dtype -> CPU uint8 [H,W,3] via
// round(clamp(x/2+0.5, 0, 1)·255), as diffusers' pipelines do.
torch::Tensor from_model_output(const torch::Tensor& x);

// Antialiased bicubic resampling (PyTorch's antialias=True, which follows PIL's BICUBIC filter,
// the resampling SINE's training data uses); a no-op copy at the same size.
torch::Tensor resize_rgb(const torch::Tensor& rgb_u8, int64_t height, int64_t width);

// How an image of any size meets a target size.
enum class FitPolicy {
  CenterCrop,  // keep the aspect ratio, cut the largest centred box of the target's shape, scale it
  Resize,      // stretch to the target, ignoring the aspect ratio (SINE's own preprocessing)
  Pad,         // keep the aspect ratio, scale to fit inside, fill the borders with white
};
constexpr FitPolicy kDefaultFitPolicy = FitPolicy::CenterCrop;
// --fit values: "crop", "resize", "pad"; anything else is a sine::Error naming --fit.
FitPolicy parse_fit_policy(const std::string& name);
const char* fit_policy_name(FitPolicy policy);
// Text for --help of every command that reads an input image.
extern const char* const kImageFitPolicyHelp;

torch::Tensor fit_image(const torch::Tensor& rgb_u8, int64_t height, int64_t width,
                        FitPolicy policy = kDefaultFitPolicy);
// Rounds both sides down to multiples of `multiple` (the VAE factor), at least `multiple`.
std::pair<int64_t, int64_t> snap_size(int64_t height, int64_t width, int64_t multiple = 8);

// 8-bit RGB PNG via libpng, written atomically (temp file + rename). Each text entry becomes a
// tEXt chunk (ASCII values) or an iTXt chunk (UTF-8 values) before the image data. Keys must
// be 1–79 printable ASCII characters without leading or trailing spaces.
void write_png(const std::string& path, const torch::Tensor& rgb_u8,
               const std::map<std::string, std::string>& text = {});
// All tEXt, zTXt and iTXt chunks (before and after the image data), as UTF-8.
std::map<std::string, std::string> read_png_text(const std::string& path);

// Tiles uint8 [H,W,3] images row by row on a white background with `padding` pixels between
// and around them. Images of different sizes are centred in cells of the largest size. Labels
// (optional, one per image, printable ASCII; other characters print as '?') are drawn in black
// below each image with stb_easy_font and clipped to the cell width.
torch::Tensor make_grid(const std::vector<torch::Tensor>& images_u8, int64_t columns, int64_t padding = 4,
                        const std::vector<std::string>& labels = {});

}  // namespace sine
