#include "methods/sine/positional_grid.h"

#include <cmath>

#include "core/error.h"

namespace sine {

GridInterpolation parse_grid_interpolation(const std::string& name) {
  if (name == "bilinear") return GridInterpolation::Bilinear;
  if (name == "nearest") return GridInterpolation::Nearest;
  throw Error("grid_interpolation: unknown interpolation '" + name + "' (use bilinear or nearest)");
}

const char* grid_interpolation_name(GridInterpolation mode) {
  return mode == GridInterpolation::Nearest ? "nearest" : "bilinear";
}

torch::Tensor sinusoidal_embedding_table(int64_t num_positions, int64_t dim) {
  if (dim < 4 || dim % 2)
    throw Error("positional grid: the per-axis embedding size must be even and at least 4 (got " +
                std::to_string(dim) + ")");
  const int64_t half = dim / 2;
  // w_k = exp(−k·ln(10000)/(half−1)) (div_half_dim = false), p·w_k in float32 like the official code.
  auto k = torch::arange(half, torch::kFloat32);
  auto freq = torch::exp(k * static_cast<float>(-std::log(10000.0) / static_cast<double>(half - 1)));
  auto p = torch::arange(num_positions, torch::kFloat32).unsqueeze(1);
  auto arg = p * freq.unsqueeze(0);
  auto table = torch::cat({torch::sin(arg), torch::cos(arg)}, 1);
  table[0].zero_();  // padding_idx 0
  return table;
}

PositionalGrid::PositionalGrid(PositionalGridConfig config) : config_(config) {
  if (config_.channels % 4)
    throw Error("positional grid: model_channels must be a multiple of 4 (got " + std::to_string(config_.channels) +
                ")");
  if (config_.size < 1) throw Error("positional grid: the grid size must be positive");
  const int64_t dim = config_.channels / 2, g = config_.size;
  // Positions 1..G (make_positions: cumulative count of non-padding cells).
  auto table = sinusoidal_embedding_table(g + 1, dim).slice(0, 1, g + 1);  // [G, D]: row i = e(i+1)
  auto columns = table.t().unsqueeze(1).expand({dim, g, g});               // [D, rows, cols] = e(col+1)
  auto rows = table.t().unsqueeze(2).expand({dim, g, g});                  // e(row+1)
  grid_ = torch::cat({columns, rows}, 0).contiguous();
}

torch::Tensor PositionalGrid::resize(const torch::Tensor& grid, int64_t height, int64_t width) const {
  namespace F = torch::nn::functional;
  auto x = grid.unsqueeze(0);
  if (config_.interpolation == GridInterpolation::Nearest)
    return F::interpolate(x, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{height, width})
                                 .mode(torch::kNearest));
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(true));
}

torch::Tensor PositionalGrid::crop(const CropBox& b, int64_t height, int64_t width,
                                   const torch::TensorOptions& options) const {
  const int64_t g = config_.size;
  if (b.y0 < 0 || b.x0 < 0 || b.y1 > g || b.x1 > g || b.height() < 1 || b.width() < 1)
    throw Error("positional grid: crop box [" + std::to_string(b.y0) + "," + std::to_string(b.x0) + "," +
                std::to_string(b.y1) + "," + std::to_string(b.x1) + "] is empty or outside the " +
                std::to_string(g) + "x" + std::to_string(g) + " grid");
  auto slice = grid_.slice(1, b.y0, b.y1).slice(2, b.x0, b.x1);
  return resize(slice, height, width).to(options);
}

torch::Tensor PositionalGrid::stretched(int64_t height, int64_t width, const torch::TensorOptions& options) const {
  return resize(grid_, height, width).to(options);
}

}  // namespace sine
