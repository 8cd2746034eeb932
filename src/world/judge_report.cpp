// The judge's verdicts and reports: pairing expected with found objects, and the text and
// JSON forms `sine world judge` prints.
#include <cmath>
#include <limits>
#include <sstream>

#include "world/caption.h"
#include "world/judge.h"

namespace sine::world {
namespace {

// Disagreement between an expected and a found object; color and shape identify an object
// more than its pattern or size, and the center distance breaks ties.
double pairing_cost(const Object& expected, const Object& found) {
  double cost = 4.0 * (expected.color != found.color) + 4.0 * (expected.shape != found.shape) +
                1.0 * (expected.pattern != found.pattern) + 1.0 * (expected.size != found.size);
  if (expected.grid_cell >= 0) {
    cost += 2.0 * (expected.grid_cell != found.grid_cell);
    cost += 0.1 * std::hypot(expected.cx - found.cx, expected.cy - found.cy);
  }
  return cost;
}

// Minimum-cost assignment of every row to a distinct column (rows <= columns), by the
// Hungarian method with potentials. Returns the column of each row.
std::vector<int> assign(const std::vector<std::vector<double>>& cost) {
  const int n = static_cast<int>(cost.size());
  const int m = n ? static_cast<int>(cost[0].size()) : 0;
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1), v(m + 1);
  std::vector<int> p(m + 1), way(m + 1);
  for (int i = 1; i <= n; ++i) {
    p[0] = i;
    int j0 = 0;
    std::vector<double> minv(m + 1, inf);
    std::vector<bool> used(m + 1, false);
    do {
      used[j0] = true;
      int i0 = p[j0], j1 = 0;
      double delta = inf;
      for (int j = 1; j <= m; ++j) {
        if (used[j]) continue;
        double cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
        if (cur < minv[j]) minv[j] = cur, way[j] = j0;
        if (minv[j] < delta) delta = minv[j], j1 = j;
      }
      for (int j = 0; j <= m; ++j) {
        if (used[j])
          u[p[j]] += delta, v[j] -= delta;
        else
          minv[j] -= delta;
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0);
  }
  std::vector<int> column(n, -1);
  for (int j = 1; j <= m; ++j)
    if (p[j] > 0) column[p[j] - 1] = j - 1;
  return column;
}

std::string object_words(const Object& o) {
  std::ostringstream s;
  s << name_of(o.size) << " " << name_of(o.color) << " " << name_of(o.pattern) << " " << name_of(o.shape);
  if (o.grid_cell >= 0) s << " at " << grid_cell_name(o.grid_cell);
  return s.str();
}

std::string background_words(const Background& bg) {
  std::string s = std::string(name_of(bg.kind)) + " " + name_of(bg.color);
  if (bg.kind == BackgroundKind::gradient) s += std::string(" to ") + name_of(bg.color2);
  if (bg.kind == BackgroundKind::split) s += std::string(" and ") + name_of(bg.color2);
  return s;
}

const char* mark(bool ok) { return ok ? "ok" : "WRONG"; }

}  // namespace

Verdict compare(const Scene& found, const Scene& expected) {
  Verdict v;
  if (expected.background_stated) {
    const Background &e = expected.background, &f = found.background;
    v.background_kind_ok = e.kind == f.kind;
    v.background_color_ok =
        e.color == f.color && (!has_second_color(e.kind) || e.kind != f.kind || e.color2 == f.color2);
  }
  v.count_ok = found.objects.size() == expected.objects.size();
  const size_t ne = expected.objects.size(), nf = found.objects.size();
  std::vector<int> found_of(ne, -1);
  if (ne > 0 && nf > 0) {
    const bool rows_expected = ne <= nf;
    std::vector<std::vector<double>> cost(rows_expected ? ne : nf, std::vector<double>(rows_expected ? nf : ne));
    for (size_t i = 0; i < ne; ++i)
      for (size_t j = 0; j < nf; ++j) {
        double c = pairing_cost(expected.objects[i], found.objects[j]);
        (rows_expected ? cost[i][j] : cost[j][i]) = c;
      }
    auto column = assign(cost);
    for (size_t r = 0; r < column.size(); ++r) {
      if (column[r] < 0) continue;
      if (rows_expected)
        found_of[r] = column[r];
      else
        found_of[column[r]] = static_cast<int>(r);
    }
  }
  for (size_t i = 0; i < ne; ++i) {
    ObjectVerdict ov;
    ov.expected = static_cast<int>(i);
    ov.found = found_of[i];
    if (ov.found >= 0) {
      const Object &e = expected.objects[i], &f = found.objects[ov.found];
      ov.color_ok = e.color == f.color;
      ov.shape_ok = e.shape == f.shape;
      ov.pattern_ok = e.pattern == f.pattern;
      ov.size_ok = e.size == f.size;
      ov.position_ok = e.grid_cell < 0 || e.grid_cell == f.grid_cell;
    }
    v.objects.push_back(ov);
  }
  v.pass = v.background_kind_ok && v.background_color_ok && v.count_ok;
  for (const auto& ov : v.objects) v.pass = v.pass && ov.ok();
  return v;
}

std::string describe(const JudgeResult& r) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << "image " << r.height << "x" << r.width << ": " << background_words(r.scene.background)
    << " background (model explains " << r.background.border_explained * 100 << "% of the border, "
    << "palette distance " << r.background.color_distance << ")\n";
  s << "found " << r.found.size() << " object" << (r.found.size() == 1 ? "" : "s") << "\n";
  for (size_t k = 0; k < r.found.size(); ++k) {
    const FoundObject& f = r.found[k];
    int runner_up = -1;
    for (int sh = 0; sh < kShapeCount; ++sh)
      if (sh != static_cast<int>(f.object.shape) && (runner_up < 0 || f.shape_iou[sh] > f.shape_iou[runner_up]))
        runner_up = sh;
    s << "  " << k + 1 << ". " << object_words(f.object) << "  [center " << f.object.cx << "," << f.object.cy
      << " extent " << f.extent << " area " << f.area_px << "px; shape IoU "
      << f.shape_iou[static_cast<int>(f.object.shape)] << " vs " << name_of(static_cast<Shape>(runner_up)) << " "
      << f.shape_iou[runner_up] << "; color residual " << f.color_residual << "; pattern match stripes "
      << f.stripe_match << " dots " << f.dot_match << " amplitude " << f.pattern_amplitude << "]\n";
  }
  s << "as a caption: " << caption(r.scene) << "\n";
  if (!r.verdict || !r.expected) return s.str();
  const Verdict& v = *r.verdict;
  const Scene& e = *r.expected;
  s << "expected: " << caption(e) << "\n";
  if (e.background_stated)
    s << "  background " << background_words(e.background) << ": kind " << mark(v.background_kind_ok)
      << ", color " << mark(v.background_color_ok) << "\n";
  s << "  count " << e.objects.size() << ": " << mark(v.count_ok) << " (found " << r.found.size() << ")\n";
  for (const ObjectVerdict& ov : v.objects) {
    s << "  " << object_words(e.objects[ov.expected]) << ": ";
    if (ov.found < 0) {
      s << "NOT FOUND\n";
      continue;
    }
    s << (ov.ok() ? "ok" : "WRONG") << " (as object " << ov.found + 1 << "; color " << mark(ov.color_ok)
      << ", shape " << mark(ov.shape_ok) << ", pattern " << mark(ov.pattern_ok) << ", size "
      << mark(ov.size_ok) << ", position " << mark(ov.position_ok) << ")\n";
  }
  s << "overall: " << (v.pass ? "PASS" : "FAIL") << "\n";
  return s.str();
}

