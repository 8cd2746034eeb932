#include "methods/specref/specref.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/progress.h"
#include "core/validate.h"
#include "io/image.h"
#include "methods/p2p/word_alignment.h"

namespace sine::specref {

namespace F = torch::nn::functional;

MaskMode parse_mask_mode(const std::string& name) {
  if (name == "both") return MaskMode::both;
  if (name == "ms" || name == "ms-only") return MaskMode::ms_only;
  if (name == "mt" || name == "mt-only") return MaskMode::mt_only;
  if (name == "none" || name == "neither") return MaskMode::none;
  throw Error("mask_mode: unknown mask mode '" + name + "' (known: both, ms, mt, none)");
}

const char* mask_mode_name(MaskMode mode) {
  switch (mode) {
    case MaskMode::both: return "both";
    case MaskMode::ms_only: return "ms";
    case MaskMode::mt_only: return "mt";
    default: return "none";
  }
}

void ReferenceKV::put(int64_t step, int layer, const torch::Tensor& k, const torch::Tensor& v) {
  kv_[{step, layer}] = {k.detach().to(torch::kHalf).contiguous(), v.detach().to(torch::kHalf).contiguous()};
}

const std::pair<torch::Tensor, torch::Tensor>& ReferenceKV::get(int64_t step, int layer) const {
  auto it = kv_.find({step, layer});
  if (it == kv_.end())
    throw Error("SpecRef: no reference K/V cached for step " + std::to_string(step) + ", layer " + std::to_string(layer));
  return it->second;
}

int64_t ReferenceKV::bytes() const {
  int64_t total = 0;
  for (const auto& [key, kv] : kv_) total += kv.first.nbytes() + kv.second.nbytes();
  return total;
}

void KVRecorder::on_qkv(const AttentionSite& site, torch::Tensor& q, torch::Tensor& k, torch::Tensor& v) {
  if (site.is_cross || std::find(layers_.begin(), layers_.end(), site.layer) == layers_.end()) return;
  const int64_t s = steps_ - 1 - site.step;
  if (s < sr_start_ || s >= sr_end_) return;
  cache_.put(s, site.layer, k[ref_index_], v[ref_index_]);
}

int64_t planned_cache_bytes(const UNetConfig& unet, int64_t latent_h, int64_t latent_w, int64_t sr_start,
                            int64_t sr_end, int64_t bytes_per_value) {
  const auto rules = edit_layer_rules(unet, latent_h, latent_w);
  int64_t per_step = 0;
  for (const auto& l : attention_layout(unet, latent_h, latent_w))
    if (std::find(rules.sr_layers.begin(), rules.sr_layers.end(), l.layer) != rules.sr_layers.end())
      per_step += 2 * l.height * l.width * l.channels * bytes_per_value;
  return per_step * std::max<int64_t>(0, sr_end - sr_start);
}

namespace {

torch::Tensor resize_map(const torch::Tensor& map_hw, int64_t h, int64_t w, bool bilinear) {
  auto m = map_hw.to(torch::kFloat32).view({1, 1, map_hw.size(0), map_hw.size(1)});
  auto opts = F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w});
  if (bilinear)
    opts.mode(torch::kBilinear).align_corners(false);
  else
    opts.mode(torch::kNearest);
  return F::interpolate(m, opts).view({h, w});
}

