#include "world/judge.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>

#include "core/error.h"
#include "world/judge_internal.h"
#include "world/render.h"

namespace sine::world {
namespace judge_detail {

Lab lab_of_vec(const Vec3& v) {
  return lab_of_rgb_float(std::clamp(v[0], 0.0f, 255.0f), std::clamp(v[1], 0.0f, 255.0f),
                          std::clamp(v[2], 0.0f, 255.0f));
}

Lab lab_of_color(Color c) { return lab_of(rgb_of(c)); }

}  // namespace judge_detail

std::pair<Color, float> nearest_color(const std::array<float, 3>& lab) {
  // The palette in Lab, converted once (this runs per pixel).
  static const std::array<judge_detail::Lab, kColorCount> palette = [] {
    std::array<judge_detail::Lab, kColorCount> p{};
    for (int i = 0; i < kColorCount; ++i) p[i] = judge_detail::lab_of_color(static_cast<Color>(i));
    return p;
  }();
  Color best = Color::red;
  float best_d = 1e9f;
  for (int i = 0; i < kColorCount; ++i) {
    float d = delta_e(lab, palette[i]);
    if (d < best_d) best_d = d, best = static_cast<Color>(i);
  }
  return {best, best_d};
}

namespace judge_detail {

std::pair<float, float> project(const Lab& p, const Lab& a, const Lab& b) {
  float ab2 = 0, dot = 0;
  for (int c = 0; c < 3; ++c) ab2 += (b[c] - a[c]) * (b[c] - a[c]), dot += (p[c] - a[c]) * (b[c] - a[c]);
  float t = ab2 > 1e-6f ? std::clamp(dot / ab2, 0.0f, 1.0f) : 0.0f;
  Lab q{a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])};
  return {t, delta_e(p, q)};
}

namespace {

// Foreground is what differs from the background model by more than kLowContrast (CIE76), in
// blobs that reach kHighContrast somewhere. The sampler keeps objects >= 38 and pattern tones
// >= 28 away from every background color, so both margins are wide.
constexpr float kLowContrast = 10.0f;
constexpr float kHighContrast = 20.0f;
constexpr float kBorderInlier = 20.0f;  // sRGB distance for a border pixel to fit a model
constexpr float kMinBlobArea = 0.08f;   // of a small object's box
constexpr float kQuietNoise = 2.5f;     // sRGB noise level below which the image is used as is

// Robust per-channel noise estimate: the median absolute difference of horizontal neighbours,
// which flat regions (most of a shapes-world image) dominate.
float noise_level(const std::vector<Vec3>& rgb, int64_t h, int64_t w) {
  std::vector<float> diffs;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x + 1 < w; ++x)
      for (int c = 0; c < 3; ++c) diffs.push_back(std::abs(rgb[y * w + x + 1][c] - rgb[y * w + x][c]));
  auto mid = diffs.begin() + diffs.size() / 2;
  std::nth_element(diffs.begin(), mid, diffs.end());
  return *mid / (0.6745f * std::sqrt(2.0f));
}

// One pass of the [1 2 1] x [1 2 1] / 16 filter, edges replicated.
std::vector<Vec3> smooth(const std::vector<Vec3>& rgb, int64_t h, int64_t w) {
  std::vector<Vec3> tmp(rgb.size()), out(rgb.size());
  auto at = [](int64_t i, int64_t n) { return std::clamp<int64_t>(i, 0, n - 1); };
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        tmp[y * w + x][c] = (rgb[y * w + at(x - 1, w)][c] + 2 * rgb[y * w + x][c] + rgb[y * w + at(x + 1, w)][c]) / 4;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        out[y * w + x][c] = (tmp[at(y - 1, h) * w + x][c] + 2 * tmp[y * w + x][c] + tmp[at(y + 1, h) * w + x][c]) / 4;
  return out;
}

