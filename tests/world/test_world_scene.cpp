#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "core/error.h"
#include "world/caption.h"
#include "world/scene.h"

using namespace sine::world;

namespace {

// Object boxes in min-side units, as the sampler lays them out.
struct Box {
  float x0, y0, x1, y1;
};

Box box_of(const Object& o, float aspect) {
  const float sx = aspect / std::min(aspect, 1.0f), sy = 1.0f / std::min(aspect, 1.0f);
  const float half = extent_of(o.size) / 2;
  return {o.cx * sx - half, o.cy * sy - half, o.cx * sx + half, o.cy * sy + half};
}

float min_distance_to_background(const Rgb& rgb, const Background& bg) {
  const Rgb a = rgb_of(bg.color);
  const Rgb b = bg.kind == BackgroundKind::gradient ? rgb_of(bg.color2)
                : bg.kind == BackgroundKind::checkered ? checker_tone(bg.color)
                                                       : a;
  float best = 1e9f;
  for (int i = 0; i <= 64; ++i) {
    float t = i / 64.0f;
    best = std::min(best, delta_e(lab_of(rgb), lab_of_rgb_float(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t,
                                                                a[2] + (b[2] - a[2]) * t)));
  }
  return best;
}

void check_invariants(const Scene& s, const SceneSampling& opts) {
  ASSERT_GE(static_cast<int>(s.objects.size()), opts.min_objects);
  ASSERT_LE(static_cast<int>(s.objects.size()), opts.max_objects);
  const float span_x = opts.aspect / std::min(opts.aspect, 1.0f), span_y = 1.0f / std::min(opts.aspect, 1.0f);
  for (size_t i = 0; i < s.objects.size(); ++i) {
    const Object& o = s.objects[i];
    Box a = box_of(o, opts.aspect);
    EXPECT_GE(a.x0, 0.0f);
    EXPECT_GE(a.y0, 0.0f);
    EXPECT_LE(a.x1, span_x + 1e-5f);
    EXPECT_LE(a.y1, span_y + 1e-5f);
    EXPECT_EQ(o.grid_cell, grid_cell_of(o.cx, o.cy));
    EXPECT_GE(min_distance_to_background(rgb_of(o.color), s.background), 37.0f) << caption(s);
    if (o.pattern != Pattern::plain) {
      EXPECT_GE(min_distance_to_background(pattern_tone(o.color), s.background), 27.0f) << caption(s);
    }
    if (i > 0) {
      EXPECT_LE(s.objects[i - 1].grid_cell, o.grid_cell);  // reading order
    }
    for (size_t j = i + 1; j < s.objects.size(); ++j) {
      Box b = box_of(s.objects[j], opts.aspect);
      bool apart = a.x1 + 0.049f <= b.x0 || b.x1 + 0.049f <= a.x0 || a.y1 + 0.049f <= b.y0 || b.y1 + 0.049f <= a.y0;
      EXPECT_TRUE(apart) << caption(s);
      if (opts.distinct_objects) {
        EXPECT_FALSE(o.shape == s.objects[j].shape && o.color == s.objects[j].color) << caption(s);
      }
    }
  }
  if (s.background.kind == BackgroundKind::gradient) {
    EXPECT_GE(delta_e(lab_of(rgb_of(s.background.color)), lab_of(rgb_of(s.background.color2))), 40.0f);
  }
}

}  // namespace

TEST(WorldScene, SamplesAreValidAndCoverEveryValue) {
  std::mt19937_64 rng(42);
  SceneSampling opts;
  std::set<int> shapes, colors, patterns, sizes, kinds, cells, counts;
  std::array<int, kBackgroundKindCount> kind_count{};
  const int n = 2000;
  for (int k = 0; k < n; ++k) {
    Scene s = sample_scene(rng, opts);
    check_invariants(s, opts);
    if (HasFatalFailure() || HasNonfatalFailure()) return;
    kinds.insert(static_cast<int>(s.background.kind));
    ++kind_count[static_cast<int>(s.background.kind)];
    counts.insert(static_cast<int>(s.objects.size()));
    colors.insert(static_cast<int>(s.background.color));
    for (const Object& o : s.objects) {
      shapes.insert(static_cast<int>(o.shape)), colors.insert(static_cast<int>(o.color));
      patterns.insert(static_cast<int>(o.pattern)), sizes.insert(static_cast<int>(o.size));
      cells.insert(o.grid_cell);
    }
  }
  EXPECT_EQ(shapes.size(), static_cast<size_t>(kShapeCount));
  EXPECT_EQ(colors.size(), static_cast<size_t>(kColorCount));
  EXPECT_EQ(patterns.size(), 3u);
  EXPECT_EQ(sizes.size(), 2u);
  EXPECT_EQ(kinds.size(), 3u);
  EXPECT_EQ(cells.size(), 9u);
  EXPECT_EQ(counts, (std::set<int>{1, 2, 3}));
  // Gradients and checkers are drawn at their probabilities (a solid background is the rest).
  EXPECT_NEAR(kind_count[static_cast<int>(BackgroundKind::gradient)] / double(n), opts.p_gradient, 0.04);
  EXPECT_NEAR(kind_count[static_cast<int>(BackgroundKind::checkered)] / double(n), opts.p_checkered, 0.04);
}

