#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli/cli_common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/image.h"
#include "world/caption.h"
#include "world/judge.h"
#include "world/render.h"
#include "world/scene.h"
#include "world/trainer.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

bool ends_with_png(const std::string& path) {
  return path.size() > 4 && path.compare(path.size() - 4, 4, ".png") == 0;
}

void write_text_file(const std::string& path, const std::string& text) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out) throw Error(path + ": cannot write");
  });
}

// ---------------------------------------------------------------------------------------------
// render

struct RenderFlags {
  int64_t count = 8;
  uint64_t seed = 0;
  int64_t width = 64, height = 64;
  std::string caption;
  std::string output = "world-scenes";
  bool masks = false;
};

// Normalized center range that keeps an object of half-extent `half` (min-side units) inside a
// canvas axis `span` min-side units long, with a small frame margin.
std::pair<float, float> center_range(float half, float span) {
  constexpr float kFrame = 0.01f;
  return {(half + kFrame) / span, 1.0f - (half + kFrame) / span};
}

bool overlaps(const world::Object& a, const world::Object& b, float span_x, float span_y) {
  constexpr float kGap = 0.02f;  // objects must not touch, or the judge sees one blob
  const float reach = (world::extent_of(a.size) + world::extent_of(b.size)) / 2 + kGap;
  return std::abs(a.cx - b.cx) * span_x < reach && std::abs(a.cy - b.cy) * span_y < reach;
}

// A parsed caption may leave positions unstated (grid_cell -1); such objects take the first grid
// cell where their bounding box clears every other object's: corners first (they leave the most
// room), then center and edges; a lone object goes in the center. Stated positions are the
// user's layout and are kept as given.
world::Scene place_caption_scene(world::Scene scene, float aspect, const std::string& text) {
  const float span_x = aspect / std::min(aspect, 1.0f), span_y = 1.0f / std::min(aspect, 1.0f);
  auto clamp_inside = [&](world::Object& o) {
    const float half = world::extent_of(o.size) / 2;
    auto [x0, x1] = center_range(half, span_x);
    auto [y0, y1] = center_range(half, span_y);
    o.cx = std::clamp(o.cx, x0, std::max(x0, x1));
    o.cy = std::clamp(o.cy, y0, std::max(y0, y1));
  };
  std::vector<world::Object*> placed;
  for (world::Object& o : scene.objects)
    if (o.grid_cell >= 0) {
      clamp_inside(o);
      placed.push_back(&o);
    }
  static constexpr int kCornersFirst[] = {0, 8, 2, 6, 4, 1, 7, 3, 5};
  static constexpr int kCenterFirst[] = {4, 0, 8, 2, 6, 1, 7, 3, 5};
  const int* preference = scene.objects.size() == 1 ? kCenterFirst : kCornersFirst;
  for (world::Object& o : scene.objects) {
    if (o.grid_cell >= 0) continue;
    bool found = false;
    for (int k = 0; k < world::kGridCells; ++k) {
      const int cell = preference[k];
      o.cx = world::kGridCenters[cell % 3];
      o.cy = world::kGridCenters[cell / 3];
      clamp_inside(o);
      bool free = true;
      for (const world::Object* p : placed) free = free && !overlaps(o, *p, span_x, span_y);
      if (free) {
        o.grid_cell = cell;
        found = true;
        break;
      }
    }
    if (!found) throw Error("--caption \"" + text + "\": the objects don't fit side by side; state their positions");
    placed.push_back(&o);
  }
  return scene;
}

torch::Tensor mask_image(const torch::Tensor& coverage) {
  return (coverage * 255).round().clamp(0, 255).to(torch::kUInt8).unsqueeze(-1).expand({-1, -1, 3}).contiguous();
}

