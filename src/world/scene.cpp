#include "world/scene.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sine::world {
namespace {

// Hues far apart and lightness spread out, so that a blurry reconstruction still lands nearest
// to the right entry; see the judge's color test for the margins this leaves.
constexpr std::array<Rgb, kColorCount> kPalette = {{
    {215, 35, 35},    // red
    {245, 135, 20},   // orange
    {245, 215, 40},   // yellow
    {40, 160, 60},    // green
    {30, 120, 220},   // blue
    {135, 55, 185},   // purple
    {245, 130, 200},  // pink
    {245, 245, 245},  // white
    {130, 130, 130},  // gray
    {25, 25, 25},     // black
}};

// Minimum CIE76 distance between an object's color (and its pattern tone) and any color the
// background takes, so that the foreground separates cleanly from the background.
constexpr float kMinObjectContrast = 38.0f;
constexpr float kMinToneContrast = 28.0f;
constexpr float kMinGradientSpan = 40.0f;
constexpr float kObjectMargin = 0.05f;  // min-side units between object boxes
constexpr float kFrameMargin = 0.01f;

Rgb mix(const Rgb& a, const Rgb& b, float t) {
  Rgb out{};
  for (int c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>(std::lround(a[c] + (b[c] - a[c]) * t));
  return out;
}

float srgb_to_linear(float v) {
  v /= 255.0f;
  return v <= 0.04045f ? v / 12.92f : std::pow((v + 0.055f) / 1.055f, 2.4f);
}

float lab_f(float t) {
  constexpr float d = 6.0f / 29.0f;
  return t > d * d * d ? std::cbrt(t) : t / (3 * d * d) + 4.0f / 29.0f;
}

// The colors a background takes, sampled finely enough to bound the distance to any of them.
std::vector<std::array<float, 3>> background_labs(const Background& bg) {
  std::vector<std::array<float, 3>> labs;
  Rgb a = rgb_of(bg.color);
  Rgb b = has_second_color(bg.kind) ? rgb_of(bg.color2) : is_textured(bg.kind) ? checker_tone(bg.color) : a;
  const int steps = bg.kind == BackgroundKind::solid ? 1 : 16;
  for (int i = 0; i <= steps; ++i) labs.push_back(lab_of(mix(a, b, static_cast<float>(i) / steps)));
  return labs;
}

float distance_to_background(const Rgb& rgb, const std::vector<std::array<float, 3>>& bg_labs) {
  auto lab = lab_of(rgb);
  float best = 1e9f;
  for (const auto& b : bg_labs) best = std::min(best, delta_e(lab, b));
  return best;
}

template <typename T>
T pick(std::mt19937_64& rng, const std::vector<T>& items) {
  return items[std::uniform_int_distribution<size_t>(0, items.size() - 1)(rng)];
}

template <typename T>
std::vector<T> all_values(int count) {
  std::vector<T> out;
  for (int i = 0; i < count; ++i) out.push_back(static_cast<T>(i));
  return out;
}

Background sample_background(std::mt19937_64& rng, const SceneSampling& opts,
                             const std::vector<Color>& colors) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Background bg;
  const float r = u(rng);
  const std::pair<BackgroundKind, float> kinds[] = {
      {BackgroundKind::gradient, opts.p_gradient},          {BackgroundKind::checkered, opts.p_checkered},
      {BackgroundKind::striped, opts.p_striped_background}, {BackgroundKind::dotted, opts.p_dotted_background},
      {BackgroundKind::noisy, opts.p_noisy_background},     {BackgroundKind::split, opts.p_split_background}};
  float cumulative = 0;
  bg.kind = BackgroundKind::solid;
  for (const auto& [kind, p] : kinds) {
    cumulative += p;
    if (r < cumulative) {
      bg.kind = kind;
      break;
    }
  }
  bg.color = pick(rng, colors);
  bg.color2 = bg.color;
  if (bg.kind == BackgroundKind::noisy) bg.noise_seed = static_cast<uint32_t>(rng());
  if (has_second_color(bg.kind)) {
    std::vector<Color> others;
    for (Color c : colors)
      if (delta_e(lab_of(rgb_of(c)), lab_of(rgb_of(bg.color))) >= kMinGradientSpan) others.push_back(c);
    if (others.empty())
      bg.kind = BackgroundKind::solid;
    else
      bg.color2 = pick(rng, others);
  }
  return bg;
}

// Positions in min-side units: x grows by width / min(h, w), y by height / min(h, w).
struct Box {
  float x, y, half;
};

Box box_of(const Object& o, float aspect) {
  float sx = aspect / std::min(aspect, 1.0f), sy = 1.0f / std::min(aspect, 1.0f);
  return {o.cx * sx, o.cy * sy, extent_of(o.size) / 2};
}

bool placements_valid(const std::vector<Object>& objects, float aspect) {
  for (size_t i = 0; i < objects.size(); ++i) {
    Box a = box_of(objects[i], aspect);
    for (size_t j = i + 1; j < objects.size(); ++j) {
      Box b = box_of(objects[j], aspect);
      float gap = a.half + b.half + kObjectMargin;
      if (std::abs(a.x - b.x) < gap && std::abs(a.y - b.y) < gap) return false;
    }
  }
  return true;
}

// Normalized center range along one axis whose length is `span` min-side units.
std::pair<float, float> center_range(float half, float span) {
  return {(half + kFrameMargin) / span, 1.0f - (half + kFrameMargin) / span};
}

void place(std::mt19937_64& rng, const SceneSampling& opts, std::vector<Object>& objects) {
  const float span_x = opts.aspect / std::min(opts.aspect, 1.0f);
  const float span_y = 1.0f / std::min(opts.aspect, 1.0f);
  std::vector<int> cells = all_values<int>(kGridCells);
  std::shuffle(cells.begin(), cells.end(), rng);
  std::uniform_real_distribution<float> jitter(-opts.position_jitter, opts.position_jitter);
  for (size_t i = 0; i < objects.size(); ++i) {
    Object& o = objects[i];
    float half = extent_of(o.size) / 2;
    auto [x0, x1] = center_range(half, span_x);
    auto [y0, y1] = center_range(half, span_y);
    if (x0 > x1 || y0 > y1)
      throw Error("scene sampling: objects don't fit a canvas of aspect " + std::to_string(opts.aspect));
    if (opts.grid_positions) {
      o.cx = std::clamp(kGridCenters[cells[i] % 3] + jitter(rng), x0, x1);
      o.cy = std::clamp(kGridCenters[cells[i] / 3] + jitter(rng), y0, y1);
    } else {
      o.cx = std::uniform_real_distribution<float>(x0, x1)(rng);
      o.cy = std::uniform_real_distribution<float>(y0, y1)(rng);
    }
    o.grid_cell = grid_cell_of(o.cx, o.cy);
  }
}

bool overlaps(const Object& a, const Object& b, float span_x, float span_y) {
  constexpr float kGap = 0.02f;  // objects must not touch, or the judge sees one blob
  const float reach = (extent_of(a.size) + extent_of(b.size)) / 2 + kGap;
  return std::abs(a.cx - b.cx) * span_x < reach && std::abs(a.cy - b.cy) * span_y < reach;
}

}  // namespace

