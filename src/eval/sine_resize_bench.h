#pragma once
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"

// `sine world bench-sine-resize`: SINE's headline claim (paper Fig. 4-5, ablation "w/o pos"):
// a model fine-tuned on random patches with the positional grid edits at other resolutions and
// aspect ratios without duplicating the source's objects; one fine-tuned on the whole image does.
// For each source scene: fine-tune whole-image (no grid) and patch mode (grid), judging the patch
// model at several step counts (where duplication stops improving); at each canvas generate with
// the fine-tuned model alone (its training prompt), with SINE (the source caption, model-based
// guidance) and with the pre-trained model alone (the source caption); count the objects the judge
// finds against the source: duplicated (more), lost (fewer), exact. Rates carry 95 % Wilson
// intervals; patch vs whole is compared case by case (exact McNemar). Each finished scene is kept in
// output_dir/scenes/ and reused by a rerun with the same options: stop it any time, rerun to go on.
namespace sine {

struct SineResizeBenchOptions {
  LoadOptions model;
  int64_t scenes = 16;
  uint64_t seed = 0;
  int64_t whole_steps = 1000;
  std::vector<int64_t> patch_steps{1000, 3000, 10000};  // judged at each; the last (official) is the main row
  double lr = 1e-4;
  int64_t edit_steps = 30;
  double scale = 5.0;
  int64_t K = 400;
  double v = 0.7;
  // Canvases as multiples of the native side (width, height): 2x width, 2x height, 1.5x both.
  std::vector<std::pair<double, double>> canvases{{2.0, 1.0}, {1.0, 2.0}, {1.5, 1.5}};
  bool textured_backgrounds = false;  // sources from the shapes-v4 world
  std::string output_dir = "bench-sine-resize";
  int64_t grid_scenes = 4;

  void validate() const;  // errors name the field
};

// Prints the tables, writes output_dir/results.json and resize.png; returns the JSON.
nlohmann::json run_sine_resize_bench(const SineResizeBenchOptions& options);

}  // namespace sine
