#include "methods/p2p/prompt_to_prompt.h"

#include "core/error.h"
#include "diffusion/guidance.h"
#include "diffusion/sampler.h"
#include "methods/p2p/local_blend.h"
#include "methods/p2p/word_alignment.h"

namespace sine::p2p {

EditKind parse_edit_kind(const std::string& name) {
  if (name == "replace" || name == "swap") return EditKind::replace;
  if (name == "refine") return EditKind::refine;
  if (name == "none") return EditKind::none;
  throw Error("edit: unknown edit '" + name + "' (known: replace, refine, none)");
}

EditKind choose_edit_kind(const std::string& name, const std::string& source, const std::string& target) {
  if (name != "auto") return parse_edit_kind(name);
  return split_words(source).size() == split_words(target).size() ? EditKind::replace : EditKind::refine;
}

const char* edit_kind_name(EditKind kind) {
  switch (kind) {
    case EditKind::replace: return "replace";
    case EditKind::refine: return "refine";
    default: return "none";
  }
}

namespace {

void set_rows(torch::Tensor& alpha, Bounds bounds, const std::vector<int64_t>& columns) {
  const int64_t rows = alpha.size(0);
  const int64_t start = static_cast<int64_t>(bounds.first * rows), end = static_cast<int64_t>(bounds.second * rows);
  for (int64_t c : columns) {
    if (c < 0 || c >= alpha.size(1)) continue;
    auto col = alpha.select(1, c);
    col.zero_();
    if (end > start) col.narrow(0, std::clamp<int64_t>(start, 0, rows), std::clamp<int64_t>(end, 0, rows) - std::clamp<int64_t>(start, 0, rows)).fill_(1.0);
  }
}

}  // namespace

torch::Tensor cross_replace_alpha(const ClipTokenizer& tokenizer, const std::string& target, int64_t num_steps,
                                  Bounds default_bounds, const std::map<std::string, Bounds>& words) {
  auto alpha = torch::zeros({num_steps + 1, kMaxWords});
  std::vector<int64_t> all(kMaxWords);
  for (int64_t i = 0; i < kMaxWords; ++i) all[i] = i;
  set_rows(alpha, default_bounds, all);
  for (const auto& [word, bounds] : words) {
    auto inds = word_indices(tokenizer, target, word);
    if (!inds.empty()) set_rows(alpha, bounds, inds);
  }
  return alpha;
}

std::pair<int64_t, int64_t> self_replace_window(int64_t num_steps, Bounds bounds) {
  return {static_cast<int64_t>(num_steps * bounds.first), static_cast<int64_t>(num_steps * bounds.second)};
}

torch::Tensor equalizer(const ClipTokenizer& tokenizer, const std::string& text, const std::map<std::string, float>& values) {
  auto eq = torch::ones({kMaxWords});
  for (const auto& [word, value] : values) {
    auto inds = word_indices(tokenizer, text, word);
    if (inds.empty()) throw Error("reweight: word '" + word + "' is not in the prompt '" + text + "'");
    for (int64_t i : inds)
      if (i < kMaxWords) eq[i] = value;
  }
  return eq;
}

Controller::Controller(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target,
                       const ControllerConfig& config, int64_t store_max_pixels)
    : config_(config), store_(store_max_pixels) {
  alpha_ = cross_replace_alpha(tokenizer, target, config.num_steps, config.cross_replace, config.cross_replace_words);
  self_window_ = self_replace_window(config.num_steps, config.self_replace);
  if (config.kind == EditKind::replace) replace_mapper_ = replacement_mapper(tokenizer, source, target);
  if (config.kind == EditKind::refine) {
    auto r = refine_mapper(tokenizer, source, target);
    // Python's index -1 is the last position; its alpha is 0, so only the finite value matters.
    refine_mapper_ = torch::where(r.mapper < 0, torch::full_like(r.mapper, kMaxWords - 1), r.mapper);
    refine_alphas_ = r.alphas;
  }
  if (!config.equalizer.empty()) equalizer_ = equalizer(tokenizer, target, config.equalizer);
}

bool Controller::needs_probs(const AttentionSite& site) {
  return site.is_cross || store_.wants(site.height * site.width);
}

torch::Tensor Controller::edit_cross(const torch::Tensor& base, const torch::Tensor& target) const {
  torch::Tensor edited;
  switch (config_.kind) {
    case EditKind::replace:
      // einsum('hpw,bwn->bhpn') for one target prompt.
      edited = torch::matmul(base, replace_mapper_.to(base.options()));
      break;
    case EditKind::refine: {
      auto mapped = base.index_select(-1, refine_mapper_.to(base.device()));
      auto a = refine_alphas_.to(base.options());
      edited = mapped * a + target * (1 - a);
      break;
    }
    default:
      edited = base;
  }
  if (equalizer_.defined()) edited = edited * equalizer_.to(base.options());
  return edited;
}

torch::Tensor Controller::on_probs(const AttentionSite& site, torch::Tensor probs) {
  const int64_t prompts = 2;
  const int64_t b = probs.size(0);
  if (b != prompts && b != 2 * prompts)
    throw Error("prompt-to-prompt: attention batch of " + std::to_string(b) + " (expected 2 or 4)");
  const int64_t first = b - prompts;  // start of the cond half
  const int64_t n = probs.size(2);
  const bool edit_self = !site.is_cross && site.step >= self_window_.first && site.step < self_window_.second &&
                         store_.wants(n);
  const bool edit = config_.kind != EditKind::none || equalizer_.defined();
  if (site.is_cross && edit) {
    auto base = probs[first];
    auto target = probs[first + 1];
    const int64_t row = std::clamp<int64_t>(site.step, 0, alpha_.size(0) - 1);
    auto a = alpha_[row].to(probs.options());
    auto replaced = edit_cross(base, target) * a + target * (1 - a);
    probs = probs.clone();
    probs[first + 1] = replaced;
  } else if (edit_self) {
    probs = probs.clone();
    probs[first + 1] = probs[first];
  }
  store_.record(site.is_cross, site.layer, probs.narrow(0, first, prompts));
  if (observer) observer(site, probs);
  return probs;
}

torch::Tensor edit_latents(Pipeline& pipe, const std::string& source, const std::string& target,
                           const torch::Tensor& z_T, AttentionHook* hook, AttentionStore* store, LocalBlend* blend,
                           const ReconstructionPath& path, const EditOptions& options, const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  const int64_t n = options.steps;
  if (!path.inversion_latents.empty() && static_cast<int64_t>(path.inversion_latents.size()) != n + 1)
    throw Error("edit: " + std::to_string(path.inversion_latents.size()) + " inversion latents for " +
                std::to_string(n) + " steps (need steps + 1)");
  if (!path.null_embeddings.empty() && static_cast<int64_t>(path.null_embeddings.size()) != n)
    throw Error("edit: " + std::to_string(path.null_embeddings.size()) + " null-text embeddings for " +
                std::to_string(n) + " steps");
  SamplerConfig ddim;
  ddim.steps = n;
  ddim.ddim = options.ddim;
  auto sampler = make_sampler(ddim);
  auto cond = torch::cat({pipe.encode_prompt(source), pipe.encode_prompt(target)});
  auto plain_uncond = pipe.encode_prompt("");
  // FEC-ref: the source latent (batch 0) is put back on the inversion path z*_t before every step.
  auto follow_inversion = [&](torch::Tensor& x, int64_t i) {
    if (!path.inversion_latents.empty()) x[0] = path.inversion_latents[n - i].to(x.device())[0];
  };

  // diffusion_step: the UNet on [u, u, c_src, c_tgt] (φ_i as u with null-text), then CFG.
  auto eps = [&](const torch::Tensor& x, double t, int64_t i) {
    auto uncond = path.null_embeddings.empty() ? plain_uncond : path.null_embeddings[i].to(pipe.device());
    auto context = torch::cat({uncond.expand({2, -1, -1}), cond});
    auto parts = pipe.predict_eps(torch::cat({x, x}), timestep_tensor(t, 4, pipe.device()), context).chunk(2);
    return classifier_free_guidance(parts[0], parts[1], options.cfg_scale);
  };
  SampleLoopOptions loop;
  loop.unet = pipe.model()->unet;
  loop.on_step = on_step;
  // controller.step_callback: the store closes the step, LocalBlend mixes the target into the source.
  loop.after_step = [&](int64_t i, torch::Tensor x) {
    if (store) store->end_step();
    if (blend && store) x = (*blend)(x, *store);
    if (i + 1 < n) follow_inversion(x, i + 1);
    return x;
  };
  ScopedAttentionHook guard(pipe.model()->unet, hook);
  auto x = z_T.to(pipe.device(), torch::kFloat32).expand({2, -1, -1, -1}).clone();
  follow_inversion(x, 0);
  return sample(*sampler, x, eps, loop);
}

}  // namespace sine::p2p