Scene lay_out_caption_scene(Scene scene, float aspect) {
  const float span_x = aspect / std::min(aspect, 1.0f), span_y = 1.0f / std::min(aspect, 1.0f);
  auto clamp_inside = [&](Object& o) {
    const float half = extent_of(o.size) / 2;
    auto [x0, x1] = center_range(half, span_x);
    auto [y0, y1] = center_range(half, span_y);
    o.cx = std::clamp(o.cx, x0, std::max(x0, x1));
    o.cy = std::clamp(o.cy, y0, std::max(y0, y1));
  };
  std::vector<Object*> placed;
  for (Object& o : scene.objects)
    if (o.grid_cell >= 0) {
      clamp_inside(o);
      placed.push_back(&o);
    }
  static constexpr int kCornersFirst[] = {0, 8, 2, 6, 4, 1, 7, 3, 5};
  static constexpr int kCenterFirst[] = {4, 0, 8, 2, 6, 1, 7, 3, 5};
  const int* preference = scene.objects.size() == 1 ? kCenterFirst : kCornersFirst;
  for (Object& o : scene.objects) {
    if (o.grid_cell >= 0) continue;
    bool found = false;
    for (int k = 0; k < kGridCells; ++k) {
      const int cell = preference[k];
      o.cx = kGridCenters[cell % 3];
      o.cy = kGridCenters[cell / 3];
      clamp_inside(o);
      bool free = true;
      for (const Object* p : placed) free = free && !overlaps(o, *p, span_x, span_y);
      if (free) {
        o.grid_cell = cell;
        found = true;
        break;
      }
    }
    if (!found) throw Error("caption: the objects don't fit side by side; state their positions");
    placed.push_back(&o);
  }
  return scene;
}


