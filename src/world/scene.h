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
enum class BackgroundKind { solid, gradient, checkered, striped, dotted, noisy, split };

inline constexpr int kShapeCount = 7;
inline constexpr int kColorCount = 10;
inline constexpr int kPatternCount = 3;
inline constexpr int kBackgroundKindCount = 7;

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
// Textured backgrounds, anchored at the top left like the checker: vertical bands (half a
// period in the second tone, so they never read as an object's horizontal stripes), a square
// grid of dots, and cells of kCheckerCell whose tone a hash of the scene's noise seed picks.
inline constexpr float kBackgroundStripePeriod = 0.25f;
inline constexpr float kBackgroundDotPeriod = 0.25f;
inline constexpr float kBackgroundDotRadius = 0.3f;  // of a period

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
// bottom edge. checkered, striped, dotted, noisy: color with a texture in checker_tone(color).
// split: color on the left half, color2 on the right.
struct Background {
  BackgroundKind kind = BackgroundKind::solid;
  Color color = Color::white;
  Color color2 = Color::white;
  uint32_t noise_seed = 0;  // noisy: which cells take the second tone (captions don't state it)
};

// Kinds whose caption names two colors ("red to blue gradient", "red and blue").
inline bool has_second_color(BackgroundKind kind) {
  return kind == BackgroundKind::gradient || kind == BackgroundKind::split;
}
// Kinds drawn in color and checker_tone(color).
inline bool is_textured(BackgroundKind kind) {
  return kind == BackgroundKind::checkered || kind == BackgroundKind::striped || kind == BackgroundKind::dotted ||
         kind == BackgroundKind::noisy;
}

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
  // Textured and split backgrounds (0 by default: the v1-v3 worlds had none).
  float p_striped_background = 0;
  float p_dotted_background = 0;
  float p_noisy_background = 0;
  float p_split_background = 0;
  bool grid_positions = true;  // false: centers anywhere the object fits
  float position_jitter = 0.03f;
  float aspect = 1.0f;         // width / height of the renders the scene is meant for
  bool distinct_objects = true;  // no two objects share both shape and color
};

// The shapes-v4 world: every background kind (solid 0.3, gradient 0.2, checkered, striped,
// dotted, noisy and split 0.1 each), so a learned token has textures it could swallow.
SceneSampling with_textured_backgrounds(SceneSampling sampling = {});

// Draws a scene whose objects don't overlap (a margin apart), fit in the frame, and stand out
// from the background in color and pattern tone; objects are listed in reading order.
Scene sample_scene(std::mt19937_64& rng, const SceneSampling& opts = {});

// A parsed caption may leave positions unstated (grid_cell -1); such objects take the first grid
// cell where their bounding box clears every other object's: corners first (they leave the most
// room), then center and edges; a lone object goes in the center. Stated positions are kept
// (clamped into a canvas of this aspect). Throws when the objects don't fit side by side.
Scene lay_out_caption_scene(Scene scene, float aspect);

float extent_of(Size size);  // in units of min(height, width)
Rgb rgb_of(Color color);
Rgb pattern_tone(Color color);  // the second tone of stripes and dots: a darker shade (black: lighter)
Rgb checker_tone(Color color);  // the second cell tone of a checkered background

// CIE L*a*b* (D65) of an sRGB color, and the CIE76 distance the sampler and judge use.
std::array<float, 3> lab_of(const Rgb& rgb);
std::array<float, 3> lab_of_rgb_float(float r, float g, float b);  // r, g, b in 0..255
float delta_e(const std::array<float, 3>& a, const std::array<float, 3>& b);
float color_distance(const Rgb& a, Color b);  // CIE76 between an sRGB color and a palette color
inline float color_distance(Color a, Color b) { return color_distance(rgb_of(a), b); }

const char* name_of(Shape shape);
const char* name_of(Color color);
const char* name_of(Pattern pattern);
const char* name_of(Size size);
const char* name_of(BackgroundKind kind);
const char* grid_cell_name(int cell);  // "top left", ..., "center"; "unstated" for -1

nlohmann::json to_json(const Object& object);
nlohmann::json to_json(const Scene& scene);

}  // namespace sine::world
