// The judge's reading of one foreground blob: shape by template overlap (templates blurred as
// much as the image is), then color and pattern from the blob's inside.
#include <algorithm>
#include <cmath>

#include "world/judge_internal.h"
#include "world/render.h"

namespace sine::world::judge_detail {
namespace {

constexpr float kPatternMatch = 0.5f;       // correlation of the tone with stripes or dots
constexpr float kPatternAmplitude = 0.35f;  // swing of the tone along the pattern (crisp: 1)
constexpr float kMinToneSpread = 0.05f;     // below, a pattern is too faint to see (a few CIE76)
// Gaussian blurs (pixels) tried on the best template; the best one is then used for every
// shape and for the pattern templates. Reconstructions through a VAE are blurry.
constexpr std::array<float, 6> kBlurs = {0.0f, 0.6f, 1.0f, 1.5f, 2.1f, 2.8f};

// In-place separable Gaussian blur of a w x h window, zero outside it.
void blur(std::vector<float>& v, int w, int h, float sigma) {
  if (sigma < 0.3f) return;
  const int r = static_cast<int>(std::ceil(3 * sigma));
  std::vector<float> k(2 * r + 1), tmp(v.size());
  float sum = 0;
  for (int i = -r; i <= r; ++i) sum += k[i + r] = std::exp(-0.5f * i * i / (sigma * sigma));
  for (float& x : k) x /= sum;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float acc = 0;
      for (int i = std::max(-r, -x); i <= std::min(r, w - 1 - x); ++i) acc += k[i + r] * v[y * w + x + i];
      tmp[y * w + x] = acc;
    }
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float acc = 0;
      for (int i = std::max(-r, -y); i <= std::min(r, h - 1 - y); ++i) acc += k[i + r] * tmp[(y + i) * w + x];
      v[y * w + x] = acc;
    }
}

int blur_radius(float sigma) { return sigma < 0.3f ? 0 : static_cast<int>(std::ceil(3 * sigma)); }

// Template matching of a blob's soft coverage against every shape.
class ShapeFitter {
 public:
  ShapeFitter(const Image& img, const Blob& blob, const std::vector<float>& alpha) : blob_(blob) {
    const int64_t bw = blob.x1 - blob.x0;
    observed_.assign((blob.y1 - blob.y0) * bw, 0.0f);
    double mx = 0, my = 0;
    for (size_t k = 0; k < blob.pixels.size(); ++k) {
      const int64_t i = blob.pixels[k], y = i / img.w, x = i % img.w;
      observed_[(y - blob.y0) * bw + (x - blob.x0)] = alpha[k];
      area_ += alpha[k], mx += alpha[k] * (x + 0.5), my += alpha[k] * (y + 0.5);
    }
    mx_ = static_cast<float>(mx / area_), my_ = static_cast<float>(my / area_);
  }

  struct Fit {
    Shape shape = Shape::circle;
    float scale = 1, size = 0, cx = 0, cy = 0, iou = -1;
    int x0 = 0, y0 = 0, w = 0, h = 0;  // the template's window
    std::vector<float> coverage;       // the template there (filled for the best fits only)

    float coverage_at(int64_t y, int64_t x) const {
      if (y < y0 || y >= y0 + h || x < x0 || x >= x0 + w) return 0.0f;
      return coverage[(y - y0) * w + (x - x0)];
    }
  };

