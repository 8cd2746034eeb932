#pragma once
#include <torch/torch.h>

#include "world/scene.h"

// Anti-aliased rendering of shapes-world scenes by regular supersampling. Pixel (row i,
// column j) covers [j, j+1) x [i, i+1); object sizes scale with min(height, width), positions
// with each axis, so any width x height works (non-square renders show a wider canvas).
namespace sine::world {

// uint8 [height, width, 3] RGB on the CPU.
torch::Tensor render_scene(const Scene& scene, int64_t height, int64_t width);

// float [height, width] in [0, 1]: the fraction of each pixel where the object is visible
// (drawn and not covered by a later object).
torch::Tensor render_object_mask(const Scene& scene, size_t object_index, int64_t height, int64_t width);

// Where a background takes its second color at the point (x, y) of a height x width canvas, in
// pixel units: 0 (color) or 1 (color2, or checker_tone(color) for a textured kind); a gradient
// returns its blend y / height. Shared by the renderer and the judge.
float background_share(const Background& background, float x, float y, int64_t height, int64_t width);
// Samples per pixel side the renderer uses at this size (the judge mirrors it).
int supersampling_for(int64_t height, int64_t width);

// Shape geometry in its unit box: u, v in [-0.5, 0.5], v pointing down. Every shape is centered
// on its bounding box, and the box's longer side is 1 (the square is drawn at 0.88 to look
// balanced next to the round shapes).
bool shape_contains(Shape shape, float u, float v);

// Area (in unit-box units) and centroid of a shape, for fitting a shape to a measured blob.
struct ShapeMoments {
  float area = 0, cx = 0, cy = 0;
};
const ShapeMoments& shape_moments(Shape shape);

// Anti-aliased coverage of `shape` of side `size_px` centered at (cx_px, cy_px), over the pixel
// window with top left (x0, y0) and `w` x `h` pixels; `out` receives h*w values, row-major.
void shape_coverage(Shape shape, float cx_px, float cy_px, float size_px, int x0, int y0, int w,
                    int h, int samples, float* out);

}  // namespace sine::world
