#pragma once
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "methods/sine/positional_grid.h"
#include "methods/sine/sine_guidance.h"
#include "pipeline/pipeline.h"

// `sine edit`: the pre-trained model with the edit prompt guided by one or more fine-tuned
// models with their training prompts (model-based CFG), or the paper's ablations.
namespace sine {

enum class SineEditMode {
  Sine,        // model-based guidance (the method)
  NoGuidance,  // ablation: the fine-tuned model alone, CFG with the edit prompt
  Pretrained,  // baseline: the pre-trained model alone, CFG with the edit prompt
};
SineEditMode parse_sine_edit_mode(const std::string& name);  // "sine", "no-guidance", "pretrained"
const char* sine_edit_mode_name(SineEditMode mode);

// A fine-tuned model taking part in an edit.
struct SineBranch {
  Pipeline* pipeline = nullptr;          // the fine-tuned networks (not owned)
  const PositionalGrid* grid = nullptr;  // patch models: stretched to the output's latent size
  std::string prompt;                    // DESC: its training prompt
  double beta = 0.3;                     // its weight (1 − v for a single model)
  int64_t K = 400;
};

// SINE's v (the weight of the pre-trained model's edit direction) as the weight β of each of
// `models` fine-tuned branches sharing the rest equally: (1 − v) / models; and v back from the
// branches' weights: 1 − Σ β.
double sine_beta(double v, size_t models = 1);
double sine_v(const std::vector<SineBranch>& branches);

struct SineEditConfig {
  std::string edit_prompt;
  int64_t width = 0, height = 0;  // 0: the model's native size
  int64_t steps = 100;
  double scale = 7.5;
  uint64_t seed = 42;
  SineEditMode mode = SineEditMode::Sine;
  bool force = false;  // skip the memory estimate (pipeline/memory_estimate.h)
};

// Runs one edit; `pretrained` holds the base model. Returns scaled latents [1, 4, h, w].
// Noise: randn from seed on the CPU, so all modes and K/v values start from the same x_T.
torch::Tensor sine_edit_latents(Pipeline& pretrained, const std::vector<SineBranch>& finetuned,
                                const SineEditConfig& config, const StepCallback& on_step = {});
// Decoded to uint8 [H, W, 3].
torch::Tensor sine_edit(Pipeline& pretrained, const std::vector<SineBranch>& finetuned, const SineEditConfig& config,
                        const StepCallback& on_step = {});

}  // namespace sine