  // The shape's template placed by the blob's area and centroid, scaled, blurred.
  Fit fit(Shape shape, float scale, float sigma) {
    const ShapeMoments& m = shape_moments(shape);
    Fit f;
    f.shape = shape, f.scale = scale;
    f.size = static_cast<float>(std::sqrt(area_ / m.area)) * scale;
    f.cx = mx_ - f.size * m.cx, f.cy = my_ - f.size * m.cy;
    const int r = blur_radius(sigma);
    const int x0 = f.x0 = static_cast<int>(std::floor(f.cx - f.size / 2)) - r;
    const int y0 = f.y0 = static_cast<int>(std::floor(f.cy - f.size / 2)) - r;
    const int w = f.w = static_cast<int>(std::ceil(f.cx + f.size / 2)) + r - x0;
    const int h = f.h = static_cast<int>(std::ceil(f.cy + f.size / 2)) + r - y0;
    templ_.assign(static_cast<size_t>(w) * h, 0.0f);
    shape_coverage(shape, f.cx, f.cy, f.size, x0, y0, w, h, f.size < 24 ? 3 : 2, templ_.data());
    blur(templ_, w, h, sigma);
    // Only the template's window needs visiting: union = sum(observed) + sum(template) - overlap.
    double inter = 0, sum_templ = 0;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const float t = templ_[y * w + x];
        sum_templ += t, inter += std::min(t, observed_at(y0 + y, x0 + x));
      }
    f.iou = static_cast<float>(inter / (area_ + sum_templ - inter));
    return f;
  }

  Fit best_at(float sigma, std::array<float, kShapeCount>* shape_iou) {
    Fit best;
    for (int s = 0; s < kShapeCount; ++s) {
      float shape_best = 0;
      for (float scale : {0.94f, 1.0f, 1.06f}) {
        Fit f = fit(static_cast<Shape>(s), scale, sigma);
        shape_best = std::max(shape_best, f.iou);
        if (f.iou > best.iou) best = f, best.coverage = templ_;
      }
      if (shape_iou) (*shape_iou)[s] = shape_best;
    }
    return best;
  }

 private:
  float observed_at(int64_t y, int64_t x) const {
    if (y < blob_.y0 || y >= blob_.y1 || x < blob_.x0 || x >= blob_.x1) return 0.0f;
    return observed_[(y - blob_.y0) * (blob_.x1 - blob_.x0) + (x - blob_.x0)];
  }

  const Blob& blob_;
  std::vector<float> observed_, templ_;
  double area_ = 0;
  float mx_ = 0, my_ = 0;
};

// Crisp templates first; the blur that best explains the winner's edges is then applied to all.
ShapeFitter::Fit fit_shape(const Image& img, const Blob& blob, const std::vector<float>& alpha, FoundObject& out) {
  ShapeFitter fitter(img, blob, alpha);
  ShapeFitter::Fit best = fitter.best_at(0.0f, &out.shape_iou);
  float sigma = 0, sigma_iou = best.iou;
  for (float s : kBlurs) {
    const float iou = fitter.fit(best.shape, best.scale, s).iou;
    if (iou > sigma_iou + 1e-4f) sigma = s, sigma_iou = iou;
  }
  if (sigma > 0) best = fitter.best_at(sigma, &out.shape_iou);
  const float side = static_cast<float>(std::min(img.h, img.w));
  out.blur_px = sigma;
  out.object.shape = best.shape;
  out.extent = best.size / side;
  out.object.cx = best.cx / img.w;
  out.object.cy = best.cy / img.h;
  out.object.size = out.extent < std::sqrt(kSmallExtent * kLargeExtent) ? Size::small : Size::large;
  out.object.grid_cell = grid_cell_of(out.object.cx, out.object.cy);
  return best;
}

struct ColorFit {
  Color color = Color::red;
  float residual = 0;
};

