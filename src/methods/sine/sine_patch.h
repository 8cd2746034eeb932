#pragma once
#include <torch/torch.h>

#include "methods/sine/positional_grid.h"

// SINE's patch-based fine-tuning data (official SinImageHighResDataset): the image is resized once
// to 2× the training resolution (bicubic, ignoring the aspect ratio); every sample is a crop whose
// height and width are drawn independently as ph = int(G·U(0.1, 1)), pw = int(G·U(0.1, 1)) grid
// cells, at offsets y0 ∈ [0, G−ph], x0 ∈ [0, G−pw] (inclusive), cut at `cell` pixels per cell and
// resized back to the training resolution (non-uniform stretching allowed). The crop box in grid
// cells is what the positional grid is sliced to.
namespace sine {

struct PatchSample {
  torch::Tensor image;  // uint8 [size, size, 3]: the crop at the training resolution
  CropBox box;          // in grid cells
};

class PatchSampler {
 public:
  // image_u8: uint8 [H, W, 3]; training_size: pixels (512 for SD 1.x); grid_size: G cells per side.
  PatchSampler(const torch::Tensor& image_u8, int64_t training_size, int64_t grid_size,
               double min_fraction = 0.1, double max_fraction = 1.0);

  // Draws from `gen` only (the Trainer's generator), so a resumed run draws the same crops.
  PatchSample sample(torch::Generator& gen) const;
  // The crop of a given box (cells), resized to the training resolution.
  torch::Tensor crop(const CropBox& box) const;
  CropBox draw_box(torch::Generator& gen) const;

  const torch::Tensor& high_res() const { return high_res_; }  // uint8 [2·size, 2·size, 3]
  int64_t grid_size() const { return grid_size_; }
  int64_t pixels_per_cell() const { return cell_; }

 private:
  torch::Tensor high_res_;
  int64_t training_size_, grid_size_, cell_;
  double min_fraction_, max_fraction_;
};

}  // namespace sine
