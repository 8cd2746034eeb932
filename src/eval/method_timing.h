#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

// `sine bench --methods` and the GPU device check: each method's unit of work timed on the pipeline
// given (SD 1.5-size random weights on a GPU, the tiny test model in a CPU dry run), with inputs made
// here (a red disc on white as the source, a blue disc on gray as SpecRef's reference, their exact
// masks) and shapes-world captions. Rows, each in a peak-memory window of its own:
//   SINE fine-tune step, full UNet + text encoder with gradient checkpointing (whole image)
//   SINE fine-tune step, LoRA (whole image)
//   SINE edit, per sampling step (model-based guidance with one fine-tuned branch)
//   SingleInsert stage I step, stage II step, and one concept at the default step counts
//   SpecRef, one edit (joint inversion + edit with the reference)
// The SINE rows train the pipeline's weights in place (a few steps at the official lr); the rest
// comes back as it was (adapters, requires_grad, train/eval mode, gradient checkpointing), with no
// gradients left on the parameters.
namespace sine {

struct MethodTimingOptions {
  int64_t steps = 3;          // timed steps per training variant (after the warm-up)
  int64_t image_size = 0;     // 0 = the model's native size (pipeline.native_size())
  int64_t edit_steps = 10;    // sampling steps of the SpecRef edit / SINE edit timings
  int64_t lora_rank = 4;      // of the SINE LoRA fine-tune
  uint64_t seed = 0;
};

struct MethodTiming {
  std::string what;
  double seconds = 0;   // per step or per edit, as `what` says
  double peak_gb = 0;   // peak_memory_bytes over the row's window (CPU: the process's peak RSS so far)
  std::string note;
};

// Runs every row (progress bars off meanwhile). Invalid options are a sine::Error naming the field.
std::vector<MethodTiming> time_methods(Pipeline& pipeline, const MethodTimingOptions& options);

}  // namespace sine