// Chooses the palette color whose segment [color, pattern tone] explains the pixels best.
// Pixels in the tone cost a little, so a plain object in some color's tone stays plain; pixels
// midway cost more: on the achromatic line black + light tone, gray + dark tone and white +
// gray tone are collinear, and only where the pixels cluster tells them apart.
ColorFit fit_color(const std::vector<Lab>& labs) {
  ColorFit best;
  float best_cost = 1e30f;
  for (int k = 0; k < kColorCount; ++k) {
    const Color c = static_cast<Color>(k);
    const Lab base = lab_of_color(c), tone = lab_of(pattern_tone(c));
    float cost = 0, residual = 0;
    for (const Lab& p : labs) {
      auto [t, r] = project(p, base, tone);
      const float capped = std::min(r, 30.0f);
      const float midway = std::clamp((std::min(t, 1 - t) - 0.15f) / 0.2f, 0.0f, 1.0f);
      cost += capped * capped + 64.0f * t + 150.0f * midway;
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
  for (size_t k = 0; k < n; ++k)
    sab += (a[k] - ma) * (b[k] - mb), saa += (a[k] - ma) * (a[k] - ma), sbb += (b[k] - mb) * (b[k] - mb);
  if (saa <= 1e-12 || sbb <= 1e-12) return {0.0f, 0.0f};
  return {static_cast<float>(sab / std::sqrt(saa * sbb)), static_cast<float>(sab / saa)};
}

// How well the tone coordinate t of the pixels follows stripes or dots of the world's period,
// blurred like the image, at the best phase: searching the phase keeps this working for
// images whose pattern is not anchored at the object's center.
// best_coverage receives the winning pattern's coverage at the pixels.
void match_patterns(const Image& img, const Blob& blob, const std::vector<int64_t>& pixels,
                    const std::vector<float>& t, float cx, float cy, float sigma, FoundObject& out,
                    std::vector<float>& best_coverage) {
  const float period = kPatternPeriod * std::min(img.h, img.w);
  const int samples = period < 10 ? 3 : 2, phases = 6, r = blur_radius(sigma);
  const int64_t x0 = blob.x0 - r, y0 = blob.y0 - r;
  const int w = static_cast<int>(blob.x1 - blob.x0 + 2 * r), h = static_cast<int>(blob.y1 - blob.y0 + 2 * r);
  std::vector<float> window(static_cast<size_t>(w) * h), coverage(pixels.size());
  float best[2] = {-1, -1}, slope[2] = {0, 0};
  std::vector<float> best_of[2];
  for (int py = 0; py < phases; ++py) {
    for (int px = 0; px <= phases; ++px) {
      const bool stripes = px == phases;  // the last column of the phase grid: stripes
      const float oy = cy + period * py / phases, ox = cx + period * (stripes ? 0 : px) / phases;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          int hits = 0;
          for (int a = 0; a < samples; ++a) {
            const float v = (y0 + y + (a + 0.5f) / samples - oy) / period, dv = v - std::round(v);
            for (int b = 0; b < samples; ++b) {
              if (stripes) {
                hits += std::abs(dv) < kStripeDuty / 2;
                continue;
              }
              const float u = (x0 + x + (b + 0.5f) / samples - ox) / period, du = u - std::round(u);
              hits += du * du + dv * dv < kDotRadius * kDotRadius;
            }
          }
          window[y * w + x] = static_cast<float>(hits) / (samples * samples);
        }
      blur(window, w, h, sigma);
      for (size_t k = 0; k < pixels.size(); ++k)
        coverage[k] = window[(pixels[k] / img.w - y0) * w + (pixels[k] % img.w - x0)];
      auto [corr, s] = correlate(coverage, t);
      if (corr > best[stripes]) best[stripes] = corr, slope[stripes] = s, best_of[stripes] = coverage;
    }
  }
  double mean = 0, var = 0;
  for (float v : t) mean += v;
  mean /= std::max<size_t>(1, t.size());
  for (float v : t) var += (v - mean) * (v - mean);
  out.tone_spread = static_cast<float>(std::sqrt(var / std::max<size_t>(1, t.size())));
  out.stripe_match = best[1], out.dot_match = best[0];
  out.pattern_amplitude = best[1] >= best[0] ? slope[1] : slope[0];
  best_coverage = best[1] >= best[0] ? best_of[1] : best_of[0];
  // Plain unless the tone follows stripes or dots closely and with a real swing (blends with
  // the background at the rim of a plain object correlate with neither, and swing little).
  if (std::max(best[0], best[1]) < kPatternMatch || out.pattern_amplitude < kPatternAmplitude ||
      out.tone_spread < kMinToneSpread)
    out.object.pattern = Pattern::plain;
  else
    out.object.pattern = best[1] >= best[0] ? Pattern::striped : Pattern::dotted;
}

// Chessboard distance of each blob pixel to the nearest pixel outside the blob (alpha < 0.5).
std::vector<int> depths(const Image& img, const Blob& blob, const std::vector<float>& alpha) {
  const int64_t x0 = blob.x0 - 1, y0 = blob.y0 - 1, ww = blob.x1 - blob.x0 + 2, wh = blob.y1 - blob.y0 + 2;
  std::vector<int> depth(ww * wh, 0);
  for (size_t k = 0; k < blob.pixels.size(); ++k) {
    if (alpha[k] < 0.5f) continue;
    const int64_t i = blob.pixels[k];
    depth[(i / img.w - y0) * ww + (i % img.w - x0)] = -1;
  }
  std::vector<int64_t> frontier, next;
  for (int64_t k = 0; k < ww * wh; ++k)
    if (depth[k] == 0) frontier.push_back(k);
  for (int d = 1; !frontier.empty(); ++d) {
    next.clear();
    for (int64_t k : frontier) {
      const int64_t y = k / ww, x = k % ww;
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= wh || xx < 0 || xx >= ww || depth[yy * ww + xx] != -1) continue;
          depth[yy * ww + xx] = d;
          next.push_back(yy * ww + xx);
        }
    }
    frontier.swap(next);
  }
  std::vector<int> out;
  for (int64_t i : blob.pixels) out.push_back(depth[(i / img.w - y0) * ww + (i % img.w - x0)]);
  return out;
}

