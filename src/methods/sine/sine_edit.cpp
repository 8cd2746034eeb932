#include "methods/sine/sine_edit.h"

#include "core/error.h"
#include "core/torch_compat.h"
#include "pipeline/memory_estimate.h"
#include "io/image.h"

namespace sine {

double sine_beta(double v, size_t models) { return (1.0 - v) / static_cast<double>(models); }

double sine_v(const std::vector<SineBranch>& branches) {
  double sum = 0;
  for (const auto& b : branches) sum += b.beta;
  return 1.0 - sum;
}

SineEditMode parse_sine_edit_mode(const std::string& name) {
  if (name == "sine") return SineEditMode::Sine;
  if (name == "no-guidance") return SineEditMode::NoGuidance;
  if (name == "pretrained") return SineEditMode::Pretrained;
  throw Error("mode: unknown edit mode '" + name + "' (use sine, no-guidance or pretrained)");
}

const char* sine_edit_mode_name(SineEditMode mode) {
  switch (mode) {
    case SineEditMode::NoGuidance: return "no-guidance";
    case SineEditMode::Pretrained: return "pretrained";
    default: return "sine";
  }
}

torch::Tensor sine_edit_latents(Pipeline& pretrained, const std::vector<SineBranch>& finetuned,
                                const SineEditConfig& c, const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  const int64_t f = pretrained.vae_factor();
  if (c.width > 65536) throw Error("width: must be in [0, 65536] (got " + std::to_string(c.width) + ")");
  if (c.height > 65536) throw Error("height: must be in [0, 65536] (got " + std::to_string(c.height) + ")");
  const auto [height, width] = pretrained.canvas(c.height, c.width);
  if (!c.force)  // every branch runs the UNet on a batch of one, one after another
    check_fits(estimate_generation_memory(pretrained.config(), pretrained.dtype(), height, width, 1, compat::has_sdpa),
               pretrained.device(), "width: an image of " + std::to_string(width) + "x" + std::to_string(height));
  if (c.mode != SineEditMode::Pretrained && finetuned.empty())
    throw Error("sine edit: mode " + std::string(sine_edit_mode_name(c.mode)) + " needs a fine-tuned model");
  const int64_t h = height / f, w = width / f;
  auto grid_for = [&](const SineBranch& b) {
    return b.grid ? b.grid->stretched(h, w) : torch::Tensor();
  };

  GuidanceSources sources;
  if (c.mode == SineEditMode::NoGuidance) {
    // Ablation: the (first) fine-tuned model alone with the edit prompt, its own grid.
    const SineBranch& b = finetuned.front();
    const torch::Tensor grid = grid_for(b);
    sources.uncond = pipeline_eps(*b.pipeline, b.pipeline->encode_prompt(""), grid);
    sources.edit = pipeline_eps(*b.pipeline, b.pipeline->encode_prompt(c.edit_prompt), grid);
  } else {
    // The pre-trained branches never see a grid; only each fine-tuned branch gets its own.
    sources.uncond = pipeline_eps(pretrained, pretrained.encode_prompt(""));
    sources.edit = pipeline_eps(pretrained, pretrained.encode_prompt(c.edit_prompt));
    if (c.mode == SineEditMode::Sine)
      for (const SineBranch& b : finetuned)
        sources.finetuned.push_back(
            FinetunedBranch{pipeline_eps(*b.pipeline, b.pipeline->encode_prompt(b.prompt), grid_for(b)), b.beta, b.K});
  }
  torch::Generator gen = pretrained.make_generator(c.seed);
  torch::Tensor x_T = pretrained.randn({1, pretrained.config().unet.in_channels, h, w}, gen);
  return sine_sample(sources, x_T, SineSamplingConfig{c.steps, c.scale}, on_step);
}

torch::Tensor sine_edit(Pipeline& pretrained, const std::vector<SineBranch>& finetuned, const SineEditConfig& c,
                        const StepCallback& on_step) {
  auto latents = sine_edit_latents(pretrained, finetuned, c, on_step);
  return from_model_output(pretrained.decode_latents(latents));
}

}  // namespace sine
