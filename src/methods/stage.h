#pragma once
#include <functional>
#include <string>

#include "core/progress.h"
#include "diffusion/sampler.h"

// The stages of a multi-stage method run ("ddim invert", "null-text", "p2p edit", "stage I", ...):
// each has its own progress bar, and the caller (the CLI, a server job) hears when one begins.
namespace sine {

// A new stage begins with `total` steps.
using StageCallback = std::function<void(const std::string& stage, int64_t total)>;

// Runs `body(step_callback)` as the stage `name`: tells `on_stage`, draws a progress bar, and
// forwards every step to `on_step` (which may throw to cancel).
template <typename F>
auto run_stage(const std::string& name, int64_t total, bool progress, const StageCallback& on_stage,
               const StepCallback& on_step, F&& body) {
  if (on_stage) on_stage(name, total);
  ProgressBar bar(name, total, progress);
  auto result = body([&](int64_t done, int64_t of) {
    bar.update(done);
    if (on_step) on_step(done, of);
  });
  bar.finish();
  return result;
}

}  // namespace sine
