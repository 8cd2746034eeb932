#include "eval/sine_resize_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>

#include "core/error.h"
#include "core/progress.h"
#include "eval/report_table.h"
#include "eval/statistics.h"
#include "io/image.h"
#include "io/json_file.h"
#include "io/model_hash.h"
#include "methods/sine/sine_edit.h"
#include "methods/sine/sine_finetune.h"
#include "world/caption.h"
#include "world/judge.h"
#include "world/render.h"
#include "world/scene.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

// One row of the table: every image's object count against its source, in case order (scene,
// canvas), so two rows pair up case by case.
struct CountRow {
  std::vector<bool> duplicated, lost, exact;
  void add(int64_t found, int64_t expected) {
    duplicated.push_back(found > expected);
    lost.push_back(found < expected);
    exact.push_back(found == expected);
  }
};

eval::Rate rate_of(const std::vector<bool>& v) {
  return eval::wilson(std::count(v.begin(), v.end(), true), static_cast<int64_t>(v.size()));
}

std::string canvas_name(int64_t w, int64_t h) { return std::to_string(w) + "x" + std::to_string(h); }

std::vector<std::pair<int64_t, int64_t>> canvas_sizes(const Pipeline& pre, const SineResizeBenchOptions& o) {
  const int64_t size = pre.native_size(), factor = pre.vae_factor();
  std::vector<std::pair<int64_t, int64_t>> canvases;  // (width, height)
  for (const auto& [fw, fh] : o.canvases) {
    auto side = [&](double f) { return std::max<int64_t>(factor, std::llround(f * size / factor) * factor); };
    if (!(fw > 0 && fh > 0 && fw <= 8 && fh <= 8)) throw Error("canvases: factors must be in (0, 8]");
    canvases.emplace_back(side(fw), side(fh));
  }
  return canvases;
}

// ---------------------------------------------------------------------------------------------
// Run: one scene -> its record (every row's object count at every canvas, grid images on disk),
// kept in output_dir/scenes/ and read back by a rerun with the same options.

struct Run {
  const SineResizeBenchOptions& o;
  Pipeline& pre;
  std::vector<std::pair<int64_t, int64_t>> canvases;
  world::SceneSampling sampling;
  nlohmann::json key;  // what a finished scene's record must match to be reused
  std::string desc = sine_training_prompt("photo of a sks {class}", "picture");
};

// The model in a record's key: its A1111 short hash (the same file under another name or folder
// reuses the record), or for a model without a file (the embedded default) its source name.
std::string model_key(const Pipeline& pre) {
  const std::string hash = pre.model_hash();
  return hash.empty() ? pre.source() : hash;
}

// Records written before keys held the hash name the model by the path it was given: such a record
// matches when that path still holds a model with the same hash.
bool same_key(nlohmann::json recorded, const nlohmann::json& key) {
  if (recorded.is_object() && recorded.contains("model") && recorded["model"].is_string()) {
    const std::string model = recorded["model"].get<std::string>();
    std::error_code ec;
    if (model != key.value("model", "") && fs::exists(model, ec)) recorded["model"] = model_short_hash(model);
  }
  return recorded == key;
}

// The fine-tuned patch model's row after `steps` steps (the last step count is the main row).
std::string patch_row_name(const SineResizeBenchOptions& o, int64_t steps) {
  const std::string row = "fine-tuned alone, patch (grid)";
  return steps == o.patch_steps.back() ? row : row + " @" + std::to_string(steps);
}

