#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "methods/sine/sine_finetune.h"
#include "pipeline/pipeline.h"

// `sine world bench-sine`: SINE judged on the shapes world. For each source scene (rendered from
// its caption): fine-tune the base model whole-image and patch-mode, then run four edits
// (background color, object color, add an object, change pattern) with SINE, the no-guidance
// ablation and the pre-trained model alone; the pixel judge scores edit success (the edited
// claim holds) and preservation (every claim the edit should not change holds). Also: objects
// duplicated or lost at 2x width / 2x height (patch mode vs no grid), K and v sweeps, and the
// fine-tuning time and peak memory per step (full vs LoRA). With lora_rank > 0 a third fine-tune
// per scene (★ LoRA adapters on UNet + text attention, whole image) is edited and judged as well.
namespace sine {

struct SineBenchOptions {
  LoadOptions model;
  int64_t scenes = 8;
  uint64_t seed = 0;
  int64_t whole_steps = 150;   // fine-tuning steps, whole-image mode
  int64_t patch_steps = 300;   // patch mode
  double lr = 1e-4;
  int64_t edit_steps = 30;
  double scale = 5.0;
  int64_t K = 400;
  double v = 0.7;
  std::vector<int64_t> k_sweep{200, 400, 600, 800};
  std::vector<double> v_sweep{0.3, 0.5, 0.7, 0.9};
  bool sweeps = true;
  int64_t sweep_scenes = -1;  // scenes the sweeps run on (-1: all)
  bool resize_test = true;   // 2x width / 2x height duplicates
  int64_t lora_rank = 4;     // LoRA fine-tune variant (whole image) and its timing; 0: none
  double lora_lr = 1e-3;     // its learning rate (adapters start at 0: LoRA needs a larger lr)
  int64_t timing_steps = 20; // steps timed per fine-tuning variant
  std::string output_dir = "bench-sine";
  int64_t grid_scenes = 4;   // scenes shown in the grid image
};

// Runs everything, prints the tables to stdout, writes output_dir/results.json and grid.png.
nlohmann::json run_sine_bench(const SineBenchOptions& options);

// Time and peak memory of fine-tuning steps on `pipeline` (a random image; LoRA when rank > 0).
struct SineStepTiming {
  std::string label;
  double seconds_per_step = 0;
  double peak_memory_gb = 0;   // CUDA: allocator peak during the steps; CPU: process peak RSS so far
  double state_gb = 0;         // trainable weights + gradients (model dtype) + fp32 masters + AdamW moments, exact
  int64_t trainable = 0;
};
SineStepTiming time_sine_finetune(Pipeline& pipeline, SineMode mode, int64_t lora_rank, bool checkpointing,
                                  int64_t steps, double lr = 1e-4,
                                  torch::ScalarType optimizer_state = torch::kFloat32);

}  // namespace sine
