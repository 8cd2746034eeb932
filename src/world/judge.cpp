#include "world/judge.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"
#include "world/render.h"

namespace sine::world {
namespace {

using Lab = std::array<float, 3>;
using Vec3 = std::array<float, 3>;

// Foreground is what differs from the background model by more than kLowContrast (CIE76), in
// blobs that reach kHighContrast somewhere. The sampler keeps objects >= 38 and pattern tones
// >= 28 away from every background color, so both margins are wide.
constexpr float kLowContrast = 10.0f;
constexpr float kHighContrast = 20.0f;
constexpr float kBorderInlier = 20.0f;  // sRGB distance for a border pixel to fit a model
constexpr float kMinBlobArea = 0.08f;   // of a small object's box
constexpr float kPatternMatch = 0.5f;      // correlation of the tone with stripes or dots
constexpr float kPatternAmplitude = 0.35f; // swing of the tone along the pattern (crisp: 1)

struct Image {
  int64_t h = 0, w = 0;
  std::vector<Vec3> rgb;
  std::vector<Lab> lab;
};

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
  img.lab.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    img.rgb[i] = {static_cast<float>(p[3 * i]), static_cast<float>(p[3 * i + 1]), static_cast<float>(p[3 * i + 2])};
    img.lab[i] = lab_of_rgb_float(img.rgb[i][0], img.rgb[i][1], img.rgb[i][2]);
  }
  return img;
}

float rgb_distance(const Vec3& a, const Vec3& b) {
  float s = 0;
  for (int c = 0; c < 3; ++c) s += (a[c] - b[c]) * (a[c] - b[c]);
  return std::sqrt(s);
}

Lab lab_of_vec(const Vec3& v) {
  return lab_of_rgb_float(std::clamp(v[0], 0.0f, 255.0f), std::clamp(v[1], 0.0f, 255.0f),
                          std::clamp(v[2], 0.0f, 255.0f));
}

Lab lab_of_color(Color c) { return lab_of(rgb_of(c)); }

std::pair<Color, float> nearest_color(const Lab& lab) {
  Color best = Color::red;
  float best_d = 1e9f;
  for (int i = 0; i < kColorCount; ++i) {
    float d = delta_e(lab, lab_of_color(static_cast<Color>(i)));
    if (d < best_d) best_d = d, best = static_cast<Color>(i);
  }
  return {best, best_d};
}

// Projection of p on the segment a-b: returns (t in [0, 1], distance).
std::pair<float, float> project(const Lab& p, const Lab& a, const Lab& b) {
  float ab2 = 0, dot = 0;
  for (int c = 0; c < 3; ++c) ab2 += (b[c] - a[c]) * (b[c] - a[c]), dot += (p[c] - a[c]) * (b[c] - a[c]);
  float t = ab2 > 1e-6f ? std::clamp(dot / ab2, 0.0f, 1.0f) : 0.0f;
  Lab q{a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])};
  return {t, delta_e(p, q)};
}

