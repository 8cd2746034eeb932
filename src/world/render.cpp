#include "world/render.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sine::world {
namespace {

struct Point {
  float x, y;
};

// Even-odd crossing test; the star is not convex.
bool inside_polygon(const std::vector<Point>& poly, float x, float y) {
  bool inside = false;
  for (size_t i = 0, j = poly.size() - 1; i < poly.size(); j = i++) {
    const Point& a = poly[i];
    const Point& b = poly[j];
    if ((a.y > y) != (b.y > y) && x < (b.x - a.x) * (y - a.y) / (b.y - a.y) + a.x) inside = !inside;
  }
  return inside;
}

// Scales and centers a polygon so that its bounding box's longer side is 1.
std::vector<Point> normalized(std::vector<Point> poly) {
  float x0 = 1e9f, x1 = -1e9f, y0 = 1e9f, y1 = -1e9f;
  for (const Point& p : poly) {
    x0 = std::min(x0, p.x), x1 = std::max(x1, p.x);
    y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
  }
  float scale = std::max(x1 - x0, y1 - y0);
  for (Point& p : poly) p = {(p.x - (x0 + x1) / 2) / scale, (p.y - (y0 + y1) / 2) / scale};
  return poly;
}

std::vector<Point> star_polygon() {
  // A fat star (inner radius half the outer) keeps its arms after blurring at small sizes.
  std::vector<Point> poly;
  for (int k = 0; k < 10; ++k) {
    double angle = -M_PI / 2 + k * M_PI / 5;
    double r = k % 2 == 0 ? 1.0 : 0.5;
    poly.push_back({static_cast<float>(r * std::cos(angle)), static_cast<float>(r * std::sin(angle))});
  }
  return normalized(poly);
}

// The classic heart curve (x^2 + y^2 - 1)^3 = x^2 y^3 with y up; its extents found numerically.
bool inside_raw_heart(double x, double y) {
  double a = x * x + y * y - 1;
  return a * a * a - x * x * y * y * y <= 0;
}

struct HeartFrame {
  double cx, cy, scale;
};

HeartFrame heart_frame() {
  double x0 = 1e9, x1 = -1e9, y0 = 1e9, y1 = -1e9;
  const int n = 1200;
  for (int i = 0; i <= n; ++i) {
    for (int j = 0; j <= n; ++j) {
      double x = -1.5 + 3.0 * j / n, y = -1.5 + 3.0 * i / n;
      if (!inside_raw_heart(x, y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  return {(x0 + x1) / 2, (y0 + y1) / 2, std::max(x1 - x0, y1 - y0)};
}

struct Geometry {
  std::vector<Point> triangle = normalized({{0.0f, 0.0f}, {0.5f, 1.0f}, {-0.5f, 1.0f}});
  std::vector<Point> star = star_polygon();
  HeartFrame heart = heart_frame();
};

const Geometry& geometry() {
  static const Geometry g;
  return g;
}

constexpr float kSquareHalf = 0.44f;
constexpr float kRingInner = 0.28f;
constexpr float kCrossHalfWidth = 0.17f;

struct PlacedObject {
  const Object* object;
  float cx, cy, size;          // pixels
  int x0, y0, x1, y1;          // pixel bounds touched, inclusive-exclusive
  std::array<float, 3> base, tone;
};

std::vector<PlacedObject> place_objects(const Scene& scene, int64_t height, int64_t width) {
  const float side = static_cast<float>(std::min(height, width));
  std::vector<PlacedObject> placed;
  for (const Object& o : scene.objects) {
    PlacedObject p{&o, o.cx * width, o.cy * height, extent_of(o.size) * side, 0, 0, 0, 0, {}, {}};
    p.x0 = std::max(0, static_cast<int>(std::floor(p.cx - p.size / 2)));
    p.y0 = std::max(0, static_cast<int>(std::floor(p.cy - p.size / 2)));
    p.x1 = std::min(static_cast<int>(width), static_cast<int>(std::ceil(p.cx + p.size / 2)) + 1);
    p.y1 = std::min(static_cast<int>(height), static_cast<int>(std::ceil(p.cy + p.size / 2)) + 1);
    Rgb base = rgb_of(o.color), tone = pattern_tone(o.color);
    for (int c = 0; c < 3; ++c) p.base[c] = base[c], p.tone[c] = tone[c];
    placed.push_back(p);
  }
  return placed;
}

bool in_tone(const PlacedObject& p, float x, float y, float side) {
  const Pattern pattern = p.object->pattern;
  if (pattern == Pattern::plain) return false;
  float u = (x - p.cx) / (side * kPatternPeriod), v = (y - p.cy) / (side * kPatternPeriod);
  float dv = v - std::round(v);
  if (pattern == Pattern::striped) return std::abs(dv) < kStripeDuty / 2;
  float du = u - std::round(u);
  return du * du + dv * dv < kDotRadius * kDotRadius;
}

bool object_contains(const PlacedObject& p, float x, float y) {
  return shape_contains(p.object->shape, (x - p.cx) / p.size, (y - p.cy) / p.size);
}

void check_size(int64_t height, int64_t width) {
  if (height < 8 || width < 8 || height > 8192 || width > 8192)
    throw Error("render: image size " + std::to_string(height) + "x" + std::to_string(width) +
                " is outside 8..8192 pixels per side");
}

// A 32-bit mix of the noise seed and a cell's coordinates (a murmur3 finalizer).
uint32_t cell_hash(uint32_t seed, int64_t cx, int64_t cy) {
  uint32_t h = seed ^ (static_cast<uint32_t>(cx) * 0x9E3779B1u) ^ (static_cast<uint32_t>(cy) * 0x85EBCA77u);
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

}  // namespace

int supersampling_for(int64_t height, int64_t width) {
  int64_t side = std::min(height, width);
  return side <= 160 ? 4 : side <= 384 ? 3 : 2;
}

float background_share(const Background& bg, float x, float y, int64_t height, int64_t width) {
  const float side = static_cast<float>(std::min(height, width));
  switch (bg.kind) {
    case BackgroundKind::solid:
      return 0.0f;
    case BackgroundKind::gradient:
      return y / static_cast<float>(height);
    case BackgroundKind::checkered: {
      const float cell = kCheckerCell * side;
      return (static_cast<int64_t>(std::floor(x / cell) + std::floor(y / cell)) & 1) ? 1.0f : 0.0f;
    }
    case BackgroundKind::striped: {
      const float u = x / (kBackgroundStripePeriod * side);
      return u - std::floor(u) >= 0.5f ? 1.0f : 0.0f;
    }
    case BackgroundKind::dotted: {
      const float u = x / (kBackgroundDotPeriod * side), v = y / (kBackgroundDotPeriod * side);
      const float du = u - std::round(u), dv = v - std::round(v);  // dots on the grid's corners
      return du * du + dv * dv < kBackgroundDotRadius * kBackgroundDotRadius ? 1.0f : 0.0f;
    }
    case BackgroundKind::noisy: {
      const float cell = kCheckerCell * side;
      return (cell_hash(bg.noise_seed, static_cast<int64_t>(std::floor(x / cell)),
                        static_cast<int64_t>(std::floor(y / cell))) >> 7) & 1 ? 1.0f : 0.0f;
    }
    case BackgroundKind::split:
      return x >= 0.5f * static_cast<float>(width) ? 1.0f : 0.0f;
  }
  return 0.0f;
}

bool shape_contains(Shape shape, float u, float v) {
  if (std::abs(u) > 0.5f || std::abs(v) > 0.5f) return false;
  const Geometry& g = geometry();
  switch (shape) {
    case Shape::circle:
      return u * u + v * v <= 0.25f;
    case Shape::square:
      return std::abs(u) <= kSquareHalf && std::abs(v) <= kSquareHalf;
    case Shape::triangle:
      return inside_polygon(g.triangle, u, v);
    case Shape::star:
      return inside_polygon(g.star, u, v);
    case Shape::heart:
      return inside_raw_heart(g.heart.cx + u * g.heart.scale, g.heart.cy - v * g.heart.scale);
    case Shape::ring: {
      float r2 = u * u + v * v;
      return r2 <= 0.25f && r2 >= kRingInner * kRingInner;
    }
    case Shape::cross:
      return std::abs(u) <= kCrossHalfWidth || std::abs(v) <= kCrossHalfWidth;
  }
  return false;
}

const ShapeMoments& shape_moments(Shape shape) {
  static const std::array<ShapeMoments, kShapeCount> moments = [] {
    std::array<ShapeMoments, kShapeCount> out{};
    const int n = 400;
    for (int s = 0; s < kShapeCount; ++s) {
      double count = 0, sx = 0, sy = 0;
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
          float u = (j + 0.5f) / n - 0.5f, v = (i + 0.5f) / n - 0.5f;
          if (!shape_contains(static_cast<Shape>(s), u, v)) continue;
          count += 1, sx += u, sy += v;
        }
      }
      out[s] = {static_cast<float>(count / (n * n)), static_cast<float>(sx / count),
                static_cast<float>(sy / count)};
    }
    return out;
  }();
  return moments[static_cast<int>(shape)];
}

void shape_coverage(Shape shape, float cx_px, float cy_px, float size_px, int x0, int y0, int w,
                    int h, int samples, float* out) {
  const float inv = 1.0f / size_px, step = 1.0f / samples;
  const float weight = 1.0f / (samples * samples);
  for (int i = 0; i < h; ++i) {
    for (int j = 0; j < w; ++j) {
      float covered = 0;
      for (int a = 0; a < samples; ++a) {
        float v = (y0 + i + (a + 0.5f) * step - cy_px) * inv;
        for (int b = 0; b < samples; ++b) {
          float u = (x0 + j + (b + 0.5f) * step - cx_px) * inv;
          covered += shape_contains(shape, u, v) ? weight : 0.0f;
        }
      }
      out[i * w + j] = covered;
    }
  }
}

torch::Tensor render_scene(const Scene& scene, int64_t height, int64_t width) {
  check_size(height, width);
  const int ss = supersampling_for(height, width);
  const float side = static_cast<float>(std::min(height, width));
  const auto placed = place_objects(scene, height, width);
  const Background& bg = scene.background;
  const Rgb c1 = rgb_of(bg.color);
  const Rgb c2 = has_second_color(bg.kind) ? rgb_of(bg.color2) : is_textured(bg.kind) ? checker_tone(bg.color) : c1;

  auto image = torch::empty({height, width, 3}, torch::kUInt8);
  uint8_t* px = image.data_ptr<uint8_t>();
  std::vector<const PlacedObject*> near;
  for (int64_t i = 0; i < height; ++i) {
    for (int64_t j = 0; j < width; ++j) {
      near.clear();
      for (const auto& p : placed)
        if (j >= p.x0 && j < p.x1 && i >= p.y0 && i < p.y1) near.push_back(&p);
      float sum[3] = {0, 0, 0};
      for (int a = 0; a < ss; ++a) {
        const float y = i + (a + 0.5f) / ss;
        for (int b = 0; b < ss; ++b) {
          const float x = j + (b + 0.5f) / ss;
          const PlacedObject* top = nullptr;
          for (const PlacedObject* p : near)
            if (object_contains(*p, x, y)) top = p;
          if (top) {
            const auto& c = in_tone(*top, x, y, side) ? top->tone : top->base;
            for (int k = 0; k < 3; ++k) sum[k] += c[k];
            continue;
          }
          const float t = background_share(bg, x, y, height, width);
          for (int k = 0; k < 3; ++k) sum[k] += c1[k] + (c2[k] - c1[k]) * t;
        }
      }
      uint8_t* out = px + (i * width + j) * 3;
      for (int k = 0; k < 3; ++k)
        out[k] = static_cast<uint8_t>(std::clamp(std::lround(sum[k] / (ss * ss)), 0L, 255L));
    }
  }
  return image;
}

torch::Tensor render_object_mask(const Scene& scene, size_t object_index, int64_t height, int64_t width) {
  check_size(height, width);
  if (object_index >= scene.objects.size())
    throw Error("render: object " + std::to_string(object_index) + " asked for, the scene has " +
                std::to_string(scene.objects.size()));
  const int ss = supersampling_for(height, width);
  const auto placed = place_objects(scene, height, width);
  const PlacedObject& target = placed[object_index];
  auto mask = torch::zeros({height, width}, torch::kFloat32);
  float* m = mask.data_ptr<float>();
  const float weight = 1.0f / (ss * ss);
  for (int i = target.y0; i < target.y1; ++i) {
    for (int j = target.x0; j < target.x1; ++j) {
      float covered = 0;
      for (int a = 0; a < ss; ++a) {
        const float y = i + (a + 0.5f) / ss;
        for (int b = 0; b < ss; ++b) {
          const float x = j + (b + 0.5f) / ss;
          if (!object_contains(target, x, y)) continue;
          bool hidden = false;
          for (size_t k = object_index + 1; k < placed.size() && !hidden; ++k)
            hidden = object_contains(placed[k], x, y);
          covered += hidden ? 0.0f : weight;
        }
      }
      m[i * width + j] = covered;
    }
  }
  return mask;
}

}  // namespace sine::world
