#include "methods/real_image_edit.h"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "core/progress.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "methods/ddim_inversion.h"
#include "methods/local_blend.h"
#include "methods/null_text_inversion.h"
#include "methods/word_alignment.h"

namespace sine {

namespace {

constexpr const char* kInversionFormat = "sine-inversion";

std::string fixed(double v, int precision) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

void require_finite(const char* field, double v) {
  if (!std::isfinite(v)) throw Error(std::string(field) + ": must be a finite number (got " + std::to_string(v) + ")");
}

void require_in(const char* field, double v, double lo, double hi) {
  require_finite(field, v);
  if (v < lo || v > hi)
    throw Error(std::string(field) + ": must be in [" + fixed(lo, 2) + ", " + fixed(hi, 2) + "] (got " + fixed(v, 4) + ")");
}

// The whole of `text` as a finite number; errors name `field`.
double parse_finite(const char* field, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v))
    throw Error(std::string(field) + ": '" + text + "' is not a finite number");
  return v;
}

void require_steps(int64_t steps) {
  if (steps < 1 || steps > 1000) throw Error("steps: must be in [1, 1000] (got " + std::to_string(steps) + ")");
}

// Runs one stage: a progress bar, the caller's stage and step callbacks.
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

}  // namespace

DDIMConfig ddim_schedule(const std::string& name) {
  if (name == "null-text" || name == "p2p") return DDIMConfig::null_text_inversion();
  if (name == "specref") return DDIMConfig::specref();
  if (name == "sd") return DDIMConfig::stable_diffusion();
  throw Error("schedule: unknown schedule '" + name + "' (known: null-text, specref, sd)");
}

void save_inversion(const std::string& path, const Inversion& inversion) {
  if (inversion.latents.size() < 2) throw Error(path + ": an inversion needs at least one step");
  const DDIMConfig ddim = inversion.ddim();
  std::map<std::string, std::string> meta = inversion.info;
  meta["format"] = kInversionFormat;
  meta["prompt"] = inversion.prompt;
  meta["steps"] = std::to_string(inversion.steps());
  meta["schedule"] = inversion.schedule;
  meta["steps_offset"] = std::to_string(ddim.steps_offset);
  meta["set_alpha_to_one"] = ddim.set_alpha_to_one ? "true" : "false";
  meta["inversion_guidance"] = "1";
  std::map<std::string, torch::Tensor> tensors{{"latents", torch::cat(inversion.latents).cpu()}};
  if (!inversion.null_embeddings.empty()) tensors["null_embeddings"] = torch::cat(inversion.null_embeddings).cpu();
  save_safetensors(path, tensors, meta);
}

Inversion load_inversion(const std::string& path, const torch::Device& device) {
  if (!std::filesystem::exists(path)) throw Error(path + ": no such file");
  auto st = SafeTensors::open(path);
  const auto& meta = st.metadata();
  auto format = meta.find("format");
  if (format != meta.end() && format->second != kInversionFormat)
    throw Error(path + ": not an inversion file (format '" + format->second + "', expected '" + kInversionFormat + "')");
  if (!st.contains("latents")) throw Error(path + ": no 'latents' tensor (not written by `sine invert`?)");
  const auto& shape = st.info("latents").shape;
  if (shape.size() != 4 || shape[0] < 2 || shape[1] != 4)
    throw Error(path + ": 'latents' must be [steps+1, 4, h, w] with at least one step");
  Inversion inv;
  for (const auto& [key, value] : meta)
    if (key != "format" && key != "prompt" && key != "steps" && key != "schedule") inv.info[key] = value;
  if (meta.count("prompt")) inv.prompt = meta.at("prompt");
  if (meta.count("schedule")) {
    inv.schedule = meta.at("schedule");
    try {
      ddim_schedule(inv.schedule);
    } catch (const Error& e) {
      throw Error(path + ": " + e.what());
    }
  }
  auto all = st.get("latents").to(torch::kFloat32);
  for (int64_t i = 0; i < all.size(0); ++i) inv.latents.push_back(all.narrow(0, i, 1).to(device));
  if (st.contains("null_embeddings")) {
    const auto& es = st.info("null_embeddings").shape;
    if (es.size() != 3 || es[0] != inv.steps())
      throw Error(path + ": 'null_embeddings' must be [" + std::to_string(inv.steps()) + ", 77, C] (one per step)");
    auto e = st.get("null_embeddings").to(torch::kFloat32);
    for (int64_t i = 0; i < e.size(0); ++i) inv.null_embeddings.push_back(e.narrow(0, i, 1));
  }
  return inv;
}

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