// Noisy images (a sampler's grain) are smoothed until the noise is small against the color
// margins: the judge reads flat regions, never single pixels.
Image load(const torch::Tensor& rgb_u8) {
  if (rgb_u8.dim() != 3 || rgb_u8.size(2) != 3 || rgb_u8.scalar_type() != torch::kUInt8)
    throw Error("judge: expected a uint8 [H, W, 3] RGB image, got " + std::string(rgb_u8.toString()) +
                " of shape " + c10::str(rgb_u8.sizes()));
  auto t = rgb_u8.to(torch::kCPU).contiguous();
  Image img;
  img.h = t.size(0), img.w = t.size(1);
  if (img.h < 8 || img.w < 8) throw Error("judge: image " + c10::str(t.sizes()) + " is too small");
  const uint8_t* p = t.data_ptr<uint8_t>();
  const int64_t n = img.h * img.w;
  img.rgb.resize(n);
  for (int64_t i = 0; i < n; ++i)
    img.rgb[i] = {static_cast<float>(p[3 * i]), static_cast<float>(p[3 * i + 1]), static_cast<float>(p[3 * i + 2])};
  for (int pass = 0; pass < 3 && noise_level(img.rgb, img.h, img.w) > kQuietNoise; ++pass)
    img.rgb = smooth(img.rgb, img.h, img.w);
  img.lab.resize(n);
  for (int64_t i = 0; i < n; ++i) img.lab[i] = lab_of_rgb_float(img.rgb[i][0], img.rgb[i][1], img.rgb[i][2]);
  return img;
}

float rgb_distance(const Vec3& a, const Vec3& b) {
  float s = 0;
  for (int c = 0; c < 3; ++c) s += (a[c] - b[c]) * (a[c] - b[c]);
  return std::sqrt(s);
}