nlohmann::json to_json(const JudgeResult& r) {
  nlohmann::json j;
  j["height"] = r.height;
  j["width"] = r.width;
  j["scene"] = to_json(r.scene);
  j["caption"] = caption(r.scene);
  j["background_fit"] = {{"border_explained", r.background.border_explained},
                         {"color_distance", r.background.color_distance}};
  nlohmann::json found = nlohmann::json::array();
  for (const FoundObject& f : r.found) {
    nlohmann::json o = to_json(f.object);
    o["extent"] = f.extent;
    o["area_px"] = f.area_px;
    nlohmann::json iou;
    for (int s = 0; s < kShapeCount; ++s) iou[name_of(static_cast<Shape>(s))] = f.shape_iou[s];
    o["shape_iou"] = iou;
    o["color_residual"] = f.color_residual;
    o["stripe_match"] = f.stripe_match;
    o["dot_match"] = f.dot_match;
    o["pattern_amplitude"] = f.pattern_amplitude;
    found.push_back(o);
  }
  j["found"] = found;
  if (r.expected && r.verdict) {
    const Verdict& v = *r.verdict;
    j["expected"] = to_json(*r.expected);
    j["expected_caption"] = caption(*r.expected);
    nlohmann::json objects = nlohmann::json::array();
    for (const ObjectVerdict& ov : v.objects)
      objects.push_back({{"expected", ov.expected}, {"found", ov.found}, {"ok", ov.ok()},
                         {"color_ok", ov.color_ok}, {"shape_ok", ov.shape_ok}, {"pattern_ok", ov.pattern_ok},
                         {"size_ok", ov.size_ok}, {"position_ok", ov.position_ok}});
    j["verdict"] = {{"background_kind_ok", v.background_kind_ok},
                    {"background_color_ok", v.background_color_ok},
                    {"count_ok", v.count_ok},
                    {"objects", objects},
                    {"pass", v.pass}};
  }
  return j;
}

JudgeReport judge_report(const torch::Tensor& rgb_u8, const std::string& expected_caption) {
  const Scene expected = parse_caption(expected_caption);
  const JudgeResult result = judge(rgb_u8, &expected);
  return {result.verdict->pass, describe(result), to_json(result)};
}

}  // namespace sine::world
