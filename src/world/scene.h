#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

// The "shapes world": scenes of 1-3 flat objects on a simple background. Everything here is
// chosen so that a program (the judge) can read every attribute back from pixels, also after a
// lossy VAE round trip: hues are far apart, sizes differ by a factor 1.6, objects never overlap.
namespace sine::world {

enum class Shape { circle, square, triangle, star, heart, ring, cross };
enum class Color { red, orange, yellow, green, blue, purple, pink, white, gray, black };
enum class Pattern { plain, striped, dotted };
enum class Size { small, large };
enum class BackgroundKind { solid, gradient, checkered };

inline constexpr int kShapeCount = 7;
inline constexpr int kColorCount = 10;
inline constexpr int kPatternCount = 3;
inline constexpr int kBackgroundKindCount = 3;

using Rgb = std::array<uint8_t, 3>;

// Object geometry, in units of min(height, width) so that a wider render (SINE generates at 2x
// width) shows objects at the same pixel size on a larger canvas.
inline constexpr float kSmallExtent = 0.26f;
inline constexpr float kLargeExtent = 0.42f;
// Stripes are horizontal bands, dots a square grid; both anchored at the object's center.
inline constexpr float kPatternPeriod = 0.12f;
inline constexpr float kStripeDuty = 0.4f;     // fraction of a period in the second tone
inline constexpr float kDotRadius = 0.3f;      // of a period
inline constexpr float kCheckerCell = 0.125f;  // checkered backgrounds, anchored at the top left

// 3x3 grid cells in reading order: 0 top left, 1 top, 2 top right, 3 left, 4 center, 5 right,
// 6 bottom left, 7 bottom, 8 bottom right. Cell k spans thirds of the image; objects placed on
// the grid sit near kGridCenters[column], kGridCenters[row] (normalized 0..1).
inline constexpr int kGridCells = 9;
inline constexpr std::array<float, 3> kGridCenters = {0.22f, 0.5f, 0.78f};
int grid_cell_of(float cx, float cy);  // the third-of-the-image cell holding a normalized point

struct Object {
  Shape shape = Shape::circle;
  Color color = Color::red;
  Pattern pattern = Pattern::plain;
  Size size = Size::large;
  float cx = 0.5f, cy = 0.5f;  // center, normalized 0..1 (x by width, y by height)
  int grid_cell = 4;           // -1: position not stated (a parsed caption that names none)
};

// solid: color. gradient: color at the top edge blending linearly (in sRGB) to color2 at the
// bottom edge. checkered: cells of color and checker_tone(color).
struct Background {
  BackgroundKind kind = BackgroundKind::solid;
  Color color = Color::white;
  Color color2 = Color::white;
};

struct Scene {
  std::vector<Object> objects;
  Background background;
  bool background_stated = true;  // false for a parsed caption that names no background
};

struct SceneSampling {
  int min_objects = 1;
  int max_objects = 3;
  std::vector<Shape> shapes;              // empty: all shapes
  std::vector<Color> colors;              // object colors; empty: all colors
  std::vector<Color> background_colors;   // empty: all colors
  float p_small = 0.5f;
  float p_striped = 0.2f;
  float p_dotted = 0.2f;
  float p_gradient = 0.25f;
  float p_checkered = 0.2f;
  bool grid_positions = true;  // false: centers anywhere the object fits
  float position_jitter = 0.03f;
  float aspect = 1.0f;         // width / height of the renders the scene is meant for
  bool distinct_objects = true;  // no two objects share both shape and color
};

// Draws a scene whose objects don't overlap (a margin apart), fit in the frame, and stand out
// from the background in color and pattern tone; objects are listed in reading order.
Scene sample_scene(std::mt19937_64& rng, const SceneSampling& opts = {});

float extent_of(Size size);  // in units of min(height, width)
Rgb rgb_of(Color color);
Rgb pattern_tone(Color color);  // the second tone of stripes and dots: a darker shade (black: lighter)
Rgb checker_tone(Color color);  // the second cell tone of a checkered background

// CIE L*a*b* (D65) of an sRGB color, and the CIE76 distance the sampler and judge use.
std::array<float, 3> lab_of(const Rgb& rgb);
std::array<float, 3> lab_of_rgb_float(float r, float g, float b);  // r, g, b in 0..255
float delta_e(const std::array<float, 3>& a, const std::array<float, 3>& b);

const char* name_of(Shape shape);
const char* name_of(Color color);
const char* name_of(Pattern pattern);
const char* name_of(Size size);
const char* name_of(BackgroundKind kind);
const char* grid_cell_name(int cell);  // "top left", ..., "center"; "unstated" for -1

nlohmann::json to_json(const Object& object);
nlohmann::json to_json(const Scene& scene);

}  // namespace sine::world
