#include "methods/method_parameters.h"

namespace sine {

namespace {

// The fields every image shares, in A1111's order.
GenerationParameters common(const Pipeline& pipeline, const std::string& prompt, const std::string& negative,
                            int64_t steps, double cfg_scale, int64_t seed, int64_t height, int64_t width) {
  GenerationParameters p;
  p.prompt = prompt;
  p.negative_prompt = negative;
  p.set("Steps", steps).set("Sampler", "DDIM").set("CFG scale", cfg_scale);
  if (seed >= 0) p.set("Seed", seed);
  p.set("Size", std::to_string(width) + "x" + std::to_string(height));
  if (const auto hash = pipeline.model_hash(); !hash.empty()) p.set("Model hash", hash);
  p.set("Model", pipeline.model_name());
  return p;
}

void finish(GenerationParameters& p) { p.set("Version", std::string("sine ") + SINE_VERSION); }

}  // namespace

GenerationParameters sine_edit_parameters(const Pipeline& pretrained, const SineEditConfig& c,
                                          const std::vector<SineBranch>& branches,
                                          const std::vector<std::string>& finetunes, int64_t height, int64_t width) {
  auto p = common(pretrained, c.edit_prompt, "", c.steps, c.scale, static_cast<int64_t>(c.seed), height, width);
  p.set("SINE mode", sine_edit_mode_name(c.mode));
  for (size_t i = 0; i < branches.size(); ++i) {
    const std::string n = branches.size() > 1 ? " " + std::to_string(i + 1) : "";
    const auto& b = branches[i];
    if (i < finetunes.size()) p.set("SINE finetune" + n, finetunes[i]);
    p.set("SINE desc" + n, b.prompt);
    p.set("SINE K" + n, b.K);
    if (branches.size() == 1)
      p.set("SINE v", sine_v(branches));  // the paper's v: one fine-tuned model, β = 1 − v
    else
      p.set("SINE beta" + n, b.beta);
    p.set("SINE grid" + n, b.grid ? "stretched" : "none");
  }
  finish(p);
  return p;
}

GenerationParameters insert_parameters(const Pipeline& pipeline, const GenerateOptions& o,
                                       const std::vector<Concept>& concepts, const std::vector<std::string>& names,
                                       const std::vector<double>& scales, int64_t height, int64_t width) {
  auto p = common(pipeline, o.prompt, o.negative_prompt, o.steps, o.cfg_scale, static_cast<int64_t>(o.seed), height,
                  width);
  std::string list;
  for (size_t i = 0; i < concepts.size() && i < names.size(); ++i)
    list += (i ? ", " : "") + concepts[i].token + "=" + names[i] + (scales.empty() ? "" : "@" + std::to_string(scales[i]));
  p.set("SingleInsert concepts", list);
  finish(p);
  return p;
}

GenerationParameters specref_parameters(const Pipeline& pipeline, const specref::SpecRefInputs& in,
                                        const specref::SpecRefConfig& c, bool ms_derived, int64_t height,
                                        int64_t width) {
  auto p = common(pipeline, in.target_prompt, "", c.steps, c.cfg_scale, -1, height, width);
  std::string words;
  for (const auto& w : in.edit_words) words += (words.empty() ? "" : ",") + w;
  p.set("SpecRef source prompt", in.source_prompt).set("SpecRef words", words);
  p.set("SpecRef masks", specref::mask_mode_name(c.sr.mask_mode));
  p.set("SpecRef M_s", ms_derived ? "derived" : "given");
  p.set("SpecRef SR steps", std::to_string(c.sr.sr_start) + "-" + std::to_string(c.sr.sr_end - 1));
  p.set("SpecRef threshold", c.sr.threshold);
  p.set("P2P edit", p2p::edit_kind_name(c.p2p.kind));
  p.set("LocalBlend", c.local_blend ? "on" : "off");
  finish(p);
  return p;
}

GenerationParameters invert_parameters(const Pipeline& pipeline, const InvertConfig& config) {
  GenerationParameters p;
  p.prompt = config.prompt;
  p.set("Steps", config.steps).set("Sampler", config.null_text ? "DDIM inversion + null-text" : "DDIM inversion");
  p.set("CFG scale", config.null_text ? config.cfg_scale : 1.0).set("Model", pipeline.model_name());
  return p;
}

GenerationParameters p2p_parameters(const Pipeline& pipeline, const std::string& source, const std::string& target,
                                    const p2p::ControllerConfig& controller, int64_t steps, double cfg_scale,
                                    bool local_blend, const std::string& path, int64_t height, int64_t width) {
  auto p = common(pipeline, target, "", steps, cfg_scale, -1, height, width);
  p.set("P2P source prompt", source).set("P2P edit", p2p::edit_kind_name(controller.kind));
  p.set("P2P cross replace", controller.cross_replace.second).set("P2P self replace", controller.self_replace.second);
  if (!controller.equalizer.empty()) {
    std::string reweight;
    for (const auto& [word, factor] : controller.equalizer)
      reweight += (reweight.empty() ? "" : ",") + word + "=" + std::to_string(factor);
    p.set("P2P reweight", reweight);
  }
  p.set("LocalBlend", local_blend ? "on" : "off");
  p.set("P2P path", path);
  finish(p);
  return p;
}

}  // namespace sine
