#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "world/caption.h"
#include "world/render.h"
#include "world/scene.h"

using namespace sine::world;

namespace {

Rgb pixel(const torch::Tensor& img, int64_t y, int64_t x) {
  auto p = img[y][x];
  return {p[0].item<uint8_t>(), p[1].item<uint8_t>(), p[2].item<uint8_t>()};
}

Scene one_object(Shape shape, Color color, Pattern pattern, Size size, Color background = Color::white) {
  Scene s;
  s.background.color = s.background.color2 = background;
  Object o;
  o.shape = shape, o.color = color, o.pattern = pattern, o.size = size;
  s.objects.push_back(o);
  return s;
}

}  // namespace

TEST(WorldRender, ShapesFillTheirBoxAndAreCentered) {
  for (int s = 0; s < kShapeCount; ++s) {
    const Shape shape = static_cast<Shape>(s);
    const int n = 200;
    float x0 = 1, x1 = -1, y0 = 1, y1 = -1;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        float u = (j + 0.5f) / n - 0.5f, v = (i + 0.5f) / n - 0.5f;
        if (!shape_contains(shape, u, v)) continue;
        x0 = std::min(x0, u), x1 = std::max(x1, u), y0 = std::min(y0, v), y1 = std::max(y1, v);
      }
    const float longer = std::max(x1 - x0, y1 - y0);
    EXPECT_GT(longer, shape == Shape::square ? 0.86f : 0.98f) << name_of(shape);
    EXPECT_NEAR(x0 + x1, 0.0f, 0.02f) << name_of(shape);
    EXPECT_NEAR(y0 + y1, 0.0f, 0.02f) << name_of(shape);
    const ShapeMoments& m = shape_moments(shape);
    EXPECT_GT(m.area, 0.3f) << name_of(shape);
    EXPECT_LT(m.area, 0.8f) << name_of(shape);
  }
  EXPECT_NEAR(shape_moments(Shape::circle).area, 3.14159f / 4, 0.005f);
  EXPECT_FALSE(shape_contains(Shape::ring, 0, 0));  // the hole
  EXPECT_TRUE(shape_contains(Shape::heart, 0, 0.45f));  // the point at the bottom
  EXPECT_FALSE(shape_contains(Shape::heart, 0, -0.45f));  // the notch at the top
  EXPECT_TRUE(shape_contains(Shape::triangle, 0, -0.45f));  // apex up
}

TEST(WorldRender, BackgroundsHaveTheirPaletteColors) {
  Scene s;
  s.background = {BackgroundKind::solid, Color::yellow, Color::yellow};
  auto img = render_scene(s, 48, 80);
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{48, 80, 3}));
  ASSERT_EQ(img.scalar_type(), torch::kUInt8);
  EXPECT_EQ(pixel(img, 0, 0), rgb_of(Color::yellow));
  EXPECT_EQ(pixel(img, 47, 79), rgb_of(Color::yellow));

  s.background = {BackgroundKind::gradient, Color::blue, Color::orange};
  img = render_scene(s, 64, 64);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(pixel(img, 0, 10)[c], rgb_of(Color::blue)[c], 4);
    EXPECT_NEAR(pixel(img, 63, 50)[c], rgb_of(Color::orange)[c], 4);
    EXPECT_NEAR(pixel(img, 31, 0)[c], (rgb_of(Color::blue)[c] + rgb_of(Color::orange)[c]) / 2.0, 4);
  }
  EXPECT_EQ(pixel(img, 20, 0), pixel(img, 20, 63));  // vertical only

  s.background = {BackgroundKind::checkered, Color::green, Color::green};
  img = render_scene(s, 64, 128);
  const int cell = static_cast<int>(kCheckerCell * 64);  // 8 px, anchored at the top left
  EXPECT_EQ(pixel(img, cell / 2, cell / 2), rgb_of(Color::green));
  EXPECT_EQ(pixel(img, cell / 2, cell + cell / 2), checker_tone(Color::green));
  EXPECT_EQ(pixel(img, cell + cell / 2, cell + cell / 2), rgb_of(Color::green));
  EXPECT_EQ(pixel(img, 63, 127), rgb_of(Color::green));
}