SceneSampling with_textured_backgrounds(SceneSampling sampling) {
  sampling.p_gradient = 0.2f;
  sampling.p_checkered = sampling.p_striped_background = sampling.p_dotted_background = 0.1f;
  sampling.p_noisy_background = sampling.p_split_background = 0.1f;
  return sampling;
}

int grid_cell_of(float cx, float cy) {
  int col = std::clamp(static_cast<int>(std::floor(cx * 3)), 0, 2);
  int row = std::clamp(static_cast<int>(std::floor(cy * 3)), 0, 2);
  return row * 3 + col;
}

float extent_of(Size size) { return size == Size::small ? kSmallExtent : kLargeExtent; }

Rgb rgb_of(Color color) { return kPalette[static_cast<int>(color)]; }

Rgb pattern_tone(Color color) {
  return color == Color::black ? mix(rgb_of(color), {255, 255, 255}, 0.5f)
                               : mix(rgb_of(color), {0, 0, 0}, 0.5f);
}

Rgb checker_tone(Color color) {
  return color == Color::black ? mix(rgb_of(color), {255, 255, 255}, 0.25f)
                               : mix(rgb_of(color), {0, 0, 0}, 0.25f);
}

std::array<float, 3> lab_of_rgb_float(float r, float g, float b) {
  float lr = srgb_to_linear(r), lg = srgb_to_linear(g), lb = srgb_to_linear(b);
  float x = (0.4124564f * lr + 0.3575761f * lg + 0.1804375f * lb) / 0.95047f;
  float y = 0.2126729f * lr + 0.7151522f * lg + 0.0721750f * lb;
  float z = (0.0193339f * lr + 0.1191920f * lg + 0.9503041f * lb) / 1.08883f;
  float fx = lab_f(x), fy = lab_f(y), fz = lab_f(z);
  return {116.0f * fy - 16.0f, 500.0f * (fx - fy), 200.0f * (fy - fz)};
}

std::array<float, 3> lab_of(const Rgb& rgb) { return lab_of_rgb_float(rgb[0], rgb[1], rgb[2]); }

float delta_e(const std::array<float, 3>& a, const std::array<float, 3>& b) {
  float d0 = a[0] - b[0], d1 = a[1] - b[1], d2 = a[2] - b[2];
  return std::sqrt(d0 * d0 + d1 * d1 + d2 * d2);
}

float color_distance(const Rgb& a, Color b) { return delta_e(lab_of(a), lab_of(rgb_of(b))); }

