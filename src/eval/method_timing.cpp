#include "eval/method_timing.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <memory>

#include "core/device.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/sine_bench.h"
#include "methods/sine/sine_edit.h"
#include "methods/sine/sine_finetune.h"
#include "methods/singleinsert/single_insert.h"
#include "methods/specref/specref.h"
#include "models/lora_linear.h"

namespace sine {

namespace {

using Clock = std::chrono::steady_clock;

// Shapes-world captions (words every tokenizer here has, the tiny test one included).
const std::string kSourceCaption = "a red circle in the center on a white background";
const std::string kSpecRefTarget = "a blue star in the center on a white background";
const std::string kSineEditPrompt = "a blue circle in the center on a white background";
// The class word time_sine_finetune trains with ("photo of a sks thing").
const std::string kSineClass = "thing";

std::string num(double v, int precision = 3) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

std::string px(int64_t size) { return std::to_string(size) + "x" + std::to_string(size) + " px"; }

// Progress bars off for the object's lifetime (also when a row throws).
struct ProgressOff {
  bool was = progress_enabled();
  ProgressOff() { set_progress_enabled(false); }
  ~ProgressOff() { set_progress_enabled(was); }
};

// Wall time and peak memory of `work` in a window of its own: the device's queued work is finished
// before the clock starts and before it stops.
struct Measured {
  double seconds = 0, peak_gb = 0;
};
template <class F>
Measured measure(const torch::Device& device, F&& work) {
  synchronize(device);
  reset_peak_memory(device);
  const auto start = Clock::now();
  work();
  synchronize(device);
  Measured m;
  m.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  m.peak_gb = peak_memory_bytes(device) / 1e9;
  return m;
}

// A disc of `rgb` (diameter half the side) centred at (cx, cy), fractions of the side, on a plain
// `background`: uint8 [size, size, 3], and its mask, float [size, size] in {0, 1}.
struct Picture {
  torch::Tensor image, mask;
};
Picture disc(int64_t size, std::array<int, 3> rgb, std::array<int, 3> background, double cx, double cy) {
  const torch::Tensor coord = (torch::arange(size, torch::kFloat32) + 0.5) / static_cast<double>(size);
  const torch::Tensor dx = coord.view({1, size}) - cx, dy = coord.view({size, 1}) - cy;
  const torch::Tensor inside = (dx * dx + dy * dy).le(0.25 * 0.25);  // bool [size, size]
  auto color = [](const std::array<int, 3>& c) {
    return torch::tensor({c[0], c[1], c[2]}, torch::kUInt8).view({1, 1, 3});
  };
  Picture p;
  p.image = torch::where(inside.unsqueeze(-1), color(rgb), color(background)).contiguous();
  p.mask = inside.to(torch::kFloat32);
  return p;
}

// What the training rows change on the model besides its weights, put back: time_sine_finetune's
// LoRA adapters stay attached after its finetuner is gone (the projections keep the handles), the
// parameters keep their last gradients (the full fine-tune's: the size of the UNet and text
// encoder), the trainers set requires_grad, train/eval mode and gradient checkpointing.
class ModelState {
 public:
  explicit ModelState(StableDiffusion& model)
      : model_(model), training_(model->is_training()), checkpointing_(model->unet->gradient_checkpointing()) {
    for (const auto& m : model_->modules(/*include_self=*/false))
      if (auto linear = std::dynamic_pointer_cast<AdaptableLinearImpl>(m))
        adapters_.emplace_back(linear, linear->adapters.size());
    for (const auto& p : model_->parameters()) requires_grad_.push_back(p.requires_grad());
  }
  void restore() {
    for (auto& [linear, n] : adapters_)
      linear->adapters.erase(linear->adapters.begin() + static_cast<std::ptrdiff_t>(n), linear->adapters.end());
    size_t i = 0;
    for (auto& p : model_->parameters()) {
      p.mutable_grad() = torch::Tensor();
      p.requires_grad_(requires_grad_[i++]);
    }
    model_->unet->set_gradient_checkpointing(checkpointing_);
    model_->train(training_);
  }