TEST(WorldRender, ObjectMaskMatchesGeometryAndPixels) {
  for (int s = 0; s < kShapeCount; ++s) {
    const Shape shape = static_cast<Shape>(s);
    Scene scene = one_object(shape, Color::red, Pattern::plain, Size::large, Color::white);
    auto mask = render_object_mask(scene, 0, 64, 64);
    ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{64, 64}));
    const double side = kLargeExtent * 64;
    // 16 samples a pixel: the area is exact to about 2%.
    EXPECT_NEAR(mask.sum().item<double>(), shape_moments(shape).area * side * side, 0.02 * side * side)
        << name_of(shape);
    EXPECT_GE(mask.min().item<float>(), 0.0f);
    EXPECT_LE(mask.max().item<float>(), 1.0f);
    auto partial = (mask > 0.05) & (mask < 0.95);
    EXPECT_GT(partial.sum().item<int64_t>(), 10) << "edges should be anti-aliased";
    auto img = render_scene(scene, 64, 64).to(torch::kFloat32);
    auto red = torch::tensor({215.0f, 35.0f, 35.0f}), white = torch::tensor({245.0f, 245.0f, 245.0f});
    // Every pixel is the coverage-weighted blend of object and background.
    auto expected = mask.unsqueeze(-1) * red + (1 - mask.unsqueeze(-1)) * white;
    EXPECT_LE((img - expected).abs().max().item<float>(), 0.51f) << name_of(shape);
  }
}

TEST(WorldRender, SizeFollowsTheShorterSide) {
  Scene scene = one_object(Shape::star, Color::blue, Pattern::plain, Size::small);
  const double square = render_object_mask(scene, 0, 64, 64).sum().item<double>();
  const double wide = render_object_mask(scene, 0, 64, 128).sum().item<double>();
  const double tall = render_object_mask(scene, 0, 128, 64).sum().item<double>();
  const double big = render_object_mask(scene, 0, 128, 128).sum().item<double>();
  EXPECT_NEAR(wide / square, 1.0, 0.02);
  EXPECT_NEAR(tall / square, 1.0, 0.02);
  EXPECT_NEAR(big / square, 4.0, 0.08);
  Scene large = one_object(Shape::star, Color::blue, Pattern::plain, Size::large);
  const double ratio = render_object_mask(large, 0, 64, 64).sum().item<double>() / square;
  EXPECT_NEAR(ratio, (kLargeExtent / kSmallExtent) * (kLargeExtent / kSmallExtent), 0.1);
}

TEST(WorldRender, PatternsUseTheSecondTone) {
  for (Pattern pattern : {Pattern::striped, Pattern::dotted}) {
    Scene scene = one_object(Shape::square, Color::green, pattern, Size::large, Color::white);
    auto img = render_scene(scene, 128, 128);
    auto mask = render_object_mask(scene, 0, 128, 128);
    const Rgb tone = pattern_tone(Color::green), base = rgb_of(Color::green);
    int64_t n_tone = 0, n_base = 0, inside = 0;
    for (int64_t y = 0; y < 128; ++y)
      for (int64_t x = 0; x < 128; ++x) {
        if (mask[y][x].item<float>() < 1.0f) continue;
        ++inside;
        Rgb p = pixel(img, y, x);
        n_tone += p == tone, n_base += p == base;
      }
    const double tone_share = static_cast<double>(n_tone) / inside;
    // Stripes take kStripeDuty of a period, dots pi r^2; edges between the tones blend.
    const double expected = pattern == Pattern::striped ? kStripeDuty : 3.14159 * kDotRadius * kDotRadius;
    EXPECT_NEAR(tone_share, expected, 0.08) << name_of(pattern);
    EXPECT_GT(static_cast<double>(n_base) / inside, 0.5) << name_of(pattern);
  }
}

TEST(WorldRender, LaterObjectsCoverEarlierOnes) {
  Scene scene = one_object(Shape::square, Color::red, Pattern::plain, Size::large);
  Object top = scene.objects[0];
  top.color = Color::blue, top.size = Size::small;
  scene.objects.push_back(top);
  auto under = render_object_mask(scene, 0, 64, 64), over = render_object_mask(scene, 1, 64, 64);
  EXPECT_LE((under + over).max().item<float>(), 1.0f + 1e-5f);
  EXPECT_NEAR(under[32][32].item<float>(), 0.0f, 1e-6);
  EXPECT_NEAR(over[32][32].item<float>(), 1.0f, 1e-6);
}

TEST(WorldRender, DeterministicAndFast) {
  std::mt19937_64 rng(17);
  std::vector<Scene> scenes;
  for (int k = 0; k < 200; ++k) scenes.push_back(sample_scene(rng));
  auto t0 = std::chrono::steady_clock::now();
  for (const Scene& s : scenes) render_scene(s, 64, 64);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[render] 200 scenes at 64x64 in %.3f s\n", seconds);
  EXPECT_LT(seconds, 10.0);
  EXPECT_TRUE(torch::equal(render_scene(scenes[0], 96, 160), render_scene(scenes[0], 96, 160)));
}

TEST(WorldRender, BadArgumentsThrow) {
  Scene scene = one_object(Shape::circle, Color::red, Pattern::plain, Size::large);
  EXPECT_THROW(render_scene(scene, 4, 64), sine::Error);
  EXPECT_THROW(render_object_mask(scene, 1, 64, 64), sine::Error);
}