float median(std::vector<float> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + v.size() / 2;
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

// ---- background ----------------------------------------------------------------------------

// The share of pixel (x, y) in a layout's second tone, supersampled as the renderer draws it.
float pixel_share(const Background& layout, int64_t x, int64_t y, int64_t h, int64_t w) {
  const int ss = supersampling_for(h, w);
  float share = 0;
  for (int a = 0; a < ss; ++a)
    for (int b = 0; b < ss; ++b) share += background_share(layout, x + (b + 0.5f) / ss, y + (a + 0.5f) / ss, h, w);
  return share / static_cast<float>(ss * ss);
}

struct BackgroundModel {
  BackgroundFit fit;
  // Two-tone backgrounds (textures and splits): every pixel takes tone_a, tone_b or, at a cell
  // edge, a blend. `layout` says where (kind and, for a split, which tone is left); a noisy
  // background's cells are unknown, so there each pixel's own blend is read off the image.
  bool two_tone = false;
  Background layout;
  std::array<Vec3, 3> coef{};  // solid/gradient: rgb = coef[0] + coef[1] * y + coef[2] * x (normalized)
  Lab tone_a{}, tone_b{};
  Vec3 tone_a_rgb{}, tone_b_rgb{};

  // sRGB of the background at every pixel; two tones are blended by their share of the pixel,
  // as the renderer draws them.
  std::vector<Vec3> colors(const Image& img) const {
    std::vector<Vec3> out(img.h * img.w);
    for (int64_t y = 0; y < img.h; ++y) {
      for (int64_t x = 0; x < img.w; ++x) {
        const int64_t i = y * img.w + x;
        if (!two_tone) {
          out[i] = at(img, y, x);
          continue;
        }
        const float share_b = layout.kind == BackgroundKind::noisy ? project(img.lab[i], tone_a, tone_b).first
                                                                   : pixel_share(layout, x, y, img.h, img.w);
        for (int c = 0; c < 3; ++c) out[i][c] = (1 - share_b) * tone_a_rgb[c] + share_b * tone_b_rgb[c];
      }
    }
    return out;
  }

  // CIE76 distance of every pixel to the background: to the modeled color, or for two tones
  // to the segment between them (edges blend them).
  std::vector<float> distances(const Image& img) const {
    std::vector<float> d(img.h * img.w);
    bool flat_rows = true;  // one color per row: convert it to Lab once
    for (int c = 0; c < 3; ++c) flat_rows &= std::abs(coef[2][c]) < 1.0f;
    for (int64_t y = 0; y < img.h; ++y) {
      const Lab row = lab_of_vec(at(img, y, img.w / 2));
      for (int64_t x = 0; x < img.w; ++x) {
        const int64_t i = y * img.w + x;
        d[i] = two_tone   ? project(img.lab[i], tone_a, tone_b).second
               : flat_rows ? delta_e(img.lab[i], row)
                           : delta_e(img.lab[i], lab_of_vec(at(img, y, x)));
      }
    }
    return d;
  }

  Vec3 at(const Image& img, int64_t y, int64_t x) const {
    float yn = (y + 0.5f) / img.h, xn = (x + 0.5f) / img.w;
    Vec3 out;
    for (int c = 0; c < 3; ++c) out[c] = coef[0][c] + coef[1][c] * yn + coef[2][c] * xn;
    return out;
  }
};

std::vector<int64_t> border_pixels(const Image& img) {
  const int64_t band = std::max<int64_t>(1, std::lround(0.03 * std::min(img.h, img.w)));
  std::vector<int64_t> idx;
  for (int64_t y = 0; y < img.h; ++y)
    for (int64_t x = 0; x < img.w; ++x)
      if (y < band || y >= img.h - band || x < band || x >= img.w - band) idx.push_back(y * img.w + x);
  return idx;
}

// Least squares of rgb over (1, y, x) on the given pixels; false if degenerate.
bool fit_linear(const Image& img, const std::vector<int64_t>& pixels, std::array<Vec3, 3>& coef) {
  double m[3][3] = {}, r[3][3] = {};
  for (int64_t i : pixels) {
    double f[3] = {1.0, (i / img.w + 0.5) / img.h, (i % img.w + 0.5) / img.w};
    for (int a = 0; a < 3; ++a) {
      for (int b = 0; b < 3; ++b) m[a][b] += f[a] * f[b];
      for (int c = 0; c < 3; ++c) r[a][c] += f[a] * img.rgb[i][c];
    }
  }
  // A tiny ridge keeps a fit on pixels from one row or column solvable.
  for (int a = 0; a < 3; ++a) m[a][a] += 1e-6 * pixels.size() + 1e-9;
  auto det3 = [](double a[3][3]) {
    return a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
           a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
  };
  double d = det3(m);
  if (std::abs(d) < 1e-12) return false;
  for (int c = 0; c < 3; ++c) {
    for (int k = 0; k < 3; ++k) {
      double mk[3][3];
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) mk[a][b] = b == k ? r[a][c] : m[a][b];
      coef[k][c] = static_cast<float>(det3(mk) / d);
    }
  }
  return true;
}

std::vector<int64_t> linear_inliers(const Image& img, const std::vector<int64_t>& pixels,
                                    const BackgroundModel& model, float tolerance) {
  std::vector<int64_t> in;
  for (int64_t i : pixels)
    if (rgb_distance(img.rgb[i], model.at(img, i / img.w, i % img.w)) < tolerance) in.push_back(i);
  return in;
}

// RANSAC over triples of border pixels, then least squares on the inliers: objects may cover
// a good part of the border.
BackgroundModel fit_linear_background(const Image& img, const std::vector<int64_t>& border) {
  // Hypotheses are scored on a strided subset of the border; the refinement uses all of it.
  std::vector<int64_t> subset;
  const size_t stride = std::max<size_t>(1, border.size() / 256);
  for (size_t k = 0; k < border.size(); k += stride) subset.push_back(border[k]);
  BackgroundModel best;
  size_t best_count = 0;
  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<size_t> pick(0, border.size() - 1);
  for (int iter = 0; iter < 200; ++iter) {
    std::vector<int64_t> triple = {border[pick(rng)], border[pick(rng)], border[pick(rng)]};
    BackgroundModel m;
    if (!fit_linear(img, triple, m.coef)) continue;
    size_t count = linear_inliers(img, subset, m, kBorderInlier).size();
    if (count > best_count) best_count = count, best = m;
  }
  for (int round = 0; round < 3; ++round) {
    auto in = linear_inliers(img, border, best, kBorderInlier);
    if (in.size() < 3) break;
    BackgroundModel refined;
    if (fit_linear(img, in, refined.coef)) best.coef = refined.coef;
  }
  best.fit.border_explained =
      static_cast<float>(linear_inliers(img, border, best, kBorderInlier).size()) / border.size();
  return best;
}