bool contains(const std::vector<int>& v, int x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

torch::Tensor layer_mask(const torch::Tensor& mask_hw, int64_t h, int64_t w, double threshold, bool bilinear) {
  return resize_map(mask_hw, h, w, bilinear).ge(threshold).to(torch::kFloat32);
}

torch::Tensor target_map(const torch::Tensor& sum, int64_t count, const std::vector<int64_t>& word_tokens,
                         int64_t hb, int64_t wb) {
  auto idx = torch::tensor(word_tokens, torch::kLong).to(sum.device());
  auto m = (sum / static_cast<double>(std::max<int64_t>(count, 1))).index_select(1, idx).sum(1);  // [N]
  auto lo = m.min(), hi = m.max();
  auto range = hi - lo;
  m = torch::where(range > 0, (m - lo) / torch::where(range > 0, range, torch::ones_like(range)), torch::zeros_like(m));
  return m.view({hb, wb});
}

torch::Tensor reference_attention(const torch::Tensor& q_t, const torch::Tensor& k_ref, const torch::Tensor& v_ref,
                                  const torch::Tensor& ms_flat, int64_t heads) {
  const int64_t n = q_t.size(0), m = k_ref.size(0), c = q_t.size(1), d = c / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  auto q = q_t.reshape({n, heads, d}).transpose(0, 1);                       // [h, N, d]
  auto k = k_ref.to(q_t.dtype()).reshape({m, heads, d}).transpose(0, 1);    // [h, M, d]
  auto v = v_ref.to(q_t.dtype()).reshape({m, heads, d}).transpose(0, 1);
  // The mask bias and the softmax in fp32 whatever the model's dtype: fp32's lowest value does not
  // exist in bf16/fp16, and an empty M_s must give the same (uniform) weights in every dtype.
  const float lowest = std::numeric_limits<float>::lowest();
  const auto f32 = q_t.options().dtype(torch::kFloat32);
  auto bias = torch::where(ms_flat.to(q_t.device()).gt(0.5), torch::ones({m}, f32), torch::full({m}, lowest, f32));
  auto logits = (torch::matmul(q, k.transpose(1, 2)) * scale).to(torch::kFloat32) + bias;  // [h, N, M]
  auto out = torch::matmul(torch::softmax(logits, -1).to(q.scalar_type()), v);            // [h, N, d]
  return out.transpose(0, 1).reshape({n, c});
}

SRAttention::SRAttention(p2p::Controller* controller, const ReferenceKV* cache, const EditLayerRules& rules,
                         const SRConfig& config, std::vector<int64_t> target_word_tokens, torch::Tensor ms_pixels)
    : controller_(controller), cache_(cache), rules_(rules), config_(config), words_(std::move(target_word_tokens)),
      ms_pixels_(std::move(ms_pixels)) {
  if (words_.empty()) throw Error("SpecRef: the edited words have no tokens in the target prompt");
}

bool SRAttention::is_sr_site(const AttentionSite& site) const {
  return !site.is_cross && contains(rules_.sr_layers, site.layer) && site.step >= config_.sr_start &&
         site.step < config_.sr_end && cache_ && cache_->has(site.step, site.layer);
}

bool SRAttention::needs_probs(const AttentionSite& site) {
  if (is_sr_site(site)) return false;  // plain attention for the batch; the controller's map would be discarded
  const bool mt_layer = site.is_cross && contains(rules_.blend_layers, site.layer);
  return mt_layer || (controller_ && controller_->needs_probs(site));
}

torch::Tensor SRAttention::on_probs(const AttentionSite& site, torch::Tensor probs) {
  if (controller_ && controller_->needs_probs(site)) probs = controller_->on_probs(site, probs);
  if (site.is_cross && contains(rules_.blend_layers, site.layer)) {
    const int64_t idx = std::min<int64_t>(config_.target_index, probs.size(0) - 1);
    auto m = probs[idx].detach().to(torch::kFloat32).mean(0);  // [N, 77], head mean
    mt_sum_ = mt_sum_.defined() ? mt_sum_ + m : m.clone();
    ++mt_count_;
  }
  return probs;
}

torch::Tensor SRAttention::current_target_map() const {
  if (!mt_sum_.defined()) return {};
  return target_map(mt_sum_, mt_count_, words_, rules_.blend_h, rules_.blend_w);
}

torch::Tensor SRAttention::on_output(const AttentionSite& site, torch::Tensor out, const torch::Tensor& q,
                                     const torch::Tensor& k, const torch::Tensor& v) {
  if (!is_sr_site(site)) return out;
  const int64_t h = site.height, w = site.width;
  const int64_t idx = std::min<int64_t>(config_.target_index, out.size(0) - 1);
  const bool use_ms = config_.mask_mode == MaskMode::both || config_.mask_mode == MaskMode::ms_only;
  const bool use_mt = config_.mask_mode == MaskMode::both || config_.mask_mode == MaskMode::mt_only;
  torch::Tensor ms = use_ms && ms_pixels_.defined() ? layer_mask(ms_pixels_, h, w, config_.threshold, config_.bilinear)
                                                    : torch::ones({h, w});
  torch::Tensor mt;
  if (use_mt) {
    auto map = current_target_map();
    mt = map.defined() ? layer_mask(map, h, w, config_.threshold, config_.bilinear) : torch::zeros({h, w});
  } else {
    mt = torch::ones({h, w});
  }
  const auto& [k_ref, v_ref] = cache_->get(site.step, site.layer);
  auto o_ref = reference_attention(q[idx], k_ref.to(q.device()), v_ref.to(q.device()), ms.flatten(), site.heads);
  auto mt_col = mt.to(out.device(), out.dtype()).view({h * w, 1});
  auto blended = mt_col * o_ref.to(out.dtype()) + (1 - mt_col) * out[idx];
  out = out.clone();
  out[idx] = blended;
  if (last_mt.defined() == false || h * w >= last_mt.numel()) {
    last_mt = mt;
    last_ms = ms;
  }
  ++sr_calls;
  return out;
}

namespace {

// Sums the head-mean cross-attention of batch element 0 at the given layers.
class CrossMapCollector : public AttentionHook {
 public:
  explicit CrossMapCollector(std::vector<int> layers) : layers_(std::move(layers)) {}
  bool needs_probs(const AttentionSite& site) override { return site.is_cross && contains(layers_, site.layer); }
  torch::Tensor on_probs(const AttentionSite& site, torch::Tensor probs) override {
    if (needs_probs(site)) {
      auto m = probs[0].detach().to(torch::kFloat32).mean(0);
      sum = sum.defined() ? sum + m : m.clone();
      ++count;
    }
    return probs;
  }
  torch::Tensor sum;
  int64_t count = 0;

 private:
  std::vector<int> layers_;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

torch::Tensor derive_reference_mask(Pipeline& pipe, const std::vector<torch::Tensor>& ref_latents,
                                    const std::string& prompt, const std::vector<std::string>& words,
                                    const EditLayerRules& rules, const DDIMConfig& ddim, int64_t steps,
                                    int64_t image_h, int64_t image_w) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> tokens;
  for (const auto& word : words) {
    auto inds = p2p::word_indices(pipe.tokenizer(), prompt, word);
    tokens.insert(tokens.end(), inds.begin(), inds.end());
  }
  if (tokens.empty())
    throw Error("ref_prompt: none of the words to derive M_s from occurs in '" + prompt + "'");
  DDIMScheduler scheduler(ddim, steps);
  auto timesteps = scheduler.timesteps();
  auto context = pipe.encode_prompt(prompt);
  CrossMapCollector collector(rules.blend_layers);
  {
    // The UNet at each inversion step's latent and timestep, for its attention alone (no sampling).
    auto& unet = pipe.model()->unet;
    ScopedAttentionHook guard(unet, &collector);
    for (int64_t i = 0; i < steps; ++i) {
      unet->set_step(static_cast<int>(i));
      pipe.predict_eps(ref_latents[i], timesteps[steps - 1 - i], context);
    }
  }
  auto map = target_map(collector.sum, collector.count, tokens, rules.blend_h, rules.blend_w);
  return resize_map(map, image_h, image_w, true).clamp(0, 1);
}

JointInversion invert_jointly(Pipeline& pipe, const SpecRefInputs& in, const SpecRefConfig& config, bool progress,
                              const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  const int64_t n = config.steps;
  if (n < 1) throw Error("steps: must be at least 1");
  if (in.source.sizes() != in.reference.sizes())
    throw Error("SpecRef: the source and reference images must have the same size");
  JointInversion joint;
  auto z_src = pipe.encode_image(in.source);
  auto z_ref = pipe.encode_image(in.reference);
  joint.rules = edit_layer_rules(pipe.config().unet, z_src.size(2), z_src.size(3));
  auto t0 = std::chrono::steady_clock::now();
  KVRecorder recorder(joint.cache, joint.rules.sr_layers, n, config.sr.sr_start, config.sr.sr_end, 1);
  auto context = torch::cat({pipe.encode_prompt(in.source_prompt), pipe.encode_prompt("")});
  InversionOptions inv;
  inv.steps = n;
  inv.guidance = config.inversion_guidance;
  inv.ddim = config.ddim;
  std::vector<torch::Tensor> latents;
  {
    ProgressBar bar("specref invert", n, progress);
    ScopedAttentionHook guard(pipe.model()->unet, &recorder);
    latents = ddim_invert(pipe, torch::cat({z_src, z_ref}), context, inv, pipe.encode_prompt(""),
                          [&](int64_t d, int64_t total) {
                            bar.update(d);
                            if (on_step) on_step(d, total);
                          });
    bar.finish();
  }
  joint.seconds = seconds_since(t0);
  for (const auto& z : latents) {
    joint.source_latents.push_back(z.narrow(0, 0, 1));
    joint.reference_latents.push_back(z.narrow(0, 1, 1));
  }
  return joint;
}

SpecRefResult edit_with_reference(Pipeline& pipe, const JointInversion& joint, const SpecRefInputs& in,
                                  const SpecRefConfig& config, bool progress, const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  SpecRefResult result;
  if (in.edit_words.empty()) throw Error("edit_words: name the edited word(s) of the target prompt");
  const int64_t n = config.steps;
  const int64_t H = in.source.size(0), W = in.source.size(1);
  const EditLayerRules& rules = joint.rules;
  result.invert_seconds = joint.seconds;
  result.cache_bytes = joint.cache.bytes();
  result.cache_entries = static_cast<int64_t>(joint.cache.entries());

  std::vector<int64_t> tokens;
  for (const auto& word : in.edit_words) {
    auto inds = p2p::word_indices(pipe.tokenizer(), in.target_prompt, word);
    if (inds.empty()) throw Error("edit_words: '" + word + "' is not a word of the target prompt '" + in.target_prompt + "'");
    tokens.insert(tokens.end(), inds.begin(), inds.end());
  }

  // M_s: given, or derived from the reference's own cross-attention to the edited word(s).
  result.ms_pixels = in.ms_pixels;
  const bool needs_ms = config.sr.mask_mode == MaskMode::both || config.sr.mask_mode == MaskMode::ms_only;
  if (!result.ms_pixels.defined() && needs_ms) {
    const std::string prompt = in.reference_prompt.empty() ? in.target_prompt : in.reference_prompt;
    result.ms_pixels =
        derive_reference_mask(pipe, joint.reference_latents, prompt, in.edit_words, rules, config.ddim, n, H, W);
    result.ms_derived = true;
  }

  auto t0 = std::chrono::steady_clock::now();
  p2p::ControllerConfig pc = config.p2p;
  pc.num_steps = n;
  p2p::Controller controller(pipe.tokenizer(), in.source_prompt, in.target_prompt, pc, rules.store_max_pixels);
  SRAttention sr(&controller, &joint.cache, rules, config.sr, tokens, result.ms_pixels);
  std::unique_ptr<p2p::LocalBlend> blend;
  if (config.local_blend)
    blend = std::make_unique<p2p::LocalBlend>(pipe.tokenizer(), in.source_prompt, in.target_prompt, config.blend,
                                              rules, n);
  p2p::EditOptions eo;
  eo.steps = n;
  eo.cfg_scale = config.cfg_scale;
  eo.ddim = config.ddim;
  p2p::ReconstructionPath path;
  path.inversion_latents = joint.source_latents;
  torch::Tensor x;
  {
    ProgressBar bar("specref edit", n, progress);
    x = p2p::edit_latents(pipe, in.source_prompt, in.target_prompt, joint.source_latents.back(), &sr,
                          &controller.store(), blend.get(), path, eo, [&](int64_t d, int64_t total) {
                            bar.update(d);
                            if (on_step) on_step(d, total);
                          });
    bar.finish();
  }
  auto images = pipe.decode_latents(x);
  result.edit_seconds = seconds_since(t0);
  result.source_recon = from_model_output(images[0]);
  result.result = from_model_output(images[1]);
  result.mt = sr.last_mt;
  result.ms_layer = sr.last_ms;
  if (blend && blend->last_mask().defined()) result.blend_mask = blend->last_mask()[1][0].to(torch::kFloat32);
  return result;
}

SpecRefResult run_specref(Pipeline& pipe, const SpecRefInputs& in, const SpecRefConfig& config, bool progress,
                          const StepCallback& on_step) {
  auto joint = invert_jointly(pipe, in, config, progress, on_step);
  return edit_with_reference(pipe, joint, in, config, progress, on_step);
}

SpecRefConfig SpecRefOptions::config(const ClipTokenizer& tokenizer, const SpecRefInputs& in) const {
  if (in.source_prompt.empty()) throw Error("prompt: required (the source image's prompt)");
  if (in.target_prompt.empty()) throw Error("target: required (the edited prompt)");
  if (in.edit_words.empty()) throw Error("edit_words: name the edited word(s) of the target prompt");
  for (const auto& word : in.edit_words)
    if (p2p::word_indices(tokenizer, in.target_prompt, word).empty())
      throw Error("edit_words: '" + word + "' is not a word of the target prompt '" + in.target_prompt + "'");
  require_steps(steps);
  require_in("cfg_scale", cfg_scale, 0.0, 100.0);
  const int64_t end = sr_end > 0 ? sr_end : steps;
  if (sr_start < 0 || end > steps || sr_start >= end)
    throw Error("sr_start: SR-attention steps need 0 <= sr_start < sr_end <= steps (got " + std::to_string(sr_start) +
                ", " + std::to_string(end) + ", steps " + std::to_string(steps) + ")");
  require_finite("threshold", threshold);
  if (threshold <= 0 || threshold > 1) throw Error("threshold: must be in (0, 1] (got " + fixed(threshold, 4) + ")");
  require_in("cross_replace", cross_replace, 0.0, 1.0);
  require_in("self_replace", self_replace, 0.0, 1.0);
  require_in("blend_threshold", blend_threshold, 0.0, 1.0);
  require_in("blend_start", blend_start, 0.0, 1.0);
  SpecRefConfig c;
  c.steps = steps;
  c.cfg_scale = cfg_scale;
  c.sr.sr_start = sr_start;
  c.sr.sr_end = end;
  c.sr.threshold = threshold;
  c.sr.bilinear = bilinear;
  c.sr.mask_mode = parse_mask_mode(masks);
  c.p2p.kind = p2p::choose_edit_kind(edit, in.source_prompt, in.target_prompt);
  c.p2p.cross_replace = {0.0, cross_replace};
  c.p2p.self_replace = {0.0, self_replace};
  c.local_blend = local_blend;
  if (local_blend)
    c.blend = p2p::LocalBlendConfig::for_prompts(blend_words, in.source_prompt, in.target_prompt, blend_threshold,
                                                 blend_start);
  return c;
}

}  // namespace sine::specref