// The palette color whose pattern, laid out as matched, explains the pixels best. The layout's
// contrast is let free (around its mean, which blur keeps): the blur is known only roughly.
Color fit_patterned_color(const std::vector<Lab>& lab, const std::vector<float>& coverage) {
  double mean = 0;
  for (float m : coverage) mean += m;
  mean /= std::max<size_t>(1, coverage.size());
  Color best = Color::red;
  double best_cost = 1e30;
  for (int k = 0; k < kColorCount; ++k) {
    const Color c = static_cast<Color>(k);
    const Rgb base = rgb_of(c), tone = pattern_tone(c);
    for (float contrast : {0.4f, 0.55f, 0.7f, 0.85f, 1.0f, 1.15f}) {
      double cost = 0;
      for (size_t i = 0; i < lab.size(); ++i) {
        const float m = std::clamp(static_cast<float>(mean + contrast * (coverage[i] - mean)), 0.0f, 1.0f);
        const Lab model = lab_of_rgb_float(base[0] + (tone[0] - base[0]) * m, base[1] + (tone[1] - base[1]) * m,
                                           base[2] + (tone[2] - base[2]) * m);
        const float r = std::min(delta_e(lab[i], model), 30.0f);
        cost += r * r;
      }
      if (cost < best_cost) best_cost = cost, best = c;
    }
  }
  return best;
}

// Color, then pattern, of the given pixels (their Lab colors in lab). A pattern once found
// tells which pixels should show the tone, and so which color pair explains them: blurred
// stripes of black and light gray look like gray and dark gray pixel by pixel, not as laid out.
void read_color_and_pattern(const Image& img, const Blob& blob, const std::vector<int64_t>& pixels,
                            const std::vector<Lab>& lab, float cx, float cy, float sigma, FoundObject& out,
                            std::vector<float>& t) {
  const ColorFit color = fit_color(lab);
  out.object.color = color.color;
  out.color_residual = color.residual;
  std::vector<float> coverage;
  for (int round = 0; round < 2; ++round) {
    const Lab base = lab_of_color(out.object.color), tone = lab_of(pattern_tone(out.object.color));
    t.clear();
    for (const Lab& p : lab) t.push_back(project(p, base, tone).first);
    match_patterns(img, blob, pixels, t, cx, cy, sigma, out, coverage);
    if (out.object.pattern == Pattern::plain) return;
    const Color patterned = fit_patterned_color(lab, coverage);
    if (patterned == out.object.color) return;
    out.object.color = patterned;
  }
}