Vec3 channel_medians(const Image& img, const std::vector<int64_t>& pixels) {
  Vec3 out{};
  for (int c = 0; c < 3; ++c) {
    std::vector<float> v;
    for (int64_t i : pixels) v.push_back(img.rgb[i][c]);
    out[c] = median(v);
  }
  return out;
}

BackgroundModel two_tone_model(const Background& layout, const Vec3& a, const Vec3& b) {
  BackgroundModel m;
  m.two_tone = true;
  m.layout = layout;
  m.tone_a_rgb = a, m.tone_b_rgb = b;
  m.tone_a = lab_of_vec(a), m.tone_b = lab_of_vec(b);
  return m;
}

// A two-tone background with a known layout: the border pixels wholly inside one tone's cells
// (not blended at an edge) give each tone as a median; the score is the share of them it explains.
BackgroundModel fit_layout_background(const Image& img, const std::vector<int64_t>& border, BackgroundKind kind) {
  Background layout;
  layout.kind = kind;
  std::array<std::vector<int64_t>, 2> classes;
  for (int64_t i : border) {
    const int64_t y = i / img.w, x = i % img.w;
    const float share = pixel_share(layout, x, y, img.h, img.w);
    // Cell edges, and a blurry image's pixels next to them, blend both tones.
    bool pure = share == 0.0f || share == 1.0f;
    for (int64_t dy = -1; dy <= 1 && pure; ++dy)
      for (int64_t dx = -1; dx <= 1 && pure; ++dx)
        pure = background_share(layout, x + 0.5f + dx, y + 0.5f + dy, img.h, img.w) == share;
    if (pure) classes[share > 0.5f ? 1 : 0].push_back(i);
  }
  if (classes[0].empty() || classes[1].empty()) return {};
  BackgroundModel m = two_tone_model(layout, channel_medians(img, classes[0]), channel_medians(img, classes[1]));
  size_t explained = 0;
  for (int64_t i : classes[0]) explained += rgb_distance(img.rgb[i], m.tone_a_rgb) < kBorderInlier;
  for (int64_t i : classes[1]) explained += rgb_distance(img.rgb[i], m.tone_b_rgb) < kBorderInlier;
  m.fit.border_explained = static_cast<float>(explained) / (classes[0].size() + classes[1].size());
  return m;
}

