#pragma once
#include <torch/torch.h>

#include <array>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "world/scene.h"

// The judge reads a shapes-world image back from pixels alone. It smooths away grain, models
// the background from the image border (solid/gradient: a robust linear fit; checkered: the two
// cell tones), takes what differs from it as foreground and splits that into connected blobs.
// Each blob is fitted: shape, size and position by the best overlap with anti-aliased templates
// of every shape, blurred as much as the image is; color by which palette color and its pattern
// tone explain the blob's inside (with the background's share unmixed where the image is
// blurry); pattern by how the tone follows stripes or dots of the world's period.
// Given an expected scene (e.g. a parsed caption) it also says which claims hold.
//
// Measured (tests/world/test_world_judge.cpp): every attribute 100% right on 200 random scenes
// at 64x64, 128x128 and 64x128, and with blur (sigma 0.7 px at 64, 1.2 px at 128) plus noise.
namespace sine::world {

struct FoundObject {
  Object object;                 // recovered attributes; cx, cy normalized, grid_cell by thirds
  float extent = 0;              // fitted template side in units of min(height, width)
  float blur_px = 0;             // Gaussian blur (sigma, pixels) the fitted template needed
  int area_px = 0;               // pixels in the blob
  std::array<float, kShapeCount> shape_iou{};  // soft IoU with each shape's best template
  float color_residual = 0;      // mean CIE76 distance of the blob's pixels to the color model
  float tone_spread = 0;         // standard deviation of the pixels' tone coordinate
  float stripe_match = 0;        // correlation of the tone with stripes, at the best phase
  float dot_match = 0;           // the same for dots
  float pattern_amplitude = 0;   // tone swing along the better of the two (about 1 when crisp)
  torch::Tensor mask;            // float [H, W]: the blob's soft coverage
};

struct BackgroundFit {
  Background background;
  float border_explained = 0;    // fraction of border pixels the chosen model explains
  float color_distance = 0;      // CIE76 distance of the fitted color(s) to the palette entries
};

struct ObjectVerdict {
  int expected = -1;  // index into the expected scene
  int found = -1;     // index into JudgeResult::found; -1: fewer objects found than expected
  bool color_ok = false, shape_ok = false, pattern_ok = false, size_ok = false, position_ok = false;
  bool ok() const { return found >= 0 && color_ok && shape_ok && pattern_ok && size_ok && position_ok; }
};

struct Verdict {
  bool background_kind_ok = true;   // true when the expectation states no background
  bool background_color_ok = true;  // both colors, in order, for a gradient
  bool count_ok = false;
  std::vector<ObjectVerdict> objects;  // one per expected object
  bool pass = false;                   // every claim holds
};

struct JudgeResult {
  int64_t height = 0, width = 0;
  Scene scene;                     // what the image shows; scene.objects[i] is found[i].object
  BackgroundFit background;
  std::vector<FoundObject> found;
  std::optional<Scene> expected;
  std::optional<Verdict> verdict;  // set when an expectation was given
};

// The palette color the judge names a CIE Lab color (lab_of_rgb_float): the nearest by CIE76,
// and that distance.
std::pair<Color, float> nearest_color(const std::array<float, 3>& lab);

// rgb_u8: uint8 [H, W, 3] (any device). Deterministic.
JudgeResult judge(const torch::Tensor& rgb_u8, const Scene* expected = nullptr);
Scene judge_scene(const torch::Tensor& rgb_u8);

// Verdict of a recovered scene against an expectation (objects paired by least disagreement).
Verdict compare(const Scene& found, const Scene& expected);

std::string describe(const JudgeResult& result);  // multi-line, human readable
nlohmann::json to_json(const JudgeResult& result);

// For `sine world judge IMAGE --expect CAPTION`.
struct JudgeReport {
  bool pass = false;
  std::string text;
  nlohmann::json json;
};
JudgeReport judge_report(const torch::Tensor& rgb_u8, const std::string& expected_caption);

}  // namespace sine::world
