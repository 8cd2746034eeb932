#include "eval/sine_bench.h"


#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <random>

#include "core/error.h"
#include "core/progress.h"
#include "core/validate.h"
#include "eval/report_table.h"
#include "eval/statistics.h"
#include "io/image.h"
#include "io/json_file.h"
#include "models/lora.h"
#include "methods/sine/sine_edit.h"
#include "world/caption.h"
#include "world/judge.h"
#include "world/render.h"
#include "world/scene.h"
#include "core/device.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---------------------------------------------------------------------------------------------
// Edits of a scene

enum class EditKind { Background, ObjectColor, AddObject, Pattern };
constexpr EditKind kEditKinds[] = {EditKind::Background, EditKind::ObjectColor, EditKind::AddObject, EditKind::Pattern};
const char* edit_name(EditKind k) {
  switch (k) {
    case EditKind::Background: return "background color";
    case EditKind::ObjectColor: return "object color";
    case EditKind::AddObject: return "add an object";
    default: return "change pattern";
  }
}

struct EditCase {
  EditKind kind;
  world::Scene target;
  std::string prompt;
  int new_index = -1;  // AddObject: the added object in target.objects
};


world::Color pick_color(std::mt19937_64& rng, const std::vector<world::Color>& avoid) {
  std::vector<world::Color> ok;
  for (int c = 0; c < world::kColorCount; ++c) {
    bool far = true;
    for (world::Color a : avoid) far = far && world::color_distance(static_cast<world::Color>(c), a) > 30.0f;
    if (far) ok.push_back(static_cast<world::Color>(c));
  }
  if (ok.empty()) throw Error("bench-sine: no distinct color left for an edit");
  return ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng)];
}

bool overlaps(const world::Object& a, const world::Object& b) {
  const float reach = (world::extent_of(a.size) + world::extent_of(b.size)) / 2 + 0.02f;
  return std::abs(a.cx - b.cx) < reach && std::abs(a.cy - b.cy) < reach;
}

std::vector<EditCase> make_edits(const world::Scene& scene, std::mt19937_64& rng) {
  std::vector<EditCase> edits;
  std::vector<world::Color> used{scene.background.color};
  for (const auto& o : scene.objects) used.push_back(o.color);
  for (EditKind kind : kEditKinds) {
    EditCase e{kind, scene, "", -1};
    world::Object& first = e.target.objects.front();
    switch (kind) {
      case EditKind::Background: {
        e.target.background.color = pick_color(rng, used);
        break;
      }
      case EditKind::ObjectColor: {
        first.color = pick_color(rng, used);
        break;
      }
      case EditKind::AddObject: {
        world::Object o;
        std::vector<world::Shape> shapes;
        for (int s = 0; s < world::kShapeCount; ++s) {
          bool taken = false;
          for (const auto& x : scene.objects) taken = taken || static_cast<int>(x.shape) == s;
          if (!taken) shapes.push_back(static_cast<world::Shape>(s));
        }
        o.shape = shapes[std::uniform_int_distribution<size_t>(0, shapes.size() - 1)(rng)];
        o.color = pick_color(rng, used);
        o.size = world::Size::small;
        static constexpr int kCells[] = {0, 8, 2, 6, 1, 7, 3, 5, 4};
        bool placed = false;
        for (int cell : kCells) {
          o.cx = world::kGridCenters[cell % 3];
          o.cy = world::kGridCenters[cell / 3];
          o.grid_cell = cell;
          bool free = true;
          for (const auto& x : scene.objects) free = free && !overlaps(o, x);
          if (free) {
            placed = true;
            break;
          }
        }
        if (!placed) continue;  // no room: this scene gets three edits
        e.target.objects.push_back(o);
        e.new_index = static_cast<int>(e.target.objects.size()) - 1;
        break;
      }
      case EditKind::Pattern: {
        first.pattern = first.pattern == world::Pattern::striped ? world::Pattern::dotted : world::Pattern::striped;
        break;
      }
    }
    e.prompt = world::caption(e.target);
    edits.push_back(std::move(e));
  }
  return edits;
}

struct Score {
  bool success = false, preserved = false;
};