// The blob's pixels at least min_depth inside (fewer where too few are that deep).
std::vector<int64_t> deep_pixels(const Image& img, const Blob& blob, const std::vector<float>& alpha, int min_depth) {
  const std::vector<int> depth = depths(img, blob, alpha);
  std::vector<int64_t> inner;
  for (int d = min_depth; d >= 0 && inner.size() < 6; --d) {
    inner.clear();
    for (size_t k = 0; k < blob.pixels.size(); ++k)
      if (depth[k] >= d) inner.push_back(blob.pixels[k]);
  }
  return inner;
}

float percentile(std::vector<float> v, float q) {
  if (v.empty()) return 0;
  auto at = v.begin() + static_cast<int64_t>(q * (v.size() - 1));
  std::nth_element(v.begin(), at, v.end());
  return *at;
}

}  // namespace

// Coverage is the contrast to the background relative to the object's full contrast. Where
// the object is patterned, full contrast is that of its fainter tone, so that the inside is
// solid; the template fit then finds the blur, and a blurry image is read again with the
// pattern templates blurred alike and from deeper inside.
FoundObject analyze_blob(const Image& img, const Blob& blob, const std::vector<float>& dist,
                         const std::vector<Vec3>& background) {
  FoundObject out;
  out.area_px = static_cast<int>(blob.pixels.size());
  std::vector<float> d;
  double mx = 0, my = 0;
  for (int64_t i : blob.pixels) {
    d.push_back(dist[i]);
    mx += i % img.w + 0.5, my += i / img.w + 0.5;
  }
  mx /= blob.pixels.size(), my /= blob.pixels.size();
  auto coverage = [&](float full) {
    std::vector<float> alpha;
    for (float v : d) alpha.push_back(std::clamp(v / full, 0.0f, 1.0f));
    return alpha;
  };
  auto labs_of = [&](const std::vector<int64_t>& pixels) {
    std::vector<Lab> labs;
    for (int64_t i : pixels) labs.push_back(img.lab[i]);
    return labs;
  };
  // Which pixels are inside, for picking deep ones, is judged against a lower contrast: the
  // fainter tone of a pattern must count as inside.
  const std::vector<float> solid = coverage(percentile(d, 0.3f));
  std::vector<float> alpha = coverage(percentile(d, 0.95f));
  std::vector<int64_t> inner = deep_pixels(img, blob, solid, 2);
  std::vector<float> t;
  read_color_and_pattern(img, blob, inner, labs_of(inner), static_cast<float>(mx), static_cast<float>(my), 0.0f,
                         out, t);
  if (out.object.pattern != Pattern::plain) {
    std::vector<float> base_d, tone_d;
    for (size_t k = 0; k < inner.size(); ++k) (t[k] < 0.5f ? base_d : tone_d).push_back(dist[inner[k]]);
    if (!base_d.empty() && !tone_d.empty())
      alpha = coverage(std::max(1.0f, std::min(percentile(base_d, 0.9f), percentile(tone_d, 0.9f))));
  }

  const ShapeFitter::Fit shape = fit_shape(img, blob, alpha, out);
  if (out.blur_px > 0) {
    // A blurry image mixes the background into the object's rim and into thin parts: undo the
    // mix the fitted (blurred) template predicts, where the object dominates.
    for (float min_coverage : {0.75f, 0.5f}) {
      inner.clear();
      std::vector<Lab> labs;
      for (int64_t i : blob.pixels) {
        const float a = shape.coverage_at(i / img.w, i % img.w);
        if (a < min_coverage) continue;
        const Vec3 &p = img.rgb[i], &b = background[i];
        inner.push_back(i);
        labs.push_back(lab_of_vec({b[0] + (p[0] - b[0]) / a, b[1] + (p[1] - b[1]) / a, b[2] + (p[2] - b[2]) / a}));
      }
      if (inner.size() < 6) continue;
      read_color_and_pattern(img, blob, inner, labs, out.object.cx * img.w, out.object.cy * img.h, out.blur_px,
                             out, t);
      break;
    }
  }

  out.mask = torch::zeros({img.h, img.w}, torch::kFloat32);
  float* m = out.mask.data_ptr<float>();
  for (size_t k = 0; k < blob.pixels.size(); ++k) m[blob.pixels[k]] = alpha[k];
  return out;
}

}  // namespace sine::world::judge_detail
