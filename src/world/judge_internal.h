#pragma once
// Pieces the judge's translation units share: the image in the form the judge works on, and the
// per-blob analysis (judge_object.cpp) that judge.cpp calls for every foreground blob.
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "world/judge.h"

namespace sine::world::judge_detail {

using Lab = std::array<float, 3>;
using Vec3 = std::array<float, 3>;

// sRGB (0..255 floats) and CIE Lab per pixel, row-major, after any denoising.
struct Image {
  int64_t h = 0, w = 0;
  std::vector<Vec3> rgb;
  std::vector<Lab> lab;
};

struct Blob {
  std::vector<int64_t> pixels;
  int64_t x0, y0, x1, y1;  // bounding box, exclusive ends
};

Lab lab_of_vec(const Vec3& rgb);
Lab lab_of_color(Color color);
// Projection of p on the segment a-b: (t in [0, 1], CIE76 distance to the segment).
std::pair<float, float> project(const Lab& p, const Lab& a, const Lab& b);

// Shape, size, position, color and pattern of one blob; dist is every pixel's CIE76 distance
// to the background model, background its sRGB there.
FoundObject analyze_blob(const Image& img, const Blob& blob, const std::vector<float>& dist,
                         const std::vector<Vec3>& background);

}  // namespace sine::world::judge_detail