void run_render(const RenderFlags& f) {
  if (f.width < 8 || f.height < 8) throw Error("-W/-H: the image must be at least 8x8 pixels");
  if (f.width > 16384 || f.height > 16384)  // a render is W x H x 3 bytes plus float masks: refuse before allocating
    throw Error("-W/-H: at most 16384 pixels a side (got " + std::to_string(f.width) + "x" + std::to_string(f.height) + ")");
  if (f.count < 1) throw Error("--count must be at least 1");
  const float aspect = static_cast<float>(f.width) / static_cast<float>(f.height);
  std::vector<world::Scene> scenes;
  if (!f.caption.empty()) {
    world::Scene parsed = world::parse_caption(f.caption);
    if (!parsed.background_stated) parsed.background = world::Background{};
    scenes.push_back(place_caption_scene(parsed, aspect, f.caption));
  } else {
    world::SceneSampling sampling;
    sampling.aspect = aspect;
    for (int64_t i = 0; i < f.count; ++i) {
      std::mt19937_64 rng(f.seed + static_cast<uint64_t>(i));
      scenes.push_back(world::sample_scene(rng, sampling));
    }
  }

  const bool single_file = scenes.size() == 1 && ends_with_png(f.output);
  const fs::path dir = single_file ? fs::path(f.output).parent_path() : fs::path(f.output);
  if (!dir.empty()) fs::create_directories(dir);
  std::string jsonl;
  for (size_t i = 0; i < scenes.size(); ++i) {
    const world::Scene& scene = scenes[i];
    // A parsed caption keeps the user's wording; sampled scenes use the canonical caption.
    const std::string text = f.caption.empty() ? world::caption(scene) : f.caption;
    std::ostringstream stem;
    stem << "scene_" << std::setw(4) << std::setfill('0') << i;
    const std::string path = single_file ? f.output : (dir / (stem.str() + ".png")).string();
    write_png(path, world::render_scene(scene, f.height, f.width),
              {{"caption", text}, {"scene", world::to_json(scene).dump()}});
    nlohmann::json line{{"file", fs::path(path).filename().string()}, {"caption", text}};
    if (f.masks) {
      std::vector<std::string> mask_files;
      const std::string base = path.substr(0, path.size() - 4);
      for (size_t k = 0; k < scene.objects.size(); ++k) {
        const std::string mask_path = base + "_mask" + std::to_string(k) + ".png";
        write_png(mask_path, mask_image(world::render_object_mask(scene, k, f.height, f.width)));
        mask_files.push_back(fs::path(mask_path).filename().string());
      }
      line["masks"] = mask_files;
    }
    line["scene"] = world::to_json(scene);
    jsonl += line.dump() + "\n";
    std::cout << path << "\t" << text << "\n";
  }
  if (!single_file) write_text_file((dir / "captions.jsonl").string(), jsonl);
}

// ---------------------------------------------------------------------------------------------
// judge

struct JudgeFlags {
  std::string image;
  std::string expect;
  bool json = false;
};

// The verdict is the exit status, so scripts can branch on it without parsing the report.
void run_judge(const JudgeFlags& f) {
  const world::JudgeReport report = world::judge_report(read_image_rgb(f.image), f.expect);
  if (f.json)
    std::cout << report.json.dump(2) << "\n";
  else
    std::cout << report.text << (report.text.empty() || report.text.back() == '\n' ? "" : "\n")
              << (report.pass ? "PASS" : "FAIL") << "\n";
  std::cout.flush();
  if (!report.pass) std::exit(1);
}

// ---------------------------------------------------------------------------------------------
// eval

struct EvalFlags {
  ModelFlags model;
  int64_t count = 200;
  uint64_t seed = 0;
  int64_t steps = 30;
  double cfg_scale = 5.0;
  int64_t size = 0;
  std::string output;
  bool vae = false;
  bool renders = false;
};

// Fractions of claims that held, per attribute; objects are counted over every expected object.
struct Tally {
  int64_t images = 0, passed = 0, background_color = 0, background_kind = 0, count = 0;
  int64_t objects = 0, color = 0, shape = 0, pattern = 0, size = 0, position = 0;
  double psnr_sum = 0;

  void add(const world::Verdict& v) {
    ++images;
    passed += v.pass;
    background_color += v.background_color_ok;
    background_kind += v.background_kind_ok;
    count += v.count_ok;
    for (const world::ObjectVerdict& o : v.objects) {
      ++objects;
      color += o.found >= 0 && o.color_ok;
      shape += o.found >= 0 && o.shape_ok;
      pattern += o.found >= 0 && o.pattern_ok;
      size += o.found >= 0 && o.size_ok;
      position += o.found >= 0 && o.position_ok;
    }
  }