// A two-tone background with unknown cells (noisy): its tones start as the palette pair (a color
// and its checker tone) that explains most of the border, then follow the medians of the border
// pixels near each (objects, far from both, take no part).
BackgroundModel fit_noisy_background(const Image& img, const std::vector<int64_t>& border) {
  auto assign = [&](const Vec3& a, const Vec3& b, std::array<std::vector<int64_t>, 2>& classes) {
    classes = {};
    for (int64_t i : border) {
      const float da = rgb_distance(img.rgb[i], a), db = rgb_distance(img.rgb[i], b);
      if (std::min(da, db) < kBorderInlier) classes[da <= db ? 0 : 1].push_back(i);
    }
    return classes[0].size() + classes[1].size();
  };
  auto to_vec = [](const Rgb& rgb) { return Vec3{float(rgb[0]), float(rgb[1]), float(rgb[2])}; };
  std::array<std::vector<int64_t>, 2> classes;
  Vec3 a{}, b{};
  size_t best = 0;
  for (int k = 0; k < kColorCount; ++k) {
    const Color c = static_cast<Color>(k);
    const Vec3 ca = to_vec(rgb_of(c)), cb = to_vec(checker_tone(c));
    if (size_t n = assign(ca, cb, classes); n > best) best = n, a = ca, b = cb;
  }
  if (best == 0) return {};
  for (int round = 0; round < 3; ++round) {
    assign(a, b, classes);
    if (classes[0].empty() || classes[1].empty()) return {};
    a = channel_medians(img, classes[0]), b = channel_medians(img, classes[1]);
  }
  BackgroundModel m = two_tone_model(Background{BackgroundKind::noisy}, a, b);
  m.fit.border_explained = static_cast<float>(assign(a, b, classes)) / border.size();
  // Each tone must cover a fair part of the border: a few object pixels are not a second tone.
  if (std::min(classes[0].size(), classes[1].size()) < border.size() / 8) m.fit.border_explained = 0;
  return m;
}

// Names a two-tone fit: a split's tones are two palette colors (left, right); a texture's are a
// palette color and its checker tone, either one in either cell (a model's output needn't keep
// the phase).
void name_two_tone(BackgroundModel& m) {
  Background& bg = m.fit.background;
  bg = m.layout;
  if (bg.kind == BackgroundKind::split) {
    auto [left, d_left] = nearest_color(m.tone_a);
    auto [right, d_right] = nearest_color(m.tone_b);
    bg.color = left, bg.color2 = right;
    m.fit.color_distance = std::max(d_left, d_right);
    return;
  }
  float best = 1e9f;
  for (int i = 0; i < kColorCount; ++i) {
    Color c = static_cast<Color>(i);
    Lab base = lab_of_color(c), tone = lab_of(checker_tone(c));
    float d = std::min(delta_e(m.tone_a, base) + delta_e(m.tone_b, tone), delta_e(m.tone_b, base) + delta_e(m.tone_a, tone));
    if (d < best) best = d, bg.color = bg.color2 = c;
  }
  m.fit.color_distance = best / 2;
}

BackgroundModel fit_background(const Image& img) {
  const auto border = border_pixels(img);
  BackgroundModel linear = fit_linear_background(img, border);
  // Two tones win over a linear fit when they explain clearly more of the border; a known
  // layout wins over noise unless noise explains clearly more (noise fits any two-tone image).
  std::optional<BackgroundModel> two_tone;
  for (BackgroundKind kind : {BackgroundKind::checkered, BackgroundKind::striped, BackgroundKind::dotted,
                              BackgroundKind::split}) {
    BackgroundModel m = fit_layout_background(img, border, kind);
    if (!m.two_tone) continue;
    if (!two_tone || m.fit.border_explained > two_tone->fit.border_explained) two_tone = m;
  }
  BackgroundModel noisy = fit_noisy_background(img, border);
  if (noisy.two_tone && (!two_tone || noisy.fit.border_explained > two_tone->fit.border_explained + 0.15f))
    two_tone = noisy;
  if (two_tone && two_tone->fit.border_explained > linear.fit.border_explained + 0.1f &&
      delta_e(two_tone->tone_a, two_tone->tone_b) > 6.0f) {
    name_two_tone(*two_tone);
    return *two_tone;
  }
  Background& lbg = linear.fit.background;
  // The gradient runs between the top and bottom edges, half a row beyond the pixel centers.
  Vec3 top_rgb, bottom_rgb;
  for (int c = 0; c < 3; ++c) {
    top_rgb[c] = linear.coef[0][c] + 0.5f * linear.coef[2][c];
    bottom_rgb[c] = top_rgb[c] + linear.coef[1][c];
  }
  const Lab top = lab_of_vec(top_rgb), bottom = lab_of_vec(bottom_rgb);
  auto [c_top, d_top] = nearest_color(top);
  auto [c_bottom, d_bottom] = nearest_color(bottom);
  if (delta_e(top, bottom) > 15.0f && c_top != c_bottom) {
    lbg.kind = BackgroundKind::gradient;
    lbg.color = c_top, lbg.color2 = c_bottom;
    linear.fit.color_distance = std::max(d_top, d_bottom);
  } else {
    Vec3 mid;
    for (int c = 0; c < 3; ++c) mid[c] = (top_rgb[c] + bottom_rgb[c]) / 2;
    auto [c_mid, d_mid] = nearest_color(lab_of_vec(mid));
    lbg.kind = BackgroundKind::solid;
    lbg.color = lbg.color2 = c_mid;
    linear.fit.color_distance = d_mid;
  }
  return linear;
}

