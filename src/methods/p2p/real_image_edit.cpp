#include "methods/p2p/real_image_edit.h"

#include <memory>

#include "core/error.h"
#include "core/validate.h"
#include "io/image.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/inversion/null_text_inversion.h"
#include "methods/p2p/local_blend.h"
#include "methods/p2p/word_alignment.h"

namespace sine {

void P2PEditConfig::validate(const ClipTokenizer& tokenizer) const {
  if (source.empty()) throw Error("prompt: required (the source image's caption)");
  if (target.empty()) throw Error("target: required (the edited prompt)");
  require_steps(steps);
  require_in("cfg_scale", cfg_scale, 0.0, 100.0);
  require_in("cross_replace", cross_replace, 0.0, 1.0);
  require_in("self_replace", self_replace, 0.0, 1.0);
  require_in("blend_threshold", blend_threshold, 0.0, 1.0);
  require_in("blend_start", blend_start, 0.0, 1.0);
  for (const auto& [word, factor] : reweight) require_in("reweight", factor, -100.0, 100.0);
  for (const auto& [word, b] : cross_replace_words) {
    require_in("cross_replace_words", b.first, 0.0, 1.0);
    require_in("cross_replace_words", b.second, 0.0, 1.0);
  }
  if (path != "auto" && path != "latents" && path != "null-text")
    throw Error("path: unknown reconstruction path '" + path + "' (known: auto, latents, null-text)");
  if (inner_steps < 1 || inner_steps > 1000)
    throw Error("inner_steps: must be in [1, 1000] (got " + std::to_string(inner_steps) + ")");
  const auto kind = p2p::choose_edit_kind(edit, source, target);
  if (kind == p2p::EditKind::replace && p2p::split_words(source).size() != p2p::split_words(target).size())
    throw Error("edit: replace (word swap) needs prompts with the same number of words; use refine");
  for (const auto& [word, factor] : reweight)
    if (p2p::word_indices(tokenizer, target, word).empty())
      throw Error("reweight: '" + word + "' is not a word of the target prompt '" + target + "'");
  if (local_blend || !blend_words.empty()) p2p::LocalBlendConfig::for_prompts(blend_words, source, target);
}

P2PEditResult p2p_edit_image(Pipeline& pipe, const torch::Tensor& image, const P2PEditConfig& config,
                             const Inversion* inversion, bool progress, const StageCallback& on_stage,
                             const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  config.validate(pipe.tokenizer());
  auto z0 = pipe.encode_image(image);
  auto cond = pipe.encode_prompt(config.source);
  InversionOptions inv;
  inv.steps = config.steps;
  inv.ddim = DDIMConfig::null_text_inversion();
  p2p::ReconstructionPath path;
  std::vector<torch::Tensor> latents;
  if (inversion) {
    if (inversion->steps() != config.steps)
      throw Error("inversion: holds " + std::to_string(inversion->steps()) + " steps, steps is " +
                  std::to_string(config.steps));
    if (inversion->latents[0].sizes() != z0.sizes())
      throw Error("inversion: its latents are " + std::to_string(inversion->latents[0].size(3) * pipe.vae_factor()) + "x" +
                  std::to_string(inversion->latents[0].size(2) * pipe.vae_factor()) + " pixels, the image is " +
                  std::to_string(image.size(1)) + "x" + std::to_string(image.size(0)));
    inv.ddim = inversion->ddim();
    for (const auto& z : inversion->latents) latents.push_back(z.to(pipe.device()));
    path.null_embeddings = inversion->null_embeddings;
  } else {
    latents = run_stage("ddim invert", config.steps, progress, on_stage, on_step, [&](const StepCallback& cb) {
      return ddim_invert(pipe, z0, cond, inv, {}, cb);
    });
  }
  P2PEditResult r;
  r.null_text_path =
      config.path == "null-text" || (config.path == "auto" && (config.null_text || !path.null_embeddings.empty()));
  if (r.null_text_path && path.null_embeddings.empty()) {
    NullTextOptions nt;
    nt.inner_steps = config.inner_steps;
    nt.guidance = config.cfg_scale;
    path.null_embeddings = run_stage("null-text", config.steps, progress, on_stage, on_step, [&](const StepCallback& cb) {
      return null_text_inversion(pipe, latents, cond, pipe.encode_prompt(""), inv, nt, cb).embeddings;
    });
  }
  if (!r.null_text_path) {
    path.null_embeddings.clear();
    path.inversion_latents = latents;
  }
  const auto rules = edit_layer_rules(pipe.config().unet, z0.size(2), z0.size(3));
  auto& pc = r.controller;
  pc.kind = p2p::choose_edit_kind(config.edit, config.source, config.target);
  pc.cross_replace = {0.0, config.cross_replace};
  pc.self_replace = {0.0, config.self_replace};
  pc.equalizer = config.reweight;
  pc.cross_replace_words = config.cross_replace_words;
  pc.num_steps = config.steps;
  p2p::Controller controller(pipe.tokenizer(), config.source, config.target, pc, rules.store_max_pixels);
  std::unique_ptr<p2p::LocalBlend> blend;
  if (config.local_blend || !config.blend_words.empty()) {
    auto bc = p2p::LocalBlendConfig::for_prompts(config.blend_words, config.source, config.target,
                                                 config.blend_threshold, config.blend_start);
    bc.source_substruct = config.blend_substruct_source;
    bc.target_substruct = config.blend_substruct_target;
    blend = std::make_unique<p2p::LocalBlend>(pipe.tokenizer(), config.source, config.target, bc, rules, config.steps);
  }
  p2p::EditOptions eo;
  eo.steps = config.steps;
  eo.cfg_scale = config.cfg_scale;
  eo.ddim = inv.ddim;
  auto x = run_stage("p2p edit", config.steps, progress, on_stage, on_step, [&](const StepCallback& cb) {
    return p2p::edit_latents(pipe, config.source, config.target, latents.back(), &controller, &controller.store(),
                             blend.get(), path, eo, cb);
  });
  auto images = pipe.decode_latents(x);
  r.psnr_reconstruction = psnr(images[0], to_model_input(image));
  r.reconstruction = from_model_output(images[0]);
  r.edited = from_model_output(images[1]);
  r.blended = blend != nullptr;
  if (blend && blend->last_mask().defined()) {
    namespace F = torch::nn::functional;
    auto m = blend->last_mask()[1][0].to(torch::kFloat32).cpu();
    r.blend_mask = F::interpolate(m.view({1, 1, m.size(0), m.size(1)}),
                                  F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{image.size(0), image.size(1)})
                                      .mode(torch::kNearest))
                       .view({image.size(0), image.size(1)});
  }
  return r;
}

std::map<std::string, float> parse_reweight(const std::string& text) {
  std::map<std::string, float> out;
  for (const auto& item : split_list(text)) {
    auto eq = item.find('=');
    if (eq == std::string::npos) throw Error("reweight: expected word=factor, got '" + item + "'");
    out[item.substr(0, eq)] = static_cast<float>(parse_finite("reweight", item.substr(eq + 1)));
  }
  return out;
}

std::map<std::string, p2p::Bounds> parse_cross_replace_words(const std::string& text) {
  std::map<std::string, p2p::Bounds> out;
  auto number = [](const std::string& s) { return parse_finite("cross_replace_words", s); };
  for (const auto& item : split_list(text)) {
    auto eq = item.find('=');
    if (eq == std::string::npos)
      throw Error("cross_replace_words: expected word=end or word=start:end, got '" + item + "'");
    const std::string value = item.substr(eq + 1);
    auto colon = value.find(':');
    out[item.substr(0, eq)] = colon == std::string::npos
                                  ? p2p::Bounds{0.0, number(value)}
                                  : p2p::Bounds{number(value.substr(0, colon)), number(value.substr(colon + 1))};
  }
  return out;
}

}  // namespace sine