  nlohmann::json summary() const {
    auto frac = [](int64_t n, int64_t d) { return d > 0 ? static_cast<double>(n) / static_cast<double>(d) : 0.0; };
    return {{"images", images},
            {"pass", frac(passed, images)},
            {"background_color", frac(background_color, images)},
            {"background_kind", frac(background_kind, images)},
            {"object_count", frac(count, images)},
            {"objects", objects},
            {"object_color", frac(color, objects)},
            {"shape", frac(shape, objects)},
            {"pattern", frac(pattern, objects)},
            {"size", frac(size, objects)},
            {"position", frac(position, objects)}};
  }
};

double psnr(const torch::Tensor& a_u8, const torch::Tensor& b_u8) {
  const double mse = (a_u8.to(torch::kFloat64) - b_u8.to(torch::kFloat64)).div(255.0).pow(2).mean().item<double>();
  return mse > 0 ? 10.0 * std::log10(1.0 / mse) : 99.0;
}

void print_summary(const nlohmann::json& s, const std::string& mode) {
  std::cout << std::fixed << std::setprecision(3) << mode << " on " << s["images"].get<int64_t>()
            << " held-out captions (" << s["objects"].get<int64_t>() << " objects)\n";
  for (const char* key : {"pass", "background_color", "background_kind", "object_count", "object_color", "shape",
                          "pattern", "size", "position"})
    std::cout << "  " << std::left << std::setw(18) << key << s[key].get<double>() << "\n";
  if (s.contains("psnr")) std::cout << "  " << std::left << std::setw(18) << "psnr_db" << s["psnr"].get<double>() << "\n";
}

void run_eval(const EvalFlags& f) {
  if (f.count < 1) throw Error("--count must be at least 1");
  if (f.steps < 1) throw Error("--steps must be at least 1");
  if (f.vae && f.renders) throw Error("--vae and --renders: choose one");
  // --renders judges the exact renderings: the judge's own accuracy, no model involved.
  std::optional<Pipeline> loaded;
  if (!f.renders) loaded.emplace(load_pipeline(f.model));
  const world::WorldTrainOptions world_defaults;
  const int64_t size = f.size > 0 ? f.size : (loaded ? loaded->native_size() : world_defaults.image_size);
  if (loaded && size % loaded->vae_factor() != 0)
    throw Error("--size " + std::to_string(size) + ": must be a multiple of " + std::to_string(loaded->vae_factor()));
  const world::SceneSampling sampling = world_defaults.scenes;
  // What is judged: its name in reports, the progress label, the output file stem.
  struct Kind {
    const char *mode, *label, *stem;
  };
  const Kind kind = f.renders ? Kind{"exact renders", "world eval --renders", "eval_renders"}
                    : f.vae   ? Kind{"vae reconstruction", "world eval --vae", "eval_vae"}
                              : Kind{"prompt following", "world eval", "eval"};
  const std::string mode = kind.mode;
  const std::string source = loaded ? loaded->source() : "renderer";

  Tally tally;
  std::vector<torch::Tensor> grid_images;
  std::vector<std::string> grid_labels;
  nlohmann::json per_image = nlohmann::json::array();
  ProgressBar progress(kind.label, f.count);
  const std::vector<uint64_t> seeds = world::eval_seeds(f.count, f.seed);
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::mt19937_64 rng(seeds[i]);
    const world::Scene scene = world::sample_scene(rng, sampling);
    const std::string text = world::caption(scene);
    torch::Tensor image;
    double image_psnr = 0;
    torch::NoGradGuard no_grad;
    if (f.renders) {
      image = world::render_scene(scene, size, size);
    } else if (f.vae) {
      const torch::Tensor rendered = world::render_scene(scene, size, size);
      image = from_model_output(loaded->decode_latents(loaded->encode_image(rendered)));
      image_psnr = psnr(rendered, image);
      tally.psnr_sum += image_psnr;
    } else {
      GenerateOptions o;
      o.prompt = text;
      o.width = o.height = size;
      o.steps = f.steps;
      o.cfg_scale = f.cfg_scale;
      o.seed = seeds[i];
      image = loaded->generate(o);
    }
    const world::Scene expected = world::parse_caption(text);
    const world::JudgeResult result = world::judge(image, &expected);
    tally.add(*result.verdict);
    nlohmann::json entry{{"caption", text}, {"pass", result.verdict->pass}, {"found", world::caption(result.scene)}};
    if (f.vae) entry["psnr"] = image_psnr;
    per_image.push_back(entry);
    if (grid_images.size() < 16) {
      // Upscaled so the label under each tile has room to be read.
      grid_images.push_back(resize_rgb(image, size * 3, size * 3));
      grid_labels.push_back(std::string(result.verdict->pass ? "ok " : "X ") + text);
    }
    progress.update(static_cast<int64_t>(i) + 1);
  }
  progress.finish();

  nlohmann::json summary = tally.summary();
  if (f.vae) summary["psnr"] = tally.psnr_sum / static_cast<double>(tally.images);
  print_summary(summary, mode);
  if (f.output.empty()) return;
  fs::create_directories(f.output);
  const std::string stem = kind.stem;
  const std::string grid_path = (fs::path(f.output) / (stem + "_grid.png")).string();
  write_png(grid_path, make_grid(grid_images, 4, 4, grid_labels), {{"model", source}, {"mode", mode}});
  nlohmann::json report{{"mode", mode},           {"model", source},        {"size", size},
                        {"seed_offset", f.seed},  {"summary", summary},     {"images", per_image}};
  if (!f.vae && !f.renders) {
    report["steps"] = f.steps;
    report["cfg_scale"] = f.cfg_scale;
  }
  const std::string json_path = (fs::path(f.output) / (stem + ".json")).string();
  write_text_file(json_path, report.dump(2) + "\n");
  std::cout << grid_path << "\n" << json_path << "\n";
}

}  // namespace

