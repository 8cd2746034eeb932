#include "eval/sine_bench.h"


#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>

#include "core/error.h"
#include "core/progress.h"
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
  nlohmann::json json() const {
    auto frac = [&](int64_t k) { return n ? static_cast<double>(k) / static_cast<double>(n) : 0.0; };
    return {{"n", n},
            {"success", frac(success)},
            {"preservation", frac(preserved)},
            {"both", frac(both)},
            {"intervals",
             {{"success", eval::to_json(eval::wilson(success, n))},
              {"preservation", eval::to_json(eval::wilson(preserved, n))},
              {"both", eval::to_json(eval::wilson(both, n))}}}};
  }
};

std::string pct(int64_t k, int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%5.1f%%", n ? 100.0 * static_cast<double>(k) / static_cast<double>(n) : 0.0);
  return buf;
}

std::string fmt(double v, const char* f = "%g") {
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}


}  // namespace

SineStepTiming time_sine_finetune(Pipeline& pipeline, SineMode mode, int64_t lora_rank, bool checkpointing,
                                  int64_t steps, double lr) {
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
  SineFinetuner ft(pipeline, image, c);
  SineStepTiming r;
  r.label = std::string(lora_rank > 0 ? "LoRA r" + std::to_string(lora_rank) : "full") + ", " + sine_mode_name(mode) +
            (checkpointing ? ", grad ckpt" : "");
  for (const auto& [name, p] : ft.trained_parameters()) r.trainable += p.numel();
  r.state_gb = static_cast<double>(r.trainable) * 4.0 * 4.0 / 1e9;
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
  if (o.scenes < 1) throw Error("--scenes must be at least 1");
  if (o.whole_steps < 1 || o.patch_steps < 1) throw Error("--whole-steps/--patch-steps must be at least 1");
  if (o.edit_steps < 1) throw Error("--edit-steps must be at least 1");
  if (o.lora_rank < 0) throw Error("--lora-rank must be 0 (no LoRA variant) or positive");
  if (o.lora_rank > 0 && !(o.lora_lr > 0)) throw Error("--lora-lr must be positive");
  fs::create_directories(o.output_dir);
  const auto bench_start = Clock::now();

  Pipeline pre = Pipeline::load(o.model);
  const int64_t size = pre.native_size();
  std::cerr << "bench-sine: model " << pre.source() << ", " << size << " px, " << o.scenes << " scenes\n";

  world::SceneSampling sampling;
  sampling.max_objects = 2;
  sampling.p_gradient = 0;
  sampling.p_checkered = 0;
  sampling.p_striped = 0;
  sampling.p_dotted = 0;

  const bool lora_variant = o.lora_rank > 0;
  std::vector<std::string> methods{"SINE (whole)", "SINE (patch)", "no guidance (whole)", "no guidance (patch)",
                                   "pre-trained alone"};
  if (lora_variant) {
    methods.push_back("SINE (LoRA whole)");
    methods.push_back("no guidance (LoRA whole)");
  }
  std::map<std::string, Tally> by_method;
  std::map<std::string, std::map<std::string, Tally>> by_method_kind;
  std::map<int64_t, Tally> k_tally;
  std::map<double, Tally> v_tally;
  struct ResizeTally {
    int64_t n = 0, duplicated = 0, lost = 0, exact = 0;
  };  // (bench-sine-resize has the full study with intervals and paired tests)
  std::map<std::string, ResizeTally> resize;
  double whole_time = 0, patch_time = 0, lora_time = 0;
  nlohmann::json per_scene = nlohmann::json::array();
  std::vector<torch::Tensor> grid_images;
  std::vector<std::string> grid_labels;
  std::vector<torch::Tensor> wide_images;
  std::vector<std::string> wide_labels;

  for (int64_t i = 0; i < o.scenes; ++i) {
    std::mt19937_64 rng(o.seed + static_cast<uint64_t>(i));
    const world::Scene scene = world::sample_scene(rng, sampling);
    const std::string caption = world::caption(scene);
    const torch::Tensor image = world::render_scene(scene, size, size);
    const std::vector<EditCase> edits = make_edits(scene, rng);
    std::cerr << "== scene " << i + 1 << "/" << o.scenes << ": " << caption << "\n";

    // Fine-tune the base twice: whole image (no grid: the ablation) and patch mode (grid).
    auto finetune = [&](SineMode mode, int64_t steps, double& seconds, int64_t lora_rank = 0) {
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
      seconds += seconds_since(t0) / static_cast<double>(steps);
      std::optional<PositionalGrid> grid;
      if (ft.grid()) grid.emplace(*ft.grid());
      return std::make_pair(std::move(pipe), std::move(grid));
    };
    auto [whole_pipe, no_grid] = finetune(SineMode::Whole, o.whole_steps, whole_time);
    auto [patch_pipe, grid] = finetune(SineMode::Patch, o.patch_steps, patch_time);
    // ★ LoRA mode: the adapters stay attached to lora_pipe's model after the finetuner is gone.
    std::unique_ptr<Pipeline> lora_pipe;
    if (lora_variant) lora_pipe = finetune(SineMode::Whole, o.whole_steps, lora_time, o.lora_rank).first;
    const std::string desc = sine_training_prompt("photo of a sks {class}", "picture");
    SineBranch whole_branch{whole_pipe.get(), nullptr, desc, 1.0 - o.v, o.K};
    SineBranch patch_branch{patch_pipe.get(), &*grid, desc, 1.0 - o.v, o.K};
    SineBranch lora_branch{lora_pipe.get(), nullptr, desc, 1.0 - o.v, o.K};

    nlohmann::json scene_json{{"caption", caption}, {"edits", nlohmann::json::array()}};
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
      nlohmann::json edit_json{{"kind", edit_name(ec.kind)}, {"prompt", ec.prompt}, {"results", nlohmann::json::object()}};
      auto run = [&](const std::vector<SineBranch>& branches, SineEditMode mode) {
        c.mode = mode;
        torch::Tensor img = sine_edit(pre, branches, c);
        world::JudgeResult jr = world::judge(img, &ec.target);
        bar.update(++done);
        return std::make_pair(img, score(ec, *jr.verdict));
      };
      std::vector<torch::Tensor> row{image, world::render_scene(ec.target, size, size)};
      std::vector<std::pair<std::vector<SineBranch>, SineEditMode>> runs{
          {{whole_branch}, SineEditMode::Sine},       {{patch_branch}, SineEditMode::Sine},
          {{whole_branch}, SineEditMode::NoGuidance}, {{patch_branch}, SineEditMode::NoGuidance},
          {{}, SineEditMode::Pretrained}};
      if (lora_variant) {
        runs.push_back({{lora_branch}, SineEditMode::Sine});
        runs.push_back({{lora_branch}, SineEditMode::NoGuidance});
      }
      for (size_t m = 0; m < methods.size(); ++m) {
        auto [img, s] = run(runs[m].first, runs[m].second);
        by_method[methods[m]].add(s);
        by_method_kind[methods[m]][edit_name(ec.kind)].add(s);
        edit_json["results"][methods[m]] = {{"success", s.success}, {"preserved", s.preserved}};
        row.push_back(img);
      }
      if (sweep_here) {
        for (int64_t k : o.k_sweep) {
          SineBranch b = whole_branch;
          b.K = k;
          k_tally[k].add(run({b}, SineEditMode::Sine).second);
        }
        for (double v : o.v_sweep) {
          SineBranch b = whole_branch;
          b.beta = sine_beta(v);
          v_tally[v].add(run({b}, SineEditMode::Sine).second);
        }
      }
      if (i < o.grid_scenes) {
        static const char* kLabels[] = {"source",        "target",      "SINE whole", "SINE patch", "no-guid whole",
                                        "no-guid patch", "pre-trained", "SINE LoRA",  "no-guid LoRA"};
        for (size_t k = 0; k < row.size(); ++k) {
          grid_images.push_back(row[k]);
          grid_labels.push_back(k == 1 ? edit_name(ec.kind) : kLabels[k]);
        }
      }
      scene_json["edits"].push_back(edit_json);
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
            c.edit_prompt = mode == SineEditMode::NoGuidance ? desc : caption;
            c.steps = o.edit_steps;
            c.scale = o.scale;
            c.seed = 7000 + static_cast<uint64_t>(i);
            c.width = w;
            c.height = h;
            c.mode = mode;
            torch::Tensor img = sine_edit(pre, {branch}, c);
            const int64_t found = static_cast<int64_t>(world::judge(img).found.size());
            const int64_t expected = static_cast<int64_t>(scene.objects.size());
            ResizeTally& t = resize[name + (mode == SineEditMode::Sine ? ", SINE" : ", fine-tuned alone")];
            ++t.n;
            t.duplicated += found > expected;
            t.lost += found < expected;
            t.exact += found == expected;
            if (i < o.grid_scenes && mode == SineEditMode::NoGuidance) {
              wide_images.push_back(img);
              wide_labels.push_back(name + " " + std::to_string(w) + "x" + std::to_string(h) + ": " +
                                    std::to_string(found) + "/" + std::to_string(expected));
            }
          }
        }
      }
    }
    per_scene.push_back(scene_json);
  }

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

  // ---- report
  nlohmann::json out;
  out["model"] = pre.source();
  out["options"] = {{"scenes", o.scenes}, {"seed", o.seed}, {"whole_steps", o.whole_steps},
                    {"patch_steps", o.patch_steps}, {"lr", o.lr}, {"edit_steps", o.edit_steps},
                    {"scale", o.scale}, {"K", o.K}, {"v", o.v}, {"lora_rank", o.lora_rank},
                    {"lora_lr", o.lora_lr}};
  std::cout << "\nSINE on the shapes world: " << o.scenes << " scenes, fine-tune " << o.whole_steps << " (whole) / "
            << o.patch_steps << " (patch) steps at lr " << o.lr << ", edits " << o.edit_steps << " DDIM steps, s "
            << o.scale << ", K " << o.K << ", v " << o.v << "\n\n";
  std::cout << "edit success / preservation / both (judged from pixels)\n";
  std::printf("%-26s %6s %9s %13s %7s\n", "method", "edits", "success", "preservation", "both");
  for (const auto& m : methods) {
    const Tally& t = by_method[m];
    std::printf("%-26s %6lld %9s %13s %7s\n", m.c_str(), static_cast<long long>(t.n), pct(t.success, t.n).c_str(),
                pct(t.preserved, t.n).c_str(), pct(t.both, t.n).c_str());
    out["methods"][m] = t.json();
    for (const auto& [kind, kt] : by_method_kind[m]) out["methods_by_edit"][m][kind] = kt.json();
  }
  std::cout << "\nsuccess by edit kind\n";
  std::printf("%-26s", "method");
  for (EditKind k : kEditKinds) std::printf(" %17s", edit_name(k));
  std::printf("\n");
  for (const auto& m : methods) {
    std::printf("%-26s", m.c_str());
    for (EditKind k : kEditKinds) {
      const Tally& t = by_method_kind[m][edit_name(k)];
      std::printf(" %17s", (pct(t.success, t.n) + " / " + pct(t.preserved, t.n)).c_str());
    }
    std::printf("\n");
  }
  std::cout << "(each cell: success / preservation)\n";
  // The paper's claim: model-based guidance beats either model alone on edit + preservation, case by
  // case on the same edits (exact McNemar) — the intervals above are per row.
  std::cout << "\nedit + preservation with 95% Wilson intervals, and SINE vs each model alone (exact McNemar)\n";
  for (const auto& m : methods)
    std::printf("%-26s %s\n", m.c_str(), eval::format_rate(eval::wilson(by_method[m].both, by_method[m].n)).c_str());
  const std::pair<const char*, const char*> claims[] = {{"SINE (whole)", "no guidance (whole)"},
                                                         {"SINE (whole)", "pre-trained alone"},
                                                         {"SINE (patch)", "no guidance (patch)"},
                                                         {"SINE (patch)", "pre-trained alone"}};
  for (const auto& [a, b] : claims) {
    const eval::McNemar t = eval::mcnemar(by_method[a].both_cases, by_method[b].both_cases);
    std::printf("  %s vs %s: only %s %lld, only %s %lld, p = %.4g\n", a, b, a, static_cast<long long>(t.only_a), b,
                static_cast<long long>(t.only_b), t.p_value);
    out["claims"].push_back({{"a", a}, {"b", b}, {"outcome", "both"}, {"mcnemar", eval::to_json(t)}});
  }
  if (o.resize_test) {
    std::cout << "\nobjects at 2x width and 2x height vs the source (" << 2 * o.scenes << " images per row)\n";
    std::printf("%-34s %11s %7s %7s\n", "model", "duplicated", "lost", "exact");
    for (const auto& [name, t] : resize) {
      std::printf("%-34s %11s %7s %7s\n", name.c_str(), pct(t.duplicated, t.n).c_str(), pct(t.lost, t.n).c_str(),
                  pct(t.exact, t.n).c_str());
      out["resize"][name] = {{"n", t.n},
                             {"duplicated", static_cast<double>(t.duplicated) / static_cast<double>(t.n)},
                             {"lost", static_cast<double>(t.lost) / static_cast<double>(t.n)},
                             {"exact", static_cast<double>(t.exact) / static_cast<double>(t.n)}};
    }
  }
  if (o.sweeps) {
    std::cout << "\nK sweep (SINE whole, v " << o.v << "): guidance while t >= K\n";
    std::printf("%6s %9s %13s %7s\n", "K", "success", "preservation", "both");
    for (const auto& [k, t] : k_tally) {
      std::printf("%6lld %9s %13s %7s\n", static_cast<long long>(k), pct(t.success, t.n).c_str(),
                  pct(t.preserved, t.n).c_str(), pct(t.both, t.n).c_str());
      out["k_sweep"][std::to_string(k)] = t.json();
    }
    std::cout << "\nv sweep (SINE whole, K " << o.K << "): weight of the pre-trained edit prompt\n";
    std::printf("%6s %9s %13s %7s\n", "v", "success", "preservation", "both");
    for (const auto& [v, t] : v_tally) {
      std::printf("%6.2f %9s %13s %7s\n", v, pct(t.success, t.n).c_str(), pct(t.preserved, t.n).c_str(),
                  pct(t.both, t.n).c_str());
      out["v_sweep"][fmt(v)] = t.json();
    }
  }
  std::cout << "\nfine-tuning on this machine (" << size << " px, batch 1)\n";
  std::printf("%-30s %12s %12s %14s %14s\n", "variant", "s/step", "trainable", "state GB", "peak RSS GB");
  std::printf("%-30s %12.4f %12s %14s %14s\n", "full, whole (bench runs)", whole_time / static_cast<double>(o.scenes),
              "", "", "");
  std::printf("%-30s %12.4f %12s %14s %14s\n", "full, patch (bench runs)", patch_time / static_cast<double>(o.scenes),
              "", "", "");
  if (lora_variant)
    std::printf("%-30s %12.4f %12s %14s %14s\n", ("LoRA r" + std::to_string(o.lora_rank) + ", whole (bench runs)").c_str(),
                lora_time / static_cast<double>(o.scenes), "", "", "");
  for (const auto& t : timings) {
    std::printf("%-30s %12.4f %12lld %14.4f %14.3f\n", t.label.c_str(), t.seconds_per_step,
                static_cast<long long>(t.trainable), t.state_gb, t.peak_memory_gb);
    out["finetune_timing"].push_back({{"variant", t.label},
                                      {"seconds_per_step", t.seconds_per_step},
                                      {"trainable", t.trainable},
                                      {"state_gb", t.state_gb},
                                      {"peak_gb", t.peak_memory_gb}});
  }
  std::cout << "(state = trainable weights + grads + AdamW moments in fp32; peak RSS is the process's so far)\n";
  out["finetune_seconds_per_step"] = {{"whole", whole_time / static_cast<double>(o.scenes)},
                                      {"patch", patch_time / static_cast<double>(o.scenes)}};
  if (lora_variant) out["finetune_seconds_per_step"]["lora_whole"] = lora_time / static_cast<double>(o.scenes);
  out["scenes"] = per_scene;
  out["seconds"] = seconds_since(bench_start);

  if (!grid_images.empty()) {
    const std::string path = (fs::path(o.output_dir) / "grid.png").string();
    write_png(path, make_grid(grid_images, 2 + static_cast<int64_t>(methods.size()), 4, grid_labels));
    out["grid"] = path;
  }
  if (!wide_images.empty()) {
    const std::string path = (fs::path(o.output_dir) / "resize.png").string();
    write_png(path, make_grid(wide_images, 4, 4, wide_labels));
    out["resize_grid"] = path;
  }
  write_json_file((fs::path(o.output_dir) / "results.json").string(), out);
  std::cout << "\nwrote " << o.output_dir << "/results.json, grid.png, resize.png (" << fmt(out["seconds"].get<double>(), "%.0f")
            << " s)\n";
  return out;
}

}  // namespace sine
