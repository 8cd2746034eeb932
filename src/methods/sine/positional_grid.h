#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

// SINE's fixed sinusoidal positional grid (official positional_encoding.py + UNetModelPatch).
// Per axis, an integer cell index p in 1..G is embedded as e(p) = [sin(p·w_k), cos(p·w_k)],
// w_k = exp(−k·ln(10000)/(half−1)), k = 0..half−1, with D = model_channels/2 values per axis and
// half = D/2. Index 0 is the padding row (all zeros) and is never used by the grid. The grid has
// model_channels channels: 0..D−1 = e(column+1) (constant down a column), D..2D−1 = e(row+1).
// Coordinates are integer cell indices; fractional positions arise only by interpolating the
// precomputed map (never by evaluating sin at fractional arguments).
namespace sine {

enum class GridInterpolation { Bilinear, Nearest };  // bilinear is align_corners=True
GridInterpolation parse_grid_interpolation(const std::string& name);  // "bilinear", "nearest"
const char* grid_interpolation_name(GridInterpolation mode);

// A crop in grid cells: rows [y0, y1), columns [x0, x1) (the official crop_boxes order).
struct CropBox {
  int64_t y0 = 0, x0 = 0, y1 = 0, x1 = 0;
  int64_t height() const { return y1 - y0; }
  int64_t width() const { return x1 - x0; }
};

struct PositionalGridConfig {
  int64_t channels = 320;  // = the UNet's model_channels
  int64_t size = 128;      // G: 2 × the training latent size (128 for SD 1.x at 512 px)
  GridInterpolation interpolation = GridInterpolation::Bilinear;
};

// e(p) for p = 0..num_positions−1 as float [num_positions, dim]; row 0 (padding) is zero.
// dim must be even and at least 4 (sin and cos halves of at least two frequencies).
torch::Tensor sinusoidal_embedding_table(int64_t num_positions, int64_t dim);

class PositionalGrid {
 public:
  explicit PositionalGrid(PositionalGridConfig config);

  const PositionalGridConfig& config() const { return config_; }
  // float [channels, G, G] on the CPU.
  const torch::Tensor& full() const { return grid_; }
  // The grid sliced to `box` and interpolated to height × width: [1, channels, height, width]
  // in `options` (training on a patch). Throws sine::Error for a box outside 0..G or empty.
  torch::Tensor crop(const CropBox& box, int64_t height, int64_t width,
                     const torch::TensorOptions& options = {}) const;
  // The whole grid stretched to any latent height × width (sampling at any size or aspect).
  torch::Tensor stretched(int64_t height, int64_t width, const torch::TensorOptions& options = {}) const;

 private:
  torch::Tensor resize(const torch::Tensor& grid, int64_t height, int64_t width) const;
  PositionalGridConfig config_;
  torch::Tensor grid_;
};

}  // namespace sine