void register_world(CLI::App& app) {
  CLI::App* world = world_command(app);

  auto r = std::make_shared<RenderFlags>();
  CLI::App* render = world->add_subcommand(
      "render", "render random shapes-world scenes, or one scene from --caption, as PNGs (caption in the text chunk)");
  render->add_option("--count", r->count, "number of random scenes")->capture_default_str();
  render->add_option("-s,--seed", r->seed, "scene i is drawn from seed + i")->capture_default_str();
  render->add_option("-W,--width", r->width, "image width in pixels")->capture_default_str();
  render->add_option("-H,--height", r->height, "image height in pixels")->capture_default_str();
  render->add_option("--caption", r->caption,
                     "render this caption instead of random scenes (objects without a position go on free cells)");
  render->add_option("-o,--output", r->output, "output folder, or a .png file for a single scene")->capture_default_str();
  render->add_flag("--masks", r->masks, "also write each object's coverage mask (<image>_mask<k>.png)");
  on_run(render, [r] { run_render(*r); });

  auto j = std::make_shared<JudgeFlags>();
  CLI::App* judge = world->add_subcommand(
      "judge", "read a shapes-world image back from pixels and check it against a caption; exit status 0 if every "
               "claim of the caption holds, 1 if not");
  judge->add_option("image", j->image, "the image (PNG/JPEG/...)")->required();
  judge->add_option("--expect", j->expect, "the caption the image should show")->required();
  judge->add_flag("--json", j->json, "print the report as JSON");
  on_run(judge, [j] { run_judge(*j); });

  auto e = std::make_shared<EvalFlags>();
  CLI::App* eval = world->add_subcommand(
      "eval", "prompt following of a model on held-out captions (txt2img, judged), or with --vae its reconstructions");
  add_model_flags(eval, e->model);
  eval->add_option("--count", e->count, "number of held-out captions")->capture_default_str();
  eval->add_option("-s,--seed", e->seed, "offset into the held-out scene seeds (disjoint from training)")
      ->capture_default_str();
  eval->add_option("--steps", e->steps, "sampling steps")->capture_default_str();
  eval->add_option("--cfg-scale", e->cfg_scale, "classifier-free guidance scale")->capture_default_str();
  eval->add_option("--size", e->size, "image side in pixels (default: the model's native size)");
  eval->add_option("-o,--output", e->output, "folder for a 16-sample grid PNG and a JSON summary");
  eval->add_flag("--vae", e->vae, "evaluate VAE reconstructions of rendered scenes (PSNR and judge accuracy)");
  eval->add_flag("--renders", e->renders, "judge the exact renderings (the judge's own accuracy; no model loaded)");
  on_run(eval, [e] { run_eval(*e); });
}

}  // namespace sine