nlohmann::json run_scene(const Run& run, int64_t i) {
  const SineResizeBenchOptions& o = run.o;
  Pipeline& pre = run.pre;
  std::mt19937_64 rng(o.seed + static_cast<uint64_t>(i));
  const world::Scene scene = world::sample_scene(rng, run.sampling);
  const std::string caption = world::caption(scene);
  const torch::Tensor image = world::render_scene(scene, pre.native_size(), pre.native_size());
  const int64_t expected = static_cast<int64_t>(scene.objects.size());
  char stem[32];
  std::snprintf(stem, sizeof stem, "scene_%04lld", static_cast<long long>(i));
  const fs::path record = fs::path(o.output_dir) / "scenes" / (std::string(stem) + ".json");
  if (fs::exists(record)) {
    nlohmann::json done;
    try {
      done = read_json_file(record.string());
    } catch (const Error&) {
      done = nullptr;  // unreadable: recompute it
    }
    if (done.is_object() && same_key(done.value("key", nlohmann::json()), run.key) && done.value("caption", "") == caption) {
      std::cerr << "== scene " << i + 1 << "/" << o.scenes << ": " << caption << " (from " << record.string() << ")\n";
      return done;
    }
  }
  std::cerr << "== scene " << i + 1 << "/" << o.scenes << ": " << caption << "\n";
  nlohmann::json scene_json{{"key", run.key}, {"caption", caption}, {"expected", expected},
                            {"counts", nlohmann::json::object()}, {"rows", nlohmann::json::array()},
                            {"grid", nlohmann::json::array()}};

  // Generates at every canvas with the given branch and mode; records the counts in `name`.
  auto judge_row = [&](const std::string& name, const SineBranch* branch, SineEditMode mode) {
    scene_json["rows"].push_back(name);
    for (size_t k = 0; k < run.canvases.size(); ++k) {
      const auto [w, h] = run.canvases[k];
      SineEditConfig c;
      c.edit_prompt = mode == SineEditMode::NoGuidance ? run.desc : caption;
      c.steps = o.edit_steps;
      c.scale = o.scale;
      c.seed = 7000 + static_cast<uint64_t>(i) * 16 + k;
      c.width = w;
      c.height = h;
      c.mode = mode;
      const torch::Tensor img = branch ? sine_edit(pre, {*branch}, c) : sine_edit(pre, std::vector<SineBranch>{}, c);
      const int64_t found = static_cast<int64_t>(world::judge(img).found.size());
      scene_json["counts"][name][canvas_name(w, h)] = found;
      if (i < o.grid_scenes && k == 0) {
        const std::string file = std::string(stem) + "_" + std::to_string(scene_json["grid"].size()) + ".png";
        write_png((fs::path(o.output_dir) / "scenes" / file).string(), img);
        scene_json["grid"].push_back(
            {{"file", file}, {"label", name + ": " + std::to_string(found) + "/" + std::to_string(expected)}});
      }
    }
  };
  auto finetune_config = [&](SineMode mode, int64_t steps) {
    SineFinetuneConfig c;
    c.class_word = "picture";
    c.mode = mode;
    c.steps = steps;
    c.lr = o.lr;
    c.seed = 23 + static_cast<uint64_t>(i);
    return c;
  };
  {
    Pipeline whole = Pipeline::load(o.model);
    SineFinetuner ft(whole, image, finetune_config(SineMode::Whole, o.whole_steps));
    ft.train();
    SineBranch b{&whole, nullptr, run.desc, sine_beta(o.v), o.K};
    judge_row("fine-tuned alone, whole (no grid)", &b, SineEditMode::NoGuidance);
    judge_row("SINE, whole (no grid)", &b, SineEditMode::Sine);
  }
  {
    const int64_t last_patch = o.patch_steps.back();
    Pipeline patch = Pipeline::load(o.model);
    SineFinetuner ft(patch, image, finetune_config(SineMode::Patch, last_patch));
    for (int64_t steps : o.patch_steps) {
      ft.train(steps);
      SineBranch b{&patch, ft.grid(), run.desc, sine_beta(o.v), o.K};
      judge_row(patch_row_name(o, steps), &b, SineEditMode::NoGuidance);
      if (steps == last_patch) judge_row("SINE, patch (grid)", &b, SineEditMode::Sine);
    }
  }
  judge_row("pre-trained alone", nullptr, SineEditMode::Pretrained);
  write_json_file(record.string(), scene_json);
  return scene_json;
}

// ---------------------------------------------------------------------------------------------
// Tally: the scene records -> one CountRow per row (in the records' order) and the grid.

