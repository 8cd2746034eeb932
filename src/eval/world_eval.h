#pragma once
#include <torch/torch.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/statistics.h"
#include "pipeline/pipeline.h"
#include "world/judge.h"
#include "world/scene.h"

// `sine world eval`: how well a model follows held-out captions (txt2img, judged), how well its
// VAE reconstructs rendered scenes, or (no model) how well the judge reads exact renders; every
// claim's rate with its 95 % Wilson interval, overall and per background kind.
namespace sine::eval {

enum class WorldEvalMode { prompt_following, vae, renders };

struct WorldEvalConfig {
  WorldEvalMode mode = WorldEvalMode::prompt_following;
  int64_t count = 200;
  uint64_t seed = 0;  // offset into world::eval_seeds (never drawn by training)
  int64_t steps = 30;
  double cfg_scale = 5.0;
  std::string sampler = "ddim";  // diffusion/sampler.h's methods
  SigmaSchedule schedule = SigmaSchedule::standard;
  int64_t width = 0, height = 0;  // 0: the model's native size (64 without a model)
  world::SceneSampling sampling;  // its aspect is set from width / height
  int64_t grid_images = 16;       // samples kept for the grid
};

// Claims that held, counted per image (background, count, pass) and per expected object.
struct ClaimTally {
  int64_t images = 0, passed = 0, background_color = 0, background_kind = 0, count = 0;
  int64_t objects = 0, color = 0, shape = 0, pattern = 0, size = 0, position = 0;
  void add(const world::Verdict& verdict);
  // {"images", "objects", "pass": {rate, low, high, n}, "background_color": ..., ...}
  nlohmann::json summary() const;
};

struct WorldEvalImage {
  std::string caption, found;
  world::BackgroundKind background = world::BackgroundKind::solid;
  world::Verdict verdict;
  double psnr = 0;  // vae mode
};

struct WorldEvalResult {
  WorldEvalConfig config;
  std::string model;  // the model's source, or "renderer"
  int64_t width = 0, height = 0;
  ClaimTally all;
  std::array<ClaimTally, world::kBackgroundKindCount> by_background;
  std::vector<WorldEvalImage> images;
  double mean_psnr = 0;  // vae mode
  std::vector<torch::Tensor> grid;  // the first grid_images samples, uint8 [H, W, 3]
  std::vector<std::string> grid_labels;

  nlohmann::json to_json() const;  // the summary, per kind, and every image's verdict
  std::string text() const;        // the table `sine world eval` prints
};

// `pipeline` may be null in renders mode. `on_image(done, total)` reports progress.
WorldEvalResult evaluate_world(Pipeline* pipeline, const WorldEvalConfig& config,
                               const std::function<void(int64_t, int64_t)>& on_image = {});

const char* name_of(WorldEvalMode mode);

// Two evaluations of the same held-out captions (eval.json of `sine world eval`, e.g. two models):
// per image-level claim (pass, background color and kind, object count) both rates with their
// intervals and an exact McNemar test on the paired images. Throws if the captions differ.
struct WorldEvalComparison {
  std::string a, b;  // the models
  struct Claim {
    std::string name;
    Rate rate_a, rate_b;
    McNemar test;
  };
  std::vector<Claim> claims;
  nlohmann::json to_json() const;
  std::string text() const;
};
WorldEvalComparison compare_world_evals(const nlohmann::json& a, const nlohmann::json& b);

}  // namespace sine::eval