TEST(WorldScene, SameSeedSameScenes) {
  std::mt19937_64 a(7), b(7);
  for (int k = 0; k < 50; ++k) EXPECT_EQ(caption(sample_scene(a)), caption(sample_scene(b)));
}

TEST(WorldScene, OptionsAreHonoured) {
  std::mt19937_64 rng(3);
  SceneSampling opts;
  opts.min_objects = opts.max_objects = 3;
  opts.shapes = {Shape::star, Shape::heart};
  opts.colors = {Color::red, Color::blue};
  opts.background_colors = {Color::white};
  opts.p_gradient = 0, opts.p_checkered = 0;
  opts.p_striped = 1, opts.p_dotted = 0;
  opts.p_small = 1;
  for (int k = 0; k < 100; ++k) {
    Scene s = sample_scene(rng, opts);
    check_invariants(s, opts);
    EXPECT_EQ(s.background.kind, BackgroundKind::solid);
    EXPECT_EQ(s.background.color, Color::white);
    for (const Object& o : s.objects) {
      EXPECT_TRUE(o.shape == Shape::star || o.shape == Shape::heart);
      EXPECT_TRUE(o.color == Color::red || o.color == Color::blue);
      EXPECT_EQ(o.pattern, Pattern::striped);
      EXPECT_EQ(o.size, Size::small);
    }
  }
}

TEST(WorldScene, WideAndContinuousLayouts) {
  std::mt19937_64 rng(5);
  SceneSampling wide;
  wide.aspect = 2.0f;
  SceneSampling tall;
  tall.aspect = 0.5f;
  SceneSampling free;
  free.grid_positions = false;
  for (int k = 0; k < 300; ++k) {
    check_invariants(sample_scene(rng, wide), wide);
    check_invariants(sample_scene(rng, tall), tall);
    check_invariants(sample_scene(rng, free), free);
  }
}

TEST(WorldScene, GridPlacementsSitNearCellCenters) {
  std::mt19937_64 rng(9);
  SceneSampling opts;
  for (int k = 0; k < 300; ++k) {
    for (const Object& o : sample_scene(rng, opts).objects) {
      EXPECT_NEAR(o.cx, kGridCenters[o.grid_cell % 3], opts.position_jitter + 1e-5f);
      EXPECT_NEAR(o.cy, kGridCenters[o.grid_cell / 3], opts.position_jitter + 1e-5f);
    }
  }
}

TEST(WorldScene, BadOptionsThrow) {
  std::mt19937_64 rng(1);
  SceneSampling opts;
  opts.min_objects = 0;
  EXPECT_THROW(sample_scene(rng, opts), sine::Error);
  opts.min_objects = 3, opts.max_objects = 2;
  EXPECT_THROW(sample_scene(rng, opts), sine::Error);
  SceneSampling impossible;
  impossible.colors = {Color::red};
  impossible.background_colors = {Color::red};
  EXPECT_THROW(sample_scene(rng, impossible), sine::Error);
}

TEST(WorldScene, PaletteIsWellSeparated) {
  float min_colors = 1e9f, min_tone = 1e9f;
  for (int i = 0; i < kColorCount; ++i) {
    const Color c = static_cast<Color>(i);
    min_tone = std::min(min_tone, delta_e(lab_of(rgb_of(c)), lab_of(pattern_tone(c))));
    for (int j = i + 1; j < kColorCount; ++j)
      min_colors = std::min(min_colors, delta_e(lab_of(rgb_of(c)), lab_of(rgb_of(static_cast<Color>(j)))));
  }
  std::printf("[palette] smallest CIE76 distance between colors %.1f, between a color and its pattern tone %.1f\n",
              min_colors, min_tone);
  EXPECT_GT(min_colors, 40.0f);
  EXPECT_GT(min_tone, 20.0f);
  auto white = lab_of({255, 255, 255});
  EXPECT_NEAR(white[0], 100.0f, 0.1f);
  EXPECT_NEAR(white[1], 0.0f, 0.1f);
  EXPECT_NEAR(white[2], 0.0f, 0.1f);
  auto red = lab_of({255, 0, 0});  // the textbook value: 53.24, 80.09, 67.20
  EXPECT_NEAR(red[0], 53.24f, 0.05f);
  EXPECT_NEAR(red[1], 80.09f, 0.1f);
  EXPECT_NEAR(red[2], 67.20f, 0.1f);
}

TEST(WorldScene, JsonNamesEveryAttribute) {
  Scene s = parse_caption("a small red striped star at the top left on a blue to green gradient background");
  auto j = to_json(s);
  EXPECT_EQ(j["objects"][0]["shape"], "star");
  EXPECT_EQ(j["objects"][0]["color"], "red");
  EXPECT_EQ(j["objects"][0]["pattern"], "striped");
  EXPECT_EQ(j["objects"][0]["size"], "small");
  EXPECT_EQ(j["objects"][0]["position"], "top left");
  EXPECT_EQ(j["background"]["kind"], "gradient");
  EXPECT_EQ(j["background"]["color2"], "green");
}