// ---- blobs ---------------------------------------------------------------------------------

std::vector<Blob> find_blobs(const Image& img, const std::vector<float>& dist) {
  const int64_t n = img.h * img.w;
  const float side = static_cast<float>(std::min(img.h, img.w));
  const float min_area = kMinBlobArea * (kSmallExtent * side) * (kSmallExtent * side);
  std::vector<int> label(n, -1);
  std::vector<Blob> blobs;
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < n; ++start) {
    if (label[start] != -1 || dist[start] <= kLowContrast) continue;
    Blob blob{{}, img.w, img.h, 0, 0};
    bool strong = false;
    const int id = static_cast<int>(blobs.size());
    label[start] = id;
    stack.push_back(start);
    while (!stack.empty()) {
      int64_t i = stack.back();
      stack.pop_back();
      blob.pixels.push_back(i);
      strong |= dist[i] > kHighContrast;
      int64_t y = i / img.w, x = i % img.w;
      blob.x0 = std::min(blob.x0, x), blob.x1 = std::max(blob.x1, x + 1);
      blob.y0 = std::min(blob.y0, y), blob.y1 = std::max(blob.y1, y + 1);
      for (int64_t dy = -1; dy <= 1; ++dy) {
        for (int64_t dx = -1; dx <= 1; ++dx) {
          int64_t yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= img.h || xx < 0 || xx >= img.w) continue;
          int64_t j = yy * img.w + xx;
          if (label[j] != -1 || dist[j] <= kLowContrast) continue;
          label[j] = id;
          stack.push_back(j);
        }
      }
    }
    blobs.push_back(std::move(blob));
    if (!strong || blobs.back().pixels.size() < min_area) blobs.back().pixels.clear();
  }
  std::vector<Blob> kept;
  for (auto& b : blobs)
    if (!b.pixels.empty()) kept.push_back(std::move(b));
  return kept;
}

}  // namespace
}  // namespace judge_detail

JudgeResult judge(const torch::Tensor& rgb_u8, const Scene* expected) {
  using namespace judge_detail;
  const Image img = load(rgb_u8);
  JudgeResult result;
  result.height = img.h, result.width = img.w;
  const BackgroundModel bg = fit_background(img);
  result.background = bg.fit;
  result.scene.background = bg.fit.background;

  const std::vector<float> dist = bg.distances(img);
  const std::vector<Vec3> bg_rgb = bg.colors(img);
  const auto blobs = find_blobs(img, dist);
  for (const Blob& blob : blobs) result.found.push_back(analyze_blob(img, blob, dist, bg_rgb));
  // Reading order, as captions list objects.
  std::stable_sort(result.found.begin(), result.found.end(), [](const FoundObject& a, const FoundObject& b) {
    return a.object.grid_cell != b.object.grid_cell ? a.object.grid_cell < b.object.grid_cell
                                                    : a.object.cx < b.object.cx;
  });
  for (const auto& f : result.found) result.scene.objects.push_back(f.object);
  if (expected) {
    result.expected = *expected;
    result.verdict = compare(result.scene, *expected);
  }
  return result;
}

Scene judge_scene(const torch::Tensor& rgb_u8) { return judge(rgb_u8).scene; }

}  // namespace sine::world
