#include "methods/inversion/invert_image.h"

#include "core/error.h"
#include "core/validate.h"
#include "io/image.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/inversion/null_text_inversion.h"

namespace sine {

void InvertConfig::validate() const {
  if (prompt.empty()) throw Error("prompt: required (the image's caption)");
  require_steps(steps);
  ddim_schedule(schedule);
  require_in("cfg_scale", cfg_scale, 0.0, 100.0);
  if (inner_steps < 1 || inner_steps > 1000)
    throw Error("inner_steps: must be in [1, 1000] (got " + std::to_string(inner_steps) + ")");
  require_in("early_stop", early_stop, 0.0, 1.0);
}

InvertResult invert_image(Pipeline& pipe, const torch::Tensor& image, const InvertConfig& config, bool progress,
                          const StageCallback& on_stage, const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  config.validate();
  InversionOptions inv;
  inv.steps = config.steps;
  inv.ddim = ddim_schedule(config.schedule);
  auto z0 = pipe.encode_image(image);
  auto cond = pipe.encode_prompt(config.prompt);
  auto uncond = pipe.encode_prompt("");
  InvertResult r;
  r.inversion.prompt = config.prompt;
  r.inversion.schedule = config.schedule;
  r.inversion.latents = run_stage("ddim invert", config.steps, progress, on_stage, on_step, [&](const StepCallback& cb) {
    return ddim_invert(pipe, z0, cond, inv, {}, cb);
  });
  const auto& latents = r.inversion.latents;
  auto target = to_model_input(image);
  r.psnr_vae = psnr(pipe.decode_latents(z0), target);
  auto rec1 = pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, 1.0, inv));
  r.psnr_guidance1 = psnr(rec1, target);
  r.psnr_guidance = psnr(pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, config.cfg_scale, inv)), target);
  r.inversion.info["psnr_guidance1"] = fixed(r.psnr_guidance1, 3);
  r.inversion.info["model"] = pipe.model_name();
  torch::Tensor recon = rec1;
  if (config.null_text) {
    NullTextOptions nt;
    nt.inner_steps = config.inner_steps;
    nt.guidance = config.cfg_scale;
    nt.early_stop_epsilon = config.early_stop;
    auto opt = run_stage("null-text", config.steps, progress, on_stage, on_step, [&](const StepCallback& cb) {
      return null_text_inversion(pipe, latents, cond, uncond, inv, nt, cb);
    });
    recon = pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, config.cfg_scale, inv, opt.embeddings));
    r.psnr_null_text = psnr(recon, target);
    for (auto i : opt.iterations) r.adam_steps += i;
    r.inversion.null_embeddings = std::move(opt.embeddings);
    r.inversion.info["null_text_guidance"] = fixed(config.cfg_scale, 3);
    r.inversion.info["null_text_inner_steps"] = std::to_string(config.inner_steps);
    r.inversion.info["psnr_null_text"] = fixed(r.psnr_null_text, 3);
  }
  r.reconstruction = from_model_output(recon[0]);
  return r;
}

}  // namespace sine
