#include "methods/sine/sine_patch.h"

#include "core/error.h"
#include "io/image.h"

namespace sine {

PatchSampler::PatchSampler(const torch::Tensor& image_u8, int64_t training_size, int64_t grid_size,
                           double min_fraction, double max_fraction)
    : training_size_(training_size), grid_size_(grid_size), min_fraction_(min_fraction), max_fraction_(max_fraction) {
  if (grid_size < 1 || (2 * training_size) % grid_size)
    throw Error("patch sampler: the grid size " + std::to_string(grid_size) + " must divide twice the training size " +
                std::to_string(training_size));
  if (!(min_fraction > 0 && min_fraction <= max_fraction && max_fraction <= 1))
    throw Error("patch sampler: patch fractions must satisfy 0 < min <= max <= 1");
  cell_ = 2 * training_size / grid_size;
  high_res_ = resize_rgb(image_u8, 2 * training_size, 2 * training_size);
}

CropBox PatchSampler::draw_box(torch::Generator& gen) const {
  const int64_t g = grid_size_;
  auto u = torch::rand({2}, gen, torch::kFloat64);
  auto fraction = [&](int i) { return min_fraction_ + (max_fraction_ - min_fraction_) * u[i].item<double>(); };
  CropBox b;
  const int64_t ph = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(g) * fraction(0)));
  const int64_t pw = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(g) * fraction(1)));
  b.y0 = torch::randint(0, g - ph + 1, {1}, gen, torch::kLong).item<int64_t>();
  b.x0 = torch::randint(0, g - pw + 1, {1}, gen, torch::kLong).item<int64_t>();
  b.y1 = b.y0 + ph;
  b.x1 = b.x0 + pw;
  return b;
}

torch::Tensor PatchSampler::crop(const CropBox& b) const {
  auto piece = high_res_.slice(0, b.y0 * cell_, b.y1 * cell_).slice(1, b.x0 * cell_, b.x1 * cell_).contiguous();
  return resize_rgb(piece, training_size_, training_size_);
}

PatchSample PatchSampler::sample(torch::Generator& gen) const {
  PatchSample s;
  s.box = draw_box(gen);
  s.image = crop(s.box);
  return s;
}

}  // namespace sine