 private:
  StableDiffusion& model_;
  bool training_, checkpointing_;
  std::vector<std::pair<std::shared_ptr<AdaptableLinearImpl>, size_t>> adapters_;
  std::vector<bool> requires_grad_;
};

// ---------------------------------------------------------------------------------------------
// Rows

// SINE stage 1, whole image at the model's size: full (every UNet and text-encoder weight, with
// gradient checkpointing) when lora_rank is 0, else LoRA adapters only.
MethodTiming sine_finetune_row(Pipeline& pipeline, int64_t lora_rank, int64_t steps,
                               torch::ScalarType optimizer_state = torch::kFloat32) {
  const bool lora = lora_rank > 0;
  const SineStepTiming t = time_sine_finetune(pipeline, SineMode::Whole, lora_rank, /*checkpointing=*/!lora, steps,
                                              SineFinetuneConfig{}.lr, optimizer_state);
  MethodTiming r;
  r.what = lora ? "SINE fine-tune step (LoRA r" + std::to_string(lora_rank) + ")"
                : std::string("SINE fine-tune step (full, grad ckpt") +
                      (optimizer_state == torch::kBFloat16 ? ", bf16 AdamW state)" : ")");
  r.seconds = t.seconds_per_step;
  r.peak_gb = t.peak_memory_gb;
  r.note = t.label + " at " + px(pipeline.native_size()) + ": s/step over " + std::to_string(steps) +
           " steps after 2 warm-up; " + num(static_cast<double>(t.trainable) / 1e6, 2) + "M trainable, " +
           num(t.state_gb, 2) + " GB weights+grads+masters+AdamW";
  return r;
}

// SINE stage 2: the pre-trained model with the edit prompt guided by one fine-tuned branch. The
// branch is the pipeline itself (its weights after the fine-tune rows) with the training prompt:
// the UNet work per step of a real edit, which holds a second model beside it.
MethodTiming sine_edit_row(Pipeline& pipeline, int64_t size, int64_t steps, uint64_t seed) {
  const SineBranch branch{&pipeline, nullptr, sine_training_prompt(SineFinetuneConfig{}.prompt_template, kSineClass),
                          0.3, 400};
  SineEditConfig c;
  c.edit_prompt = kSineEditPrompt;
  c.width = c.height = size;
  c.seed = seed;
  c.steps = 1;
  sine_edit_latents(pipeline, {branch}, c);  // warm-up (the sampling shapes)
  c.steps = steps;
  const Measured m = measure(pipeline.device(), [&] { sine_edit_latents(pipeline, {branch}, c); });
  MethodTiming r;
  r.what = "SINE edit, per sampling step";
  r.seconds = m.seconds / static_cast<double>(steps);
  r.peak_gb = m.peak_gb;
  r.note = std::to_string(steps) + " DDIM steps at " + px(size) + ", K " + std::to_string(branch.K) + ", v " +
           num(1.0 - branch.beta, 1) + ": 3 UNet calls per step while t >= K, else 2; no decode; fine-tuned branch = " +
           "this pipeline (peak excludes a second model's weights)";
  return r;
}

// SingleInsert: stage I (image encoder, UNet and text encoder frozen) and stage II (encoder + LoRA)
// steps at the default config (batch, rank), and one concept at its default step counts.
std::vector<MethodTiming> single_insert_rows(Pipeline& pipeline, const Picture& source, int64_t steps,
                                             uint64_t seed) {
  const SingleInsertConfig official{};
  SingleInsertConfig c;
  c.class_word = "circle";
  c.seed = seed;
  c.stage1_steps = c.stage2_steps = 1 + steps;  // one warm-up step, then the timed ones
  const torch::Device device = pipeline.device();
  SingleInsertTrainer trainer(pipeline, source.image, source.mask.unsqueeze(0).unsqueeze(0), c);
  trainer.run_stage1(1);
  const Measured s1 = measure(device, [&] { trainer.run_stage1(); });
  trainer.begin_stage2();
  trainer.run_stage2(1);
  const Measured s2 = measure(device, [&] { trainer.run_stage2(); });

  const std::string at = " at " + px(source.image.size(0)) + ", batch " + std::to_string(c.batch);
  const std::string timed = ": s/step over " + std::to_string(steps) + " steps after 1 warm-up";
  MethodTiming stage1{"SingleInsert stage I step", s1.seconds / static_cast<double>(steps), s1.peak_gb,
                      "image encoder trained" + at + timed};
  MethodTiming stage2{"SingleInsert stage II step", s2.seconds / static_cast<double>(steps), s2.peak_gb,
                      "encoder + LoRA r" + std::to_string(c.lora_rank) + " (UNet + text attention)" + at + timed};
  MethodTiming concept_row{
      "SingleInsert, one concept", static_cast<double>(official.stage1_steps) * stage1.seconds +
                                       static_cast<double>(official.stage2_steps) * stage2.seconds,
      std::max(s1.peak_gb, s2.peak_gb),
      std::to_string(official.stage1_steps) + " stage I + " + std::to_string(official.stage2_steps) +
          " stage II steps (SingleInsertConfig defaults) x the step times above; not run as such"};
  return {stage1, stage2, concept_row};
}

// SpecRef: joint inversion of [source, reference] and the edit with SR-attention, M_s given (the
// reference disc), SR steps the official 4..50 of 50 scaled to `steps`.
MethodTiming specref_row(Pipeline& pipeline, const Picture& source, const Picture& reference, int64_t steps) {
  specref::SpecRefInputs in;
  in.source = source.image;
  in.reference = reference.image;
  in.ms_pixels = reference.mask;
  in.source_prompt = kSourceCaption;
  in.target_prompt = kSpecRefTarget;
  in.edit_words = {"star"};
  specref::SpecRefConfig c;
  c.blend.source_words = {"red", "circle"};
  c.blend.target_words = {"blue", "star"};
  auto set_steps = [&](int64_t n) {
    c.steps = n;
    c.sr.sr_start = std::min<int64_t>(4 * n / 50, n - 1);
    c.sr.sr_end = n;
  };
  set_steps(1);
  specref::run_specref(pipeline, in, c, /*progress=*/false);  // warm-up (the batch shapes)
  set_steps(steps);
  specref::SpecRefResult result;
  const Measured m = measure(pipeline.device(), [&] { result = specref::run_specref(pipeline, in, c, false); });
  MethodTiming r;
  r.what = "SpecRef, one edit";
  r.seconds = m.seconds;
  r.peak_gb = m.peak_gb;
  r.note = std::to_string(steps) + " steps at " + px(source.image.size(0)) + ", SR steps " +
           std::to_string(c.sr.sr_start) + "-" + std::to_string(c.sr.sr_end - 1) + ": joint inversion " +
           num(result.invert_seconds, 2) + " s + edit " + num(result.edit_seconds, 2) + " s; reference K/V cache " +
           num(static_cast<double>(result.cache_bytes) / 1048576.0, 2) + " MiB fp16 (" +
           std::to_string(result.cache_entries) + " entries)";
  return r;
}

}  // namespace

std::vector<MethodTiming> time_methods(Pipeline& pipeline, const MethodTimingOptions& o) {
  if (o.steps < 1) throw Error("method timing: steps must be at least 1 (got " + std::to_string(o.steps) + ")");
  if (o.edit_steps < 1)
    throw Error("method timing: edit_steps must be at least 1 (got " + std::to_string(o.edit_steps) + ")");
  if (o.lora_rank < 1)
    throw Error("method timing: lora_rank must be at least 1 (got " + std::to_string(o.lora_rank) + ")");
  const int64_t f = pipeline.vae_factor();
  if (o.image_size < 0 || o.image_size % f)
    throw Error("method timing: image_size must be 0 (the model's size) or a positive multiple of the VAE factor " +
                std::to_string(f) + " (got " + std::to_string(o.image_size) + ")");
  const int64_t size = o.image_size > 0 ? o.image_size : pipeline.native_size();
  ProgressOff quiet;

  // A red disc in the center on white; the reference, a blue disc on the left on gray.
  const Picture source = disc(size, {220, 30, 30}, {255, 255, 255}, 0.5, 0.5);
  const Picture reference = disc(size, {20, 40, 230}, {128, 128, 128}, 0.3, 0.5);

  std::vector<MethodTiming> rows;
  ModelState state(pipeline.model());
  rows.push_back(sine_finetune_row(pipeline, 0, o.steps));
  state.restore();
  rows.push_back(sine_finetune_row(pipeline, 0, o.steps, torch::kBFloat16));
  state.restore();
  rows.push_back(sine_finetune_row(pipeline, o.lora_rank, o.steps));
  state.restore();
  rows.push_back(sine_edit_row(pipeline, size, o.edit_steps, o.seed));
  for (MethodTiming& r : single_insert_rows(pipeline, source, o.steps, o.seed)) rows.push_back(std::move(r));
  rows.push_back(specref_row(pipeline, source, reference, o.edit_steps));
  state.restore();  // SingleInsert froze the model and set eval mode
  return rows;
}

}  // namespace sine