struct Tally {
  std::map<std::string, CountRow> rows;
  std::vector<std::string> order;
  std::vector<torch::Tensor> grid;
  std::vector<std::string> labels;
};

Tally tally(const std::vector<nlohmann::json>& records, const std::vector<std::pair<int64_t, int64_t>>& canvases,
            const std::string& output_dir, int64_t grid_scenes) {
  Tally t;
  for (size_t i = 0; i < records.size(); ++i) {
    const nlohmann::json& r = records[i];
    const int64_t expected = r.at("expected").get<int64_t>();
    for (const auto& name_json : r.at("rows")) {
      const std::string name = name_json.get<std::string>();
      if (!t.rows.count(name)) t.order.push_back(name);
      for (const auto& [w, h] : canvases)
        t.rows[name].add(r.at("counts").at(name).at(canvas_name(w, h)).get<int64_t>(), expected);
    }
    if (static_cast<int64_t>(i) >= grid_scenes) continue;  // a record from a run with a larger --grid-scenes
    for (const auto& g : r.at("grid")) {
      t.grid.push_back(read_image_rgb((fs::path(output_dir) / "scenes" / g.at("file").get<std::string>()).string()));
      t.labels.push_back(g.at("label").get<std::string>());
    }
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Report: one table (console and JSON from the same rows) and the paired claim.

nlohmann::json report(Tally& t, const SineResizeBenchOptions& o, const std::vector<std::pair<int64_t, int64_t>>& canvases,
                      const std::string& model) {
  const int64_t per_row = o.scenes * static_cast<int64_t>(canvases.size());
  std::string canvas_list;
  for (const auto& [w, h] : canvases) canvas_list += (canvas_list.empty() ? "" : ", ") + canvas_name(w, h);
  nlohmann::json out;
  out["model"] = model;
  out["options"] = {{"scenes", o.scenes},     {"seed", o.seed},           {"whole_steps", o.whole_steps},
                    {"patch_steps", o.patch_steps}, {"lr", o.lr},     {"edit_steps", o.edit_steps},
                    {"scale", o.scale},       {"K", o.K},                 {"v", o.v},
                    {"textured_backgrounds", o.textured_backgrounds}, {"canvases", canvas_list}};
  std::printf("\nobjects vs the source at %s (%lld images per row; rate [95%% Wilson interval])\n",
              canvas_list.c_str(), static_cast<long long>(per_row));
  eval::ReportTable table("model", {"duplicated", "lost", "exact"});
  for (const std::string& name : t.order) {
    const CountRow& r = t.rows[name];
    table.add(name, {eval::ReportTable::rate(rate_of(r.duplicated)), eval::ReportTable::rate(rate_of(r.lost)),
                     eval::ReportTable::rate(rate_of(r.exact))});
  }
  std::cout << table.console(0);
  out["rows"] = table.json()["rows"];
  out["row_order"] = table.json()["order"];
  // The claim: patch + grid duplicates less than whole. Paired on the same (scene, canvas) cases.
  const std::pair<const char*, const char*> claims[] = {
      {"fine-tuned alone, patch (grid)", "fine-tuned alone, whole (no grid)"},
      {"SINE, patch (grid)", "SINE, whole (no grid)"}};
  std::printf("\nduplicated, patch vs whole on the same cases (exact McNemar)\n");
  for (const auto& [a, b] : claims) {
    const eval::McNemar m = eval::mcnemar(t.rows[a].duplicated, t.rows[b].duplicated);
    std::printf("  %s vs %s: only patch %lld, only whole %lld, p = %.4g\n", a, b, static_cast<long long>(m.only_a),
                static_cast<long long>(m.only_b), m.p_value);
    out["claims"].push_back({{"a", a}, {"b", b}, {"outcome", "duplicated"}, {"mcnemar", eval::to_json(m)}});
  }
  // Where patch training stops improving: each judged step count against the next, on the same cases.
  if (o.patch_steps.size() > 1) {
    std::printf("\nduplicated, patch model at each step count vs the next (exact McNemar)\n");
    for (size_t k = 0; k + 1 < o.patch_steps.size(); ++k) {
      const std::string a = patch_row_name(o, o.patch_steps[k]), b = patch_row_name(o, o.patch_steps[k + 1]);
      const eval::McNemar m = eval::mcnemar(t.rows[a].duplicated, t.rows[b].duplicated);
      std::printf("  %lld vs %lld steps: only at %lld %lld, only at %lld %lld, p = %.4g\n",
                  static_cast<long long>(o.patch_steps[k]), static_cast<long long>(o.patch_steps[k + 1]),
                  static_cast<long long>(o.patch_steps[k]), static_cast<long long>(m.only_a),
                  static_cast<long long>(o.patch_steps[k + 1]), static_cast<long long>(m.only_b), m.p_value);
      out["patch_steps_tests"].push_back(
          {{"a", a}, {"b", b}, {"outcome", "duplicated"}, {"mcnemar", eval::to_json(m)}});
    }
  }
  return out;
}

}  // namespace

void SineResizeBenchOptions::validate() const {
  if (scenes < 1) throw Error("scenes: must be at least 1");
  if (whole_steps < 1) throw Error("whole_steps: must be at least 1");
  if (patch_steps.empty()) throw Error("patch_steps: name at least one step count");
  for (size_t i = 0; i < patch_steps.size(); ++i)
    if (patch_steps[i] < 1 || (i > 0 && patch_steps[i] <= patch_steps[i - 1]))
      throw Error("patch_steps: must be positive and increasing (e.g. 300,1000,3000)");
  if (edit_steps < 1) throw Error("edit_steps: must be at least 1");
  if (canvases.empty()) throw Error("canvases: name at least one canvas");
}

nlohmann::json run_sine_resize_bench(const SineResizeBenchOptions& o) {
  o.validate();
  fs::create_directories(fs::path(o.output_dir) / "scenes");
  Pipeline pre = Pipeline::load(o.model);
  Run run{o, pre, canvas_sizes(pre, o)};
  std::cerr << "bench-sine-resize: model " << pre.source() << ", sources " << pre.native_size() << " px, " << o.scenes
            << " scenes\n";
  // Sources as in bench-sine: one or two objects on a plain background (or any v4 background).
  run.sampling = o.textured_backgrounds ? world::with_textured_backgrounds() : world::SceneSampling{};
  run.sampling.max_objects = 2;
  if (!o.textured_backgrounds) run.sampling.p_gradient = run.sampling.p_checkered = 0;
  nlohmann::json canvas_json = nlohmann::json::array();
  for (const auto& [w, h] : run.canvases) canvas_json.push_back({w, h});
  run.key = {{"model", model_key(pre)},  {"seed", o.seed},        {"whole_steps", o.whole_steps},
             {"patch_steps", o.patch_steps}, {"lr", o.lr},       {"edit_steps", o.edit_steps},
             {"scale", o.scale},        {"K", o.K},              {"v", o.v},
             {"canvases", canvas_json}, {"textured", o.textured_backgrounds}};

  std::vector<nlohmann::json> records;
  for (int64_t i = 0; i < o.scenes; ++i) records.push_back(run_scene(run, i));
  Tally t = tally(records, run.canvases, o.output_dir, o.grid_scenes);
  nlohmann::json out = report(t, o, run.canvases, pre.source());
  out["scenes"] = records;
  if (!t.grid.empty()) {
    const int64_t cols = static_cast<int64_t>(t.grid.size()) / std::max<int64_t>(1, std::min<int64_t>(o.scenes, o.grid_scenes));
    const std::string path = (fs::path(o.output_dir) / "resize.png").string();
    write_png(path, make_grid(t.grid, cols, 4, t.labels));
    out["grid"] = path;
  }
  write_json_file((fs::path(o.output_dir) / "results.json").string(), out);
  std::cout << "\nwrote " << o.output_dir << "/results.json, resize.png\n";
  return out;
}

}  // namespace sine
