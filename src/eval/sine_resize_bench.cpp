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

}  // namespace

nlohmann::json run_sine_resize_bench(const SineResizeBenchOptions& o) {
  if (o.scenes < 1) throw Error("scenes: must be at least 1");
  if (o.whole_steps < 1) throw Error("whole_steps: must be at least 1");
  if (o.patch_steps.empty()) throw Error("patch_steps: name at least one step count");
  for (size_t i = 0; i < o.patch_steps.size(); ++i)
    if (o.patch_steps[i] < 1 || (i > 0 && o.patch_steps[i] <= o.patch_steps[i - 1]))
      throw Error("patch_steps: must be positive and increasing (e.g. 300,1000,3000)");
  if (o.edit_steps < 1) throw Error("edit_steps: must be at least 1");
  if (o.canvases.empty()) throw Error("canvases: name at least one canvas");
  fs::create_directories(fs::path(o.output_dir) / "scenes");

  Pipeline pre = Pipeline::load(o.model);
  const int64_t size = pre.native_size(), factor = pre.vae_factor();
  std::vector<std::pair<int64_t, int64_t>> canvases;  // (width, height)
  for (const auto& [fw, fh] : o.canvases) {
    auto side = [&](double f) { return std::max<int64_t>(factor, std::llround(f * size / factor) * factor); };
    if (!(fw > 0 && fh > 0 && fw <= 8 && fh <= 8)) throw Error("canvases: factors must be in (0, 8]");
    canvases.emplace_back(side(fw), side(fh));
  }
  std::cerr << "bench-sine-resize: model " << pre.source() << ", sources " << size << " px, " << o.scenes
            << " scenes\n";

  // Sources as in bench-sine: one or two objects on a plain background (or any v4 background).
  world::SceneSampling sampling = o.textured_backgrounds ? world::with_textured_backgrounds() : world::SceneSampling{};
  sampling.max_objects = 2;
  if (!o.textured_backgrounds) sampling.p_gradient = sampling.p_checkered = 0;

  const std::string desc = sine_training_prompt("photo of a sks {class}", "picture");
  // What a finished scene's record must match to be reused (the scene count may grow).
  nlohmann::json canvas_json = nlohmann::json::array();
  for (const auto& [w, h] : canvases) canvas_json.push_back({w, h});
  const nlohmann::json run_key{{"model", pre.source()},  {"seed", o.seed},        {"whole_steps", o.whole_steps},
                               {"patch_steps", o.patch_steps}, {"lr", o.lr},       {"edit_steps", o.edit_steps},
                               {"scale", o.scale},        {"K", o.K},              {"v", o.v},
                               {"canvases", canvas_json}, {"textured", o.textured_backgrounds}};
  const int64_t last_patch = o.patch_steps.back();
  std::map<std::string, CountRow> rows;
  std::vector<std::string> row_order;
  auto row = [&](const std::string& name) -> CountRow& {
    if (!rows.count(name)) row_order.push_back(name);
    return rows[name];
  };
  std::vector<torch::Tensor> grid;
  std::vector<std::string> labels;
  nlohmann::json per_scene = nlohmann::json::array();

  for (int64_t i = 0; i < o.scenes; ++i) {
    std::mt19937_64 rng(o.seed + static_cast<uint64_t>(i));
    const world::Scene scene = world::sample_scene(rng, sampling);
    const std::string caption = world::caption(scene);
    const torch::Tensor image = world::render_scene(scene, size, size);
    const int64_t expected = static_cast<int64_t>(scene.objects.size());
    nlohmann::json scene_json{{"key", run_key}, {"caption", caption}, {"expected", expected},
                              {"counts", nlohmann::json::object()}, {"rows", nlohmann::json::array()},
                              {"grid", nlohmann::json::array()}};
    // A scene finished by an earlier run with the same options is read back, not recomputed: the
    // bench can be stopped at any time and rerun to go on (it takes hours on a CPU).
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
      if (done.is_object() && done.value("key", nlohmann::json()) == run_key && done.value("caption", "") == caption) {
        std::cerr << "== scene " << i + 1 << "/" << o.scenes << ": " << caption << " (from " << record.string()
                  << ")\n";
        for (const auto& name : done.at("rows")) {
          for (const auto& [w, h] : canvases)
            row(name.get<std::string>()).add(done.at("counts").at(name.get<std::string>()).at(canvas_name(w, h)).get<int64_t>(),
                                             expected);
        }
        for (const auto& g : done.at("grid")) {
          grid.push_back(read_image_rgb((record.parent_path() / g.at("file").get<std::string>()).string()));
          labels.push_back(g.at("label").get<std::string>());
        }
        per_scene.push_back(done);
        continue;
      }
    }
    std::cerr << "== scene " << i + 1 << "/" << o.scenes << ": " << caption << "\n";

    // Generates at every canvas with the given branch and mode; records the counts in `name`.
    auto judge_row = [&](const std::string& name, const SineBranch* branch, SineEditMode mode) {
      for (size_t k = 0; k < canvases.size(); ++k) {
        const auto [w, h] = canvases[k];
        SineEditConfig c;
        c.edit_prompt = mode == SineEditMode::NoGuidance ? desc : caption;
        c.steps = o.edit_steps;
        c.scale = o.scale;
        c.seed = 7000 + static_cast<uint64_t>(i) * 16 + k;
        c.width = w;
        c.height = h;
        c.mode = mode;
        const torch::Tensor img =
            branch ? sine_edit(pre, {*branch}, c) : sine_edit(pre, std::vector<SineBranch>{}, c);
        const int64_t found = static_cast<int64_t>(world::judge(img).found.size());
        row(name).add(found, expected);
        if (k == 0) scene_json["rows"].push_back(name);
        scene_json["counts"][name][canvas_name(w, h)] = found;
        if (i < o.grid_scenes && k == 0) {
          grid.push_back(img);
          labels.push_back(name + ": " + std::to_string(found) + "/" + std::to_string(expected));
          const std::string file = std::string(stem) + "_" + std::to_string(scene_json["grid"].size()) + ".png";
          write_png((fs::path(o.output_dir) / "scenes" / file).string(), img);
          scene_json["grid"].push_back({{"file", file}, {"label", labels.back()}});
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
      SineBranch b{&whole, nullptr, desc, sine_beta(o.v), o.K};
      judge_row("fine-tuned alone, whole (no grid)", &b, SineEditMode::NoGuidance);
      judge_row("SINE, whole (no grid)", &b, SineEditMode::Sine);
    }
    {
      Pipeline patch = Pipeline::load(o.model);
      SineFinetuner ft(patch, image, finetune_config(SineMode::Patch, last_patch));
      for (int64_t steps : o.patch_steps) {
        ft.train(steps);
        SineBranch b{&patch, ft.grid(), desc, sine_beta(o.v), o.K};
        const std::string at = steps == last_patch ? "" : " @" + std::to_string(steps);
        judge_row("fine-tuned alone, patch (grid)" + at, &b, SineEditMode::NoGuidance);
        if (steps == last_patch) judge_row("SINE, patch (grid)", &b, SineEditMode::Sine);
      }
    }
    judge_row("pre-trained alone", nullptr, SineEditMode::Pretrained);
    write_json_file(record.string(), scene_json);
    per_scene.push_back(scene_json);
  }

  // ---- report
  const int64_t per_row = o.scenes * static_cast<int64_t>(canvases.size());
  std::string canvas_list;
  for (const auto& [w, h] : canvases) canvas_list += (canvas_list.empty() ? "" : ", ") + canvas_name(w, h);
  nlohmann::json out;
  out["model"] = pre.source();
  out["options"] = {{"scenes", o.scenes},     {"seed", o.seed},           {"whole_steps", o.whole_steps},
                    {"patch_steps", o.patch_steps}, {"lr", o.lr},     {"edit_steps", o.edit_steps},
                    {"scale", o.scale},       {"K", o.K},                 {"v", o.v},
                    {"textured_backgrounds", o.textured_backgrounds}, {"canvases", canvas_list}};
  std::printf("\nobjects vs the source at %s (%lld images per row; rate [95%% Wilson interval])\n",
              canvas_list.c_str(), static_cast<long long>(per_row));
  eval::ReportTable table("model", {"duplicated", "lost", "exact"});
  for (const std::string& name : row_order) {
    const CountRow& r = rows[name];
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
    const eval::McNemar t = eval::mcnemar(rows[a].duplicated, rows[b].duplicated);
    std::printf("  %s vs %s: only patch %lld, only whole %lld, p = %.4g\n", a, b, static_cast<long long>(t.only_a),
                static_cast<long long>(t.only_b), t.p_value);
    out["claims"].push_back({{"a", a}, {"b", b}, {"outcome", "duplicated"}, {"mcnemar", eval::to_json(t)}});
  }
  out["scenes"] = per_scene;
  if (!grid.empty()) {
    const int64_t cols = static_cast<int64_t>(grid.size()) / std::min<int64_t>(o.scenes, o.grid_scenes);
    const std::string path = (fs::path(o.output_dir) / "resize.png").string();
    write_png(path, make_grid(grid, cols, 4, labels));
    out["grid"] = path;
  }
  write_json_file((fs::path(o.output_dir) / "results.json").string(), out);
  std::cout << "\nwrote " << o.output_dir << "/results.json, resize.png\n";
  return out;
}

}  // namespace sine