float median(std::vector<float> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + v.size() / 2;
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

// ---- background ----------------------------------------------------------------------------

struct BackgroundModel {
  BackgroundFit fit;
  bool checkered = false;
  std::array<Vec3, 3> coef{};  // solid/gradient: rgb = coef[0] + coef[1] * y + coef[2] * x (normalized)
  Lab tone_a{}, tone_b{};      // checkered: the two cell tones

  // CIE76 distance of every pixel to the background: to the modeled color, or for a checker
  // to the segment between its tones (cell edges blend them).
  std::vector<float> distances(const Image& img) const {
    std::vector<float> d(img.h * img.w);
    bool flat_rows = true;  // one color per row: convert it to Lab once
    for (int c = 0; c < 3; ++c) flat_rows &= std::abs(coef[2][c]) < 1.0f;
    for (int64_t y = 0; y < img.h; ++y) {
      const Lab row = lab_of_vec(at(img, y, img.w / 2));
      for (int64_t x = 0; x < img.w; ++x) {
        const int64_t i = y * img.w + x;
        d[i] = checkered  ? project(img.lab[i], tone_a, tone_b).second
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

BackgroundModel fit_checker_background(const Image& img, const std::vector<int64_t>& border) {
  const float cell = kCheckerCell * std::min(img.h, img.w);
  std::array<std::vector<int64_t>, 2> classes;
  for (int64_t i : border) {
    float fx = (i % img.w + 0.5f) / cell, fy = (i / img.w + 0.5f) / cell;
    float edge = std::min(std::abs(fx - std::round(fx)), std::abs(fy - std::round(fy))) * cell;
    if (edge < 1.5f) continue;  // blends of both tones near a cell edge
    classes[static_cast<int64_t>(std::floor(fx) + std::floor(fy)) & 1].push_back(i);
  }
  BackgroundModel m;
  m.checkered = true;
  if (classes[0].empty() || classes[1].empty()) return m;
  std::array<Vec3, 2> tones{};
  size_t explained = 0;
  for (int k = 0; k < 2; ++k) {
    for (int c = 0; c < 3; ++c) {
      std::vector<float> v;
      for (int64_t i : classes[k]) v.push_back(img.rgb[i][c]);
      tones[k][c] = median(v);
    }
    for (int64_t i : classes[k]) explained += rgb_distance(img.rgb[i], tones[k]) < kBorderInlier;
  }
  m.tone_a = lab_of_vec(tones[0]);
  m.tone_b = lab_of_vec(tones[1]);
  m.fit.border_explained = static_cast<float>(explained) / (classes[0].size() + classes[1].size());
  return m;
}

BackgroundModel fit_background(const Image& img) {
  const auto border = border_pixels(img);
  BackgroundModel linear = fit_linear_background(img, border);
  BackgroundModel checker = fit_checker_background(img, border);
  Background& bg = checker.fit.background;
  if (checker.fit.border_explained > linear.fit.border_explained + 0.1f &&
      delta_e(checker.tone_a, checker.tone_b) > 6.0f) {
    // Either cell may carry the base color (a model's output needn't keep the phase).
    float best = 1e9f;
    for (int i = 0; i < kColorCount; ++i) {
      Color c = static_cast<Color>(i);
      Lab base = lab_of_color(c), tone = lab_of(checker_tone(c));
      float d = std::min(delta_e(checker.tone_a, base) + delta_e(checker.tone_b, tone),
                         delta_e(checker.tone_b, base) + delta_e(checker.tone_a, tone));
      if (d < best) best = d, bg.color = bg.color2 = c;
    }
    bg.kind = BackgroundKind::checkered;
    checker.fit.color_distance = best / 2;
    return checker;
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

struct Blob {
  std::vector<int64_t> pixels;
  int64_t x0, y0, x1, y1;  // bounding box, exclusive ends
};

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

// ---- per-blob attributes -------------------------------------------------------------------

// Chooses the palette color whose segment [color, pattern tone] explains the pixels best;
// pixels in the tone cost a little more, so a plain object in some color's tone stays plain.
struct ColorFit {
  Color color = Color::red;
  float residual = 0;
};

ColorFit fit_color(const std::vector<Lab>& labs) {
  ColorFit best;
  float best_cost = 1e30f;
  for (int k = 0; k < kColorCount; ++k) {
    Color c = static_cast<Color>(k);
    Lab base = lab_of_color(c), tone = lab_of(pattern_tone(c));
    float cost = 0, residual = 0;
    for (const Lab& p : labs) {
      auto [t, r] = project(p, base, tone);
      float capped = std::min(r, 30.0f);
      // Pixels between the two tones cost most: on the achromatic line black+light tone,
      // gray+dark tone and white+gray tone are collinear, and only where the pixels cluster
      // tells them apart.
      cost += capped * capped + 64.0f * t + 400.0f * t * (1 - t);
      residual += r;
    }
    if (cost < best_cost) {
      best_cost = cost;
      best.color = c;
      best.residual = residual / std::max<size_t>(1, labs.size());
    }
  }
  return best;
}

// Pearson correlation of b with a, and the slope of b regressed on a.
std::pair<float, float> correlate(const std::vector<float>& a, const std::vector<float>& b) {
  const size_t n = a.size();
  double ma = 0, mb = 0;
  for (size_t k = 0; k < n; ++k) ma += a[k], mb += b[k];
  ma /= n, mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t k = 0; k < n; ++k) {
    sab += (a[k] - ma) * (b[k] - mb), saa += (a[k] - ma) * (a[k] - ma), sbb += (b[k] - mb) * (b[k] - mb);
  }
  if (saa <= 1e-12 || sbb <= 1e-12) return {0.0f, 0.0f};
  return {static_cast<float>(sab / std::sqrt(saa * sbb)), static_cast<float>(sab / saa)};
}

struct PatternMatch {
  float stripes = -1, dots = -1;  // best correlation of t with each pattern's coverage
  float amplitude = 0;            // how far t moves with the better pattern's coverage
};

// How well the tone coordinate t of the pixels follows stripes or dots of the world's period,
// at the best phase. Searching the phase keeps this working for images whose pattern is not
// anchored at the object's center.
PatternMatch pattern_matches(const Image& img, const std::vector<int64_t>& pixels,
                                        const std::vector<float>& t, float cx, float cy) {
  const float period = kPatternPeriod * std::min(img.h, img.w);
  const int samples = period < 10 ? 3 : 2, phases = 6;
  std::vector<float> coverage(pixels.size());
  PatternMatch m;
  float stripes_slope = 0, dots_slope = 0;
  for (int py = 0; py < phases; ++py) {
    for (int px = 0; px <= phases; ++px) {
      const bool stripes = px == phases;  // the last column of the phase grid: stripes
      const float oy = cy + period * py / phases, ox = cx + period * (stripes ? 0 : px) / phases;
      for (size_t k = 0; k < pixels.size(); ++k) {
        const int64_t y = pixels[k] / img.w, x = pixels[k] % img.w;
        int hits = 0;
        for (int a = 0; a < samples; ++a) {
          float v = (y + (a + 0.5f) / samples - oy) / period;
          float dv = v - std::round(v);
          for (int b = 0; b < samples; ++b) {
            if (stripes) {
              hits += std::abs(dv) < kStripeDuty / 2;
              continue;
            }
            float u = (x + (b + 0.5f) / samples - ox) / period;
            float du = u - std::round(u);
            hits += du * du + dv * dv < kDotRadius * kDotRadius;
          }
        }
        coverage[k] = static_cast<float>(hits) / (samples * samples);
      }
      auto [r, slope] = correlate(coverage, t);
      float& best = stripes ? m.stripes : m.dots;
      if (r > best) best = r, (stripes ? stripes_slope : dots_slope) = slope;
    }
  }
  m.amplitude = m.stripes >= m.dots ? stripes_slope : dots_slope;
  return m;
}

// Plain unless the tone follows stripes or dots closely and with a real swing (blends with
// the background at the rim of a plain object correlate with neither, and swing little).
void classify_pattern(const Image& img, const std::vector<int64_t>& pixels, const std::vector<float>& t,
                      FoundObject& out) {
  const float cx = out.object.cx * img.w, cy = out.object.cy * img.h;
  const PatternMatch match = pattern_matches(img, pixels, t, cx, cy);
  out.stripe_match = match.stripes, out.dot_match = match.dots, out.pattern_amplitude = match.amplitude;
  if (std::max(match.stripes, match.dots) < kPatternMatch || match.amplitude < kPatternAmplitude)
    out.object.pattern = Pattern::plain;
  else
    out.object.pattern = match.stripes >= match.dots ? Pattern::striped : Pattern::dotted;
}

// Places each shape's template by the blob's area and centroid, tries a few scales, and keeps
// the best soft IoU; the winner gives shape, size and center.
void fit_shape(const Image& img, const Blob& blob, const std::vector<float>& alpha, FoundObject& out) {
  double area = 0, mx = 0, my = 0;
  for (size_t k = 0; k < blob.pixels.size(); ++k) {
    int64_t i = blob.pixels[k];
    area += alpha[k], mx += alpha[k] * (i % img.w + 0.5), my += alpha[k] * (i / img.w + 0.5);
  }
  mx /= area, my /= area;
  const float side = static_cast<float>(std::min(img.h, img.w));
  const int64_t bw = blob.x1 - blob.x0;
  std::vector<float> observed((blob.y1 - blob.y0) * bw, 0.0f), templ;
  for (size_t k = 0; k < blob.pixels.size(); ++k) {
    int64_t i = blob.pixels[k];
    observed[(i / img.w - blob.y0) * bw + (i % img.w - blob.x0)] = alpha[k];
  }
  auto observed_at = [&](int64_t y, int64_t x) {
    return y >= blob.y0 && y < blob.y1 && x >= blob.x0 && x < blob.x1 ? observed[(y - blob.y0) * bw + (x - blob.x0)]
                                                                      : 0.0f;
  };
  float best_iou = -1;
  for (int s = 0; s < kShapeCount; ++s) {
    const Shape shape = static_cast<Shape>(s);
    const ShapeMoments& mom = shape_moments(shape);
    const float size0 = static_cast<float>(std::sqrt(area / mom.area));
    float shape_best = 0;
    for (float scale : {0.94f, 1.0f, 1.06f}) {
      const float size = size0 * scale;
      const float cx = static_cast<float>(mx) - size * mom.cx, cy = static_cast<float>(my) - size * mom.cy;
      // Only the template's own box needs rendering: union = sum(observed) + sum(template) - overlap.
      const int x0 = static_cast<int>(std::max(0.0f, std::floor(cx - size / 2)));
      const int y0 = static_cast<int>(std::max(0.0f, std::floor(cy - size / 2)));
      const int x1 = static_cast<int>(std::min<float>(img.w, std::ceil(cx + size / 2)));
      const int y1 = static_cast<int>(std::min<float>(img.h, std::ceil(cy + size / 2)));
      if (x1 <= x0 || y1 <= y0) continue;
      templ.resize(static_cast<size_t>(x1 - x0) * (y1 - y0));
      shape_coverage(shape, cx, cy, size, x0, y0, x1 - x0, y1 - y0, size < 24 ? 3 : 2, templ.data());
      double inter = 0, sum_templ = 0;
      for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) {
          const float t = templ[(y - y0) * (x1 - x0) + (x - x0)];
          sum_templ += t, inter += std::min(t, observed_at(y, x));
        }
      const float iou = static_cast<float>(inter / (area + sum_templ - inter));
      shape_best = std::max(shape_best, iou);
      if (iou > best_iou) {
        best_iou = iou;
        out.object.shape = shape;
        out.extent = size / side;
        out.object.cx = cx / img.w;
        out.object.cy = cy / img.h;
      }
    }
    out.shape_iou[s] = shape_best;
  }
  out.object.size = out.extent < std::sqrt(kSmallExtent * kLargeExtent) ? Size::small : Size::large;
  out.object.grid_cell = grid_cell_of(out.object.cx, out.object.cy);
}

FoundObject analyze_blob(const Image& img, const Blob& blob, const std::vector<float>& dist) {
  FoundObject out;
  out.area_px = static_cast<int>(blob.pixels.size());
  // Coverage: contrast to the background relative to the blob's typical inner contrast.
  std::vector<float> strong;
  for (int64_t i : blob.pixels)
    if (dist[i] > kHighContrast) strong.push_back(dist[i]);
  std::nth_element(strong.begin(), strong.begin() + strong.size() * 3 / 10, strong.end());
  const float full = strong[strong.size() * 3 / 10];
  std::vector<float> alpha;
  for (int64_t i : blob.pixels) alpha.push_back(std::clamp(dist[i] / full, 0.0f, 1.0f));

  // Color and pattern from the blob's inner pixels, away from blends with the background:
  // depth is the chessboard distance to the nearest pixel outside the blob.
  const int64_t x0 = blob.x0 - 1, y0 = blob.y0 - 1, ww = blob.x1 - blob.x0 + 2, wh = blob.y1 - blob.y0 + 2;
  std::vector<int> depth(ww * wh, 0);
  std::vector<int64_t> frontier;
  for (size_t k = 0; k < blob.pixels.size(); ++k) {
    if (alpha[k] < 0.5f) continue;
    int64_t i = blob.pixels[k];
    depth[(i / img.w - y0) * ww + (i % img.w - x0)] = -1;
  }
  for (int64_t k = 0; k < ww * wh; ++k)
    if (depth[k] == 0) frontier.push_back(k);
  for (int d = 1; !frontier.empty(); ++d) {
    std::vector<int64_t> next;
    for (int64_t k : frontier) {
      int64_t y = k / ww, x = k % ww;
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          int64_t yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= wh || xx < 0 || xx >= ww || depth[yy * ww + xx] != -1) continue;
          depth[yy * ww + xx] = d;
          next.push_back(yy * ww + xx);
        }
    }
    frontier.swap(next);
  }
  auto pixels_at_depth = [&](int min_depth) {
    std::vector<int64_t> out;
    for (int64_t i : blob.pixels)
      if (depth[(i / img.w - y0) * ww + (i % img.w - x0)] >= min_depth) out.push_back(i);
    return out;
  };
  std::vector<int64_t> inner = pixels_at_depth(2);
  if (inner.size() < 6) inner = pixels_at_depth(1);
  if (inner.empty()) inner = blob.pixels;
  std::vector<Lab> inner_lab;
  for (int64_t i : inner) inner_lab.push_back(img.lab[i]);
  ColorFit color = fit_color(inner_lab);
  out.object.color = color.color;
  out.color_residual = color.residual;
  const Lab base = lab_of_color(color.color), tone = lab_of(pattern_tone(color.color));
  auto tone_coordinate = [&](const std::vector<int64_t>& pixels) {
    std::vector<float> t;
    for (int64_t i : pixels) t.push_back(project(img.lab[i], base, tone).first);
    return t;
  };
  fit_shape(img, blob, alpha, out);
  classify_pattern(img, inner, tone_coordinate(inner), out);

  out.mask = torch::zeros({img.h, img.w}, torch::kFloat32);
  float* m = out.mask.data_ptr<float>();
  for (size_t k = 0; k < blob.pixels.size(); ++k) m[blob.pixels[k]] = alpha[k];
  return out;
}

}  // namespace

JudgeResult judge(const torch::Tensor& rgb_u8, const Scene* expected) {
  const Image img = load(rgb_u8);
  JudgeResult result;
  result.height = img.h, result.width = img.w;
  const BackgroundModel bg = fit_background(img);
  result.background = bg.fit;
  result.scene.background = bg.fit.background;

  const std::vector<float> dist = bg.distances(img);
  const auto blobs = find_blobs(img, dist);
  for (const Blob& blob : blobs) result.found.push_back(analyze_blob(img, blob, dist));
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