Scene sample_scene(std::mt19937_64& rng, const SceneSampling& opts) {
  const auto shapes = opts.shapes.empty() ? all_values<Shape>(kShapeCount) : opts.shapes;
  const auto colors = opts.colors.empty() ? all_values<Color>(kColorCount) : opts.colors;
  const auto bg_colors =
      opts.background_colors.empty() ? all_values<Color>(kColorCount) : opts.background_colors;
  if (opts.min_objects < 1 || opts.max_objects < opts.min_objects)
    throw Error("scene sampling: need 1 <= min_objects <= max_objects, got " +
                std::to_string(opts.min_objects) + ".." + std::to_string(opts.max_objects));
  std::uniform_real_distribution<float> u(0.0f, 1.0f);

  for (int attempt = 0; attempt < 1000; ++attempt) {
    Scene scene;
    scene.background = sample_background(rng, opts, bg_colors);
    const auto bg_labs = background_labs(scene.background);
    int n = std::uniform_int_distribution<int>(opts.min_objects, opts.max_objects)(rng);
    bool ok = true;
    for (int i = 0; i < n && ok; ++i) {
      Object o;
      o.shape = pick(rng, shapes);
      o.size = u(rng) < opts.p_small ? Size::small : Size::large;
      float r = u(rng);
      o.pattern = r < opts.p_striped                  ? Pattern::striped
                  : r < opts.p_striped + opts.p_dotted ? Pattern::dotted
                                                       : Pattern::plain;
      std::vector<Color> eligible;
      for (Color c : colors) {
        bool taken = false;
        for (const Object& other : scene.objects)
          taken |= opts.distinct_objects && other.shape == o.shape && other.color == c;
        if (taken || distance_to_background(rgb_of(c), bg_labs) < kMinObjectContrast) continue;
        if (o.pattern != Pattern::plain && distance_to_background(pattern_tone(c), bg_labs) < kMinToneContrast)
          continue;
        eligible.push_back(c);
      }
      if (eligible.empty()) {
        ok = false;
        break;
      }
      o.color = pick(rng, eligible);
      scene.objects.push_back(o);
    }
    if (!ok) continue;
    for (int tries = 0; tries < 20; ++tries) {
      place(rng, opts, scene.objects);
      if (!placements_valid(scene.objects, opts.aspect)) continue;
      std::stable_sort(scene.objects.begin(), scene.objects.end(), [](const Object& a, const Object& b) {
        return a.grid_cell != b.grid_cell ? a.grid_cell < b.grid_cell : a.cx < b.cx;
      });
      return scene;
    }
  }
  throw Error("scene sampling: no valid scene in 1000 attempts; widen the colors or lower max_objects");
}

const char* name_of(Shape shape) {
  static const char* names[] = {"circle", "square", "triangle", "star", "heart", "ring", "cross"};
  return names[static_cast<int>(shape)];
}

const char* name_of(Color color) {
  static const char* names[] = {"red",    "orange", "yellow", "green", "blue",
                                "purple", "pink",   "white",  "gray",  "black"};
  return names[static_cast<int>(color)];
}

const char* name_of(Pattern pattern) {
  static const char* names[] = {"plain", "striped", "dotted"};
  return names[static_cast<int>(pattern)];
}

const char* name_of(Size size) { return size == Size::small ? "small" : "large"; }

const char* name_of(BackgroundKind kind) {
  static const char* names[] = {"solid", "gradient", "checkered", "striped", "dotted", "noisy", "split"};
  return names[static_cast<int>(kind)];
}

const char* grid_cell_name(int cell) {
  static const char* names[] = {"top left", "top",         "top right",    "left",        "center",
                                "right",    "bottom left", "bottom", "bottom right"};
  return cell >= 0 && cell < kGridCells ? names[cell] : "unstated";
}

nlohmann::json to_json(const Object& o) {
  nlohmann::json j = {{"shape", name_of(o.shape)},
                      {"color", name_of(o.color)},
                      {"pattern", name_of(o.pattern)},
                      {"size", name_of(o.size)},
                      {"position", grid_cell_name(o.grid_cell)}};
  if (o.grid_cell >= 0) j["center"] = {o.cx, o.cy};
  return j;
}

nlohmann::json to_json(const Scene& scene) {
  nlohmann::json objects = nlohmann::json::array();
  for (const Object& o : scene.objects) objects.push_back(to_json(o));
  nlohmann::json j = {{"objects", objects}};
  if (scene.background_stated) {
    const Background& bg = scene.background;
    j["background"] = {{"kind", name_of(bg.kind)}, {"color", name_of(bg.color)}};
    if (has_second_color(bg.kind)) j["background"]["color2"] = name_of(bg.color2);
  }
  return j;
}

}  // namespace sine::world