bool object_ok_except(const world::ObjectVerdict& v, const char* skip) {
  if (v.found < 0) return false;
  const std::string s = skip ? skip : "";
  return (s == "color" || v.color_ok) && (s == "pattern" || v.pattern_ok) && v.shape_ok && v.size_ok && v.position_ok;
}

Score score(const EditCase& e, const world::Verdict& v) {
  Score s;
  const auto& objs = v.objects;
  auto others_ok = [&](size_t from, size_t to) {
    bool ok = true;
    for (size_t i = from; i < to && i < objs.size(); ++i) ok = ok && objs[i].ok();
    return ok;
  };
  switch (e.kind) {
    case EditKind::Background:
      s.success = v.background_color_ok;
      s.preserved = v.count_ok && others_ok(0, objs.size());
      break;
    case EditKind::ObjectColor:
      s.success = objs[0].found >= 0 && objs[0].color_ok;
      s.preserved = v.background_color_ok && v.count_ok && object_ok_except(objs[0], "color") && others_ok(1, objs.size());
      break;
    case EditKind::Pattern:
      s.success = objs[0].found >= 0 && objs[0].pattern_ok;
      s.preserved =
          v.background_color_ok && v.count_ok && object_ok_except(objs[0], "pattern") && others_ok(1, objs.size());
      break;
    case EditKind::AddObject: {
      const auto& n = objs[e.new_index];
      s.success = v.count_ok && n.found >= 0 && n.color_ok && n.shape_ok;
      s.preserved = v.background_color_ok && others_ok(0, static_cast<size_t>(e.new_index));
      break;
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Run: one scene -> its fine-tunes, every method's judged edits, the sweeps and the 2x sizes.

// The compared methods, in table order, with the fine-tune and the mode each edits with.
enum class Tune { Whole, Patch, LoRA, None };
struct Method {
  std::string name;
  Tune tune;
  SineEditMode mode;
  const char* label;  // in the grid
};
std::vector<Method> bench_methods(bool lora) {
  std::vector<Method> m{{"SINE (whole)", Tune::Whole, SineEditMode::Sine, "SINE whole"},
                        {"SINE (patch)", Tune::Patch, SineEditMode::Sine, "SINE patch"},
                        {"no guidance (whole)", Tune::Whole, SineEditMode::NoGuidance, "no-guid whole"},
                        {"no guidance (patch)", Tune::Patch, SineEditMode::NoGuidance, "no-guid patch"},
                        {"pre-trained alone", Tune::None, SineEditMode::Pretrained, "pre-trained"}};
  if (lora) {
    m.push_back({"SINE (LoRA whole)", Tune::LoRA, SineEditMode::Sine, "SINE LoRA"});
    m.push_back({"no guidance (LoRA whole)", Tune::LoRA, SineEditMode::NoGuidance, "no-guid LoRA"});
  }
  return m;
}

struct EditResult {
  EditKind kind;
  std::string prompt;
  std::vector<Score> methods;           // bench_methods order
  std::vector<Score> k_sweep, v_sweep;  // options' order; empty where the sweeps did not run
  std::vector<torch::Tensor> row;       // source, target, one image per method
};

struct ResizeResult {
  std::string row;  // "patch (grid), SINE", ...
  int64_t found = 0, expected = 0;
};

struct SceneResult {
  std::string caption;
  std::vector<EditResult> edits;
  std::vector<ResizeResult> resize;
  std::vector<std::pair<torch::Tensor, std::string>> resize_images;  // fine-tuned alone, for resize.png
  double whole_seconds_per_step = 0, patch_seconds_per_step = 0, lora_seconds_per_step = 0;
};

SceneResult run_scene(Pipeline& pre, const SineBenchOptions& o, int64_t i) {
  const int64_t size = pre.native_size();
  world::SceneSampling sampling;
  sampling.max_objects = 2;
  sampling.p_gradient = 0;
  sampling.p_checkered = 0;
  sampling.p_striped = 0;
  sampling.p_dotted = 0;
  std::mt19937_64 rng(o.seed + static_cast<uint64_t>(i));
  const world::Scene scene = world::sample_scene(rng, sampling);
  SceneResult r;
  r.caption = world::caption(scene);
  const torch::Tensor image = world::render_scene(scene, size, size);
  const std::vector<EditCase> edits = make_edits(scene, rng);
  std::cerr << "== scene " << i + 1 << "/" << o.scenes << ": " << r.caption << "\n";

  // Fine-tune the base whole image (no grid: the ablation), patch mode (grid) and, with a rank,
  // ★ LoRA (whole image; the adapters stay attached to its model after the finetuner is gone).
  auto finetune = [&](SineMode mode, int64_t steps, double& seconds_per_step, int64_t lora_rank = 0) {
    auto pipe = std::make_unique<Pipeline>(Pipeline::load(o.model));
    SineFinetuneConfig c;
    c.class_word = "picture";
    c.mode = mode;
    c.steps = steps;
    c.lr = lora_rank > 0 ? o.lora_lr : o.lr;
    c.lora_rank = lora_rank;
    c.seed = 23 + static_cast<uint64_t>(i);
    SineFinetuner ft(*pipe, image, c);
    auto t0 = Clock::now();
    ft.train();
    seconds_per_step = seconds_since(t0) / static_cast<double>(steps);
    std::optional<PositionalGrid> grid;
    if (ft.grid()) grid.emplace(*ft.grid());
    return std::make_pair(std::move(pipe), std::move(grid));
  };
  auto [whole_pipe, no_grid] = finetune(SineMode::Whole, o.whole_steps, r.whole_seconds_per_step);
  auto [patch_pipe, grid] = finetune(SineMode::Patch, o.patch_steps, r.patch_seconds_per_step);
  std::unique_ptr<Pipeline> lora_pipe;
  if (o.lora_rank > 0) lora_pipe = finetune(SineMode::Whole, o.whole_steps, r.lora_seconds_per_step, o.lora_rank).first;
  const std::string desc = sine_training_prompt("photo of a sks {class}", "picture");
  const double beta = sine_beta(o.v);
  SineBranch whole_branch{whole_pipe.get(), nullptr, desc, beta, o.K};
  SineBranch patch_branch{patch_pipe.get(), &*grid, desc, beta, o.K};
  SineBranch lora_branch{lora_pipe.get(), nullptr, desc, beta, o.K};
  auto branches_of = [&](Tune t) -> std::vector<SineBranch> {
    switch (t) {
      case Tune::Whole: return {whole_branch};
      case Tune::Patch: return {patch_branch};
      case Tune::LoRA: return {lora_branch};
      default: return {};
    }
  };

  const std::vector<Method> methods = bench_methods(o.lora_rank > 0);
  const bool sweep_here = o.sweeps && (o.sweep_scenes < 0 || i < o.sweep_scenes);
  const int64_t evals_per_edit = static_cast<int64_t>(methods.size()) +
                                 (sweep_here ? static_cast<int64_t>(o.k_sweep.size() + o.v_sweep.size()) : 0);
  ProgressBar bar("scene " + std::to_string(i + 1) + " edits", static_cast<int64_t>(edits.size()) * evals_per_edit);
  int64_t done = 0;
  for (size_t e = 0; e < edits.size(); ++e) {
    const EditCase& ec = edits[e];
    SineEditConfig c;
    c.edit_prompt = ec.prompt;
    c.steps = o.edit_steps;
    c.scale = o.scale;
    c.seed = 1000 * static_cast<uint64_t>(i) + e;
    auto run = [&](const std::vector<SineBranch>& branches, SineEditMode mode) {
      c.mode = mode;
      torch::Tensor img = sine_edit(pre, branches, c);
      world::JudgeResult jr = world::judge(img, &ec.target);
      bar.update(++done);
      return std::make_pair(img, score(ec, *jr.verdict));
    };
    EditResult er{ec.kind, ec.prompt, {}, {}, {}, {image, world::render_scene(ec.target, size, size)}};
    for (const Method& m : methods) {
      auto [img, sc] = run(branches_of(m.tune), m.mode);
      er.methods.push_back(sc);
      er.row.push_back(img);
    }
    if (sweep_here) {
      for (int64_t k : o.k_sweep) {
        SineBranch b = whole_branch;
        b.K = k;
        er.k_sweep.push_back(run({b}, SineEditMode::Sine).second);
      }
      for (double v : o.v_sweep) {
        SineBranch b = whole_branch;
        b.beta = sine_beta(v);
        er.v_sweep.push_back(run({b}, SineEditMode::Sine).second);
      }
    }
    if (i >= o.grid_scenes) er.row.clear();  // only the grid's scenes keep their images
    r.edits.push_back(std::move(er));
  }
  bar.finish();

  // 2x width and 2x height: the fine-tuned model alone with its training prompt, and SINE
  // asked for the source caption; count objects against the source.
  if (o.resize_test) {
    const std::vector<std::pair<int64_t, int64_t>> sizes{{size, 2 * size}, {2 * size, size}};
    for (const auto& [h, w] : sizes) {
      for (const auto& [name, branch] :
           std::vector<std::pair<std::string, SineBranch>>{{"patch (grid)", patch_branch}, {"whole (no grid)", whole_branch}}) {
        for (SineEditMode mode : {SineEditMode::NoGuidance, SineEditMode::Sine}) {
          SineEditConfig c;
          c.edit_prompt = mode == SineEditMode::NoGuidance ? desc : r.caption;
          c.steps = o.edit_steps;
          c.scale = o.scale;
          c.seed = 7000 + static_cast<uint64_t>(i);
          c.width = w;
          c.height = h;
          c.mode = mode;
          torch::Tensor img = sine_edit(pre, {branch}, c);
          ResizeResult rr{name + (mode == SineEditMode::Sine ? ", SINE" : ", fine-tuned alone"),
                          static_cast<int64_t>(world::judge(img).found.size()),
                          static_cast<int64_t>(scene.objects.size())};
          if (mode == SineEditMode::NoGuidance && i < o.grid_scenes)
            r.resize_images.emplace_back(img, name + " " + std::to_string(w) + "x" + std::to_string(h) + ": " +
                                                  std::to_string(rr.found) + "/" + std::to_string(rr.expected));
          r.resize.push_back(std::move(rr));
        }
      }
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Tally: the scenes -> counts per method, edit kind, sweep value and 2x-size row.

struct Tally {
  int64_t n = 0, success = 0, preserved = 0, both = 0;
  std::vector<bool> both_cases;  // per edit, in edit order: the paired tests compare methods on these
  void add(const Score& s) {
    ++n;
    success += s.success;
    preserved += s.preserved;
    both += s.success && s.preserved;
    both_cases.push_back(s.success && s.preserved);
  }
};

struct ResizeTally {
  int64_t n = 0, duplicated = 0, lost = 0, exact = 0;
};  // (bench-sine-resize has the full study with intervals and paired tests)

struct BenchTally {
  std::vector<Method> methods;
  std::map<std::string, Tally> by_method;
  std::map<std::string, std::map<std::string, Tally>> by_method_kind;
  std::map<int64_t, Tally> k_sweep;
  std::map<double, Tally> v_sweep;
  std::map<std::string, ResizeTally> resize;
  double whole_seconds_per_step = 0, patch_seconds_per_step = 0, lora_seconds_per_step = 0;  // mean over scenes
  nlohmann::json per_scene = nlohmann::json::array();
};

BenchTally tally(const std::vector<SceneResult>& scenes, const SineBenchOptions& o) {
  BenchTally t;
  t.methods = bench_methods(o.lora_rank > 0);
  for (const SceneResult& sr : scenes) {
    nlohmann::json scene_json{{"caption", sr.caption}, {"edits", nlohmann::json::array()}};
    for (const EditResult& er : sr.edits) {
      nlohmann::json edit_json{{"kind", edit_name(er.kind)}, {"prompt", er.prompt}, {"results", nlohmann::json::object()}};
      for (size_t m = 0; m < t.methods.size(); ++m) {
        const std::string& name = t.methods[m].name;
        t.by_method[name].add(er.methods[m]);
        t.by_method_kind[name][edit_name(er.kind)].add(er.methods[m]);
        edit_json["results"][name] = {{"success", er.methods[m].success}, {"preserved", er.methods[m].preserved}};
      }
      for (size_t k = 0; k < er.k_sweep.size(); ++k) t.k_sweep[o.k_sweep[k]].add(er.k_sweep[k]);
      for (size_t k = 0; k < er.v_sweep.size(); ++k) t.v_sweep[o.v_sweep[k]].add(er.v_sweep[k]);
      scene_json["edits"].push_back(edit_json);
    }
    for (const ResizeResult& rr : sr.resize) {
      ResizeTally& rt = t.resize[rr.row];
      ++rt.n;
      rt.duplicated += rr.found > rr.expected;
      rt.lost += rr.found < rr.expected;
      rt.exact += rr.found == rr.expected;
    }
    t.whole_seconds_per_step += sr.whole_seconds_per_step / static_cast<double>(scenes.size());
    t.patch_seconds_per_step += sr.patch_seconds_per_step / static_cast<double>(scenes.size());
    t.lora_seconds_per_step += sr.lora_seconds_per_step / static_cast<double>(scenes.size());
    t.per_scene.push_back(scene_json);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Report: every table is one ReportTable, printed and written from the same rows.

using eval::ReportTable;

ReportTable score_table(const std::string& first, const std::vector<std::pair<std::string, const Tally*>>& rows) {
  ReportTable table(first, {"edits", "success", "preservation", "both"});
  for (const auto& [name, t] : rows)
    table.add(name, {ReportTable::count(t->n), ReportTable::rate(eval::wilson(t->success, t->n)),
                     ReportTable::rate(eval::wilson(t->preserved, t->n)), ReportTable::rate(eval::wilson(t->both, t->n))});
  return table;
}

nlohmann::json report(BenchTally& t, const std::vector<SineStepTiming>& timings, const SineBenchOptions& o,
                      const std::string& model, int64_t size) {
  nlohmann::json out;
  out["model"] = model;
  out["options"] = {{"scenes", o.scenes}, {"seed", o.seed}, {"whole_steps", o.whole_steps},
                    {"patch_steps", o.patch_steps}, {"lr", o.lr}, {"edit_steps", o.edit_steps},
                    {"scale", o.scale}, {"K", o.K}, {"v", o.v}, {"lora_rank", o.lora_rank},
                    {"lora_lr", o.lora_lr}};
  std::cout << "\nSINE on the shapes world: " << o.scenes << " scenes, fine-tune " << o.whole_steps << " (whole) / "
            << o.patch_steps << " (patch) steps at lr " << o.lr << ", edits " << o.edit_steps << " DDIM steps, s "
            << o.scale << ", K " << o.K << ", v " << o.v << "\n\n";

  std::vector<std::pair<std::string, const Tally*>> rows;
  for (const Method& m : t.methods) rows.emplace_back(m.name, &t.by_method[m.name]);
  ReportTable methods = score_table("method", rows);
  std::cout << "edit success / preservation / both, judged from pixels (rates [95% Wilson])\n" << methods.console();
  out["methods"] = methods.json();

  ReportTable kinds("method", [] {
    std::vector<std::string> c;
    for (EditKind k : kEditKinds) c.push_back(edit_name(k));
    return c;
  }());
  for (const Method& m : t.methods) {
    std::vector<ReportTable::Cell> cells;
    for (EditKind k : kEditKinds) {
      const Tally& kt = t.by_method_kind[m.name][edit_name(k)];
      cells.push_back({fixed(kt.n ? static_cast<double>(kt.success) / kt.n : 0.0, 3) + " / " +
                           fixed(kt.n ? static_cast<double>(kt.preserved) / kt.n : 0.0, 3),
                       {{"success", eval::to_json(eval::wilson(kt.success, kt.n))},
                        {"preservation", eval::to_json(eval::wilson(kt.preserved, kt.n))}}});
    }
    kinds.add(m.name, cells);
  }
  std::cout << "\nsuccess / preservation by edit kind\n" << kinds.console();
  out["methods_by_edit"] = kinds.json();

  // The paper's claim: model-based guidance beats either model alone on edit + preservation, case by
  // case on the same edits (exact McNemar) -- the intervals above are per row.
  std::cout << "\nSINE vs each model alone on edit + preservation (exact McNemar on the same edits)\n";
  const std::pair<const char*, const char*> claims[] = {{"SINE (whole)", "no guidance (whole)"},
                                                         {"SINE (whole)", "pre-trained alone"},
                                                         {"SINE (patch)", "no guidance (patch)"},
                                                         {"SINE (patch)", "pre-trained alone"}};
  for (const auto& [a, b] : claims) {
    const eval::McNemar m = eval::mcnemar(t.by_method[a].both_cases, t.by_method[b].both_cases);
    std::printf("  %s vs %s: only %s %lld, only %s %lld, p = %.4g\n", a, b, a, static_cast<long long>(m.only_a), b,
                static_cast<long long>(m.only_b), m.p_value);
    out["claims"].push_back({{"a", a}, {"b", b}, {"outcome", "both"}, {"mcnemar", eval::to_json(m)}});
  }

  if (o.resize_test) {
    ReportTable resize("model", {"images", "duplicated", "lost", "exact"});
    for (const auto& [name, rt] : t.resize)
      resize.add(name, {ReportTable::count(rt.n), ReportTable::rate(eval::wilson(rt.duplicated, rt.n)),
                        ReportTable::rate(eval::wilson(rt.lost, rt.n)), ReportTable::rate(eval::wilson(rt.exact, rt.n))});
    std::cout << "\nobjects at 2x width and 2x height vs the source\n" << resize.console();
    out["resize"] = resize.json();
  }
  if (o.sweeps) {
    std::vector<std::pair<std::string, const Tally*>> k_rows, v_rows;
    for (const auto& [k, kt] : t.k_sweep) k_rows.emplace_back(std::to_string(k), &kt);
    for (const auto& [v, vt] : t.v_sweep) v_rows.emplace_back(shortest(v), &vt);
    ReportTable k_table = score_table("K", k_rows), v_table = score_table("v", v_rows);
    std::cout << "\nK sweep (SINE whole, v " << o.v << "): guidance while t >= K\n" << k_table.console();
    std::cout << "\nv sweep (SINE whole, K " << o.K << "): weight of the pre-trained edit prompt\n" << v_table.console();
    out["k_sweep"] = k_table.json();
    out["v_sweep"] = v_table.json();
  }

  ReportTable timing("variant", {"s/step", "trainable", "state GB", "peak RSS GB"});
  auto blank = ReportTable::text("");
  timing.add("full, whole (bench runs)", {ReportTable::number(t.whole_seconds_per_step, 4), blank, blank, blank});
  timing.add("full, patch (bench runs)", {ReportTable::number(t.patch_seconds_per_step, 4), blank, blank, blank});
  if (o.lora_rank > 0)
    timing.add("LoRA r" + std::to_string(o.lora_rank) + ", whole (bench runs)",
               {ReportTable::number(t.lora_seconds_per_step, 4), blank, blank, blank});
  for (const auto& st : timings)
    timing.add(st.label, {ReportTable::number(st.seconds_per_step, 4), ReportTable::count(st.trainable),
                          ReportTable::number(st.state_gb, 4), ReportTable::number(st.peak_memory_gb, 3)});
  std::cout << "\nfine-tuning on this machine (" << size << " px, batch 1)\n" << timing.console()
            << "(state = trainable weights + grads + AdamW moments in fp32; peak RSS is the process's so far)\n";
  out["finetune_timing"] = timing.json();
  out["finetune_seconds_per_step"] = {{"whole", t.whole_seconds_per_step}, {"patch", t.patch_seconds_per_step}};
  if (o.lora_rank > 0) out["finetune_seconds_per_step"]["lora_whole"] = t.lora_seconds_per_step;
  out["scenes"] = t.per_scene;
  return out;
}

}  // namespace

SineStepTiming time_sine_finetune(Pipeline& pipeline, SineMode mode, int64_t lora_rank, bool checkpointing,
                                  int64_t steps, double lr, torch::ScalarType optimizer_state) {
  [[maybe_unused]] const torch::Device device = pipeline.device();
  const int64_t size = pipeline.native_size();
  torch::manual_seed(0);
  auto image = torch::randint(0, 256, {size, size, 3}, torch::kUInt8);
  SineFinetuneConfig c;
  c.class_word = "thing";
  c.mode = mode;
  c.steps = steps + 2;
  c.lr = lr;
  c.lora_rank = lora_rank;
  c.gradient_checkpointing = checkpointing;
  c.optimizer_state = optimizer_state;
  SineFinetuner ft(pipeline, image, c);
  SineStepTiming r;
  r.label = std::string(lora_rank > 0 ? "LoRA r" + std::to_string(lora_rank) : "full") + ", " + sine_mode_name(mode) +
            (checkpointing ? ", grad ckpt" : "") + (optimizer_state == torch::kBFloat16 ? ", bf16 state" : "");
  int64_t bytes = ft.trainer().optimizer_bytes();
  for (const auto& [name, p] : ft.trained_parameters()) {
    r.trainable += p.numel();
    bytes += 2 * p.numel() * static_cast<int64_t>(p.element_size());  // the weight and its gradient
  }
  r.state_gb = static_cast<double>(bytes) / 1e9;
  const bool was = progress_enabled();
  set_progress_enabled(false);
  ft.train(2);  // warm-up (allocations, AdamW state)
  reset_peak_memory(device);
  auto start = Clock::now();
  ft.train();
  synchronize(device);
  r.seconds_per_step = seconds_since(start) / static_cast<double>(steps);
  set_progress_enabled(was);
  r.peak_memory_gb = peak_memory_bytes(device) / 1e9;
  return r;
}

nlohmann::json run_sine_bench(const SineBenchOptions& o) {
  if (o.scenes < 1) throw Error("scenes: must be at least 1");
  if (o.whole_steps < 1) throw Error("whole_steps: must be at least 1");
  if (o.patch_steps < 1) throw Error("patch_steps: must be at least 1");
  if (o.edit_steps < 1) throw Error("edit_steps: must be at least 1");
  if (o.lora_rank < 0) throw Error("lora_rank: must be 0 (no LoRA variant) or positive");
  if (o.lora_rank > 0 && !(o.lora_lr > 0)) throw Error("lora_lr: must be positive");
  fs::create_directories(o.output_dir);
  const auto bench_start = Clock::now();

  Pipeline pre = Pipeline::load(o.model);
  const int64_t size = pre.native_size();
  std::cerr << "bench-sine: model " << pre.source() << ", " << size << " px, " << o.scenes << " scenes\n";
  std::vector<SceneResult> scenes;
  for (int64_t i = 0; i < o.scenes; ++i) scenes.push_back(run_scene(pre, o, i));

  // Fine-tuning step time and memory: full vs LoRA (on the base model, random image).
  std::vector<SineStepTiming> timings;
  if (o.timing_steps > 0) {
    std::vector<std::pair<SineMode, int64_t>> variants;
    if (o.lora_rank > 0) variants.push_back({SineMode::Whole, o.lora_rank});  // first: its RSS peak is its own
    variants.push_back({SineMode::Whole, 0});
    variants.push_back({SineMode::Patch, 0});
    for (const auto& [mode, rank] : variants) {
      Pipeline p = Pipeline::load(o.model);
      timings.push_back(time_sine_finetune(p, mode, rank, false, o.timing_steps, o.lr));
    }
  }

  BenchTally t = tally(scenes, o);
  nlohmann::json out = report(t, timings, o, pre.source(), size);
  out["seconds"] = seconds_since(bench_start);

  std::vector<torch::Tensor> grid_images, wide_images;
  std::vector<std::string> grid_labels, wide_labels;
  for (int64_t i = 0; i < std::min<int64_t>(o.grid_scenes, o.scenes); ++i) {
    for (const EditResult& er : scenes[i].edits)
      for (size_t k = 0; k < er.row.size(); ++k) {
        grid_images.push_back(er.row[k]);
        grid_labels.push_back(k == 0 ? "source" : k == 1 ? edit_name(er.kind) : t.methods[k - 2].label);
      }
    for (const auto& [img, label] : scenes[i].resize_images) {
      wide_images.push_back(img);
      wide_labels.push_back(label);
    }
  }
  if (!grid_images.empty()) {
    const std::string path = (fs::path(o.output_dir) / "grid.png").string();
    write_png(path, make_grid(grid_images, 2 + static_cast<int64_t>(t.methods.size()), 4, grid_labels));
    out["grid"] = path;
  }
  if (!wide_images.empty()) {
    const std::string path = (fs::path(o.output_dir) / "resize.png").string();
    write_png(path, make_grid(wide_images, 4, 4, wide_labels));
    out["resize_grid"] = path;
  }
  write_json_file((fs::path(o.output_dir) / "results.json").string(), out);
  std::cout << "\nwrote " << o.output_dir << "/results.json, grid.png, resize.png (" << fixed(out["seconds"].get<double>(), 0)
            << " s)\n";
  return out;
}

}  // namespace sine
