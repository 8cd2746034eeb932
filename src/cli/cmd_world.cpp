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
#include "io/json_file.h"
#include "world/caption.h"
#include "world/judge.h"
#include "world/render.h"
#include "world/scene.h"
#include "world/trainer.h"
#include "eval/world_eval.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

bool ends_with_png(const std::string& path) {
  return path.size() > 4 && path.compare(path.size() - 4, 4, ".png") == 0;
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
  bool textured = false;
};

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
    scenes.push_back(world::lay_out_caption_scene(parsed, aspect));
  } else {
    world::SceneSampling sampling = f.textured ? world::with_textured_backgrounds() : world::SceneSampling{};
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
  if (!single_file) write_text_atomically((dir / "captions.jsonl").string(), jsonl);
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
  eval::WorldEvalConfig config;
  int64_t size = 0;
  std::string sampler = "ddim", scheduler = "default";
  std::string output;
  bool vae = false;
  bool renders = false;
  bool textured = false;
};

void run_eval(EvalFlags f) {
  if (f.vae && f.renders) throw Error("--vae and --renders: choose one");
  eval::WorldEvalConfig& c = f.config;
  c.mode = f.renders ? eval::WorldEvalMode::renders : f.vae ? eval::WorldEvalMode::vae : eval::WorldEvalMode::prompt_following;
  if (f.size > 0) {
    if (c.width > 0 || c.height > 0) throw Error("--size and -W/-H: choose one");
    c.width = c.height = f.size;
  }
  if (f.textured) c.sampling = world::with_textured_backgrounds(c.sampling);
  c.sampler = canonical_sampler_name(f.sampler);
  c.schedule = parse_sigma_schedule(f.scheduler);
  std::optional<Pipeline> loaded;
  if (!f.renders) loaded.emplace(load_pipeline(f.model));
  const std::string label = std::string("world eval") + (f.renders ? " --renders" : f.vae ? " --vae" : "");
  ProgressBar progress(label, c.count);
  const eval::WorldEvalResult result =
      eval::evaluate_world(loaded ? &*loaded : nullptr, c, [&](int64_t done, int64_t) { progress.update(done); });
  progress.finish();
  std::cout << result.text();
  if (f.output.empty()) return;
  fs::create_directories(f.output);
  const std::string stem = f.renders ? "eval_renders" : f.vae ? "eval_vae" : "eval";
  // Upscaled so the label under each tile has room to be read.
  std::vector<torch::Tensor> tiles;
  for (const torch::Tensor& image : result.grid) tiles.push_back(resize_rgb(image, image.size(0) * 3, image.size(1) * 3));
  const std::string grid_path = (fs::path(f.output) / (stem + "_grid.png")).string();
  write_png(grid_path, make_grid(tiles, 4, 4, result.grid_labels),
            {{"model", result.model}, {"mode", eval::name_of(c.mode)}});
  const std::string json_path = (fs::path(f.output) / (stem + ".json")).string();
  write_json_file(json_path, result.to_json());
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
  render->add_flag("--textured-backgrounds", r->textured,
                   "draw from the shapes-v4 world (striped, dotted, noisy and split backgrounds too)");
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
  eval->add_option("--count", e->config.count, "number of held-out captions")->capture_default_str();
  eval->add_option("-s,--seed", e->config.seed, "offset into the held-out scene seeds (disjoint from training)")
      ->capture_default_str();
  eval->add_option("--steps", e->config.steps, "sampling steps")->capture_default_str();
  eval->add_option("--cfg-scale", e->config.cfg_scale, "classifier-free guidance scale")->capture_default_str();
  eval->add_option("--sampling-method", e->sampler, "sampling method, as `generate`: ddim, euler, euler_a, heun, dpmpp_2m")
      ->capture_default_str();
  eval->add_option("--scheduler", e->scheduler, "sigma schedule of the k-diffusion methods: default or karras")
      ->capture_default_str();
  eval->add_option("-W,--width", e->config.width, "image width in pixels (default: the model's native size)");
  eval->add_option("-H,--height", e->config.height, "image height in pixels (default: the model's native size)");
  eval->add_option("--size", e->size, "square image side in pixels (same as -W N -H N)");
  eval->add_flag("--textured-backgrounds", e->textured,
                 "draw captions from the shapes-v4 world (striped, dotted, noisy and split backgrounds too)");
  eval->add_option("-o,--output", e->output, "folder for a 16-sample grid PNG and a JSON summary");
  eval->add_flag("--vae", e->vae, "evaluate VAE reconstructions of rendered scenes (PSNR and judge accuracy)");
  eval->add_flag("--renders", e->renders, "judge the exact renderings (the judge's own accuracy; no model loaded)");
  on_run(eval, [e] { run_eval(*e); });

  auto files = std::make_shared<std::pair<std::string, std::string>>();
  CLI::App* compare = world->add_subcommand(
      "compare", "two `world eval` results on the same captions: each claim's rate and an exact McNemar test");
  compare->add_option("a", files->first, "eval.json of the first evaluation")->required()->check(CLI::ExistingFile);
  compare->add_option("b", files->second, "eval.json of the second")->required()->check(CLI::ExistingFile);
  on_run(compare, [files] {
    const nlohmann::json a = read_json_file(files->first), b = read_json_file(files->second);
    try {
      std::cout << eval::compare_world_evals(a, b).text();
    } catch (const nlohmann::json::exception& e) {
      throw Error("world compare: " + files->first + " or " + files->second + " is not a `world eval` result (" +
                  e.what() + ")");
    }
  });
}

}  // namespace sine
