#include "eval/specref_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/progress.h"
#include "core/validate.h"
#include "io/image.h"
#include "io/json_file.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/p2p/local_blend.h"
#include "methods/inversion/null_text_inversion.h"
#include "methods/p2p/prompt_to_prompt.h"
#include "methods/specref/specref.h"
#include "methods/p2p/word_alignment.h"
#include "models/presets.h"
#include "eval/report_table.h"
#include "eval/statistics.h"
#include "world/caption.h"
#include "world/judge.h"
#include "world/render.h"
#include "world/scene.h"

namespace fs = std::filesystem;

namespace sine::eval {

namespace {

struct Pair {
  world::Scene source, reference, expected;
  torch::Tensor source_image, reference_image;   // uint8 [H,W,3]
  torch::Tensor reference_mask;                  // float [H,W], exact
  torch::Tensor keep;                            // bool [H,W]: outside both objects (dilated)
  torch::Tensor target_region;                   // bool [H,W]: expected object
  std::string source_prompt, target_prompt;
  std::vector<std::string> source_words, target_words;
};

// `caption` without the first `color` and `pattern` words (the object's), its article fixed.
std::string without_appearance_words(const std::string& caption, const std::vector<std::string>& words) {
  auto tokens = p2p::split_words(caption);
  for (const auto& w : words) {
    auto it = std::find(tokens.begin(), tokens.end(), w);
    if (it != tokens.end()) tokens.erase(it);
  }
  std::string text;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string t = tokens[i];
    if ((t == "a" || t == "an") && i + 1 < tokens.size())
      t = std::string("aeiou").find(tokens[i + 1][0]) != std::string::npos ? "an" : "a";
    text += (i ? " " : "") + t;
  }
  return text;
}

Pair make_pair_scene(uint64_t seed, int64_t size, bool textured_reference, bool unnamed_appearance) {
  std::mt19937_64 rng(seed);
  world::SceneSampling s;
  s.min_objects = s.max_objects = 1;
  s.p_small = 0;
  s.p_striped = s.p_dotted = 0;
  s.p_gradient = s.p_checkered = 0;
  Pair p;
  p.source = world::sample_scene(rng, s);
  world::SceneSampling r = s;
  r.p_striped = r.p_dotted = 0.2f;
  if (textured_reference) {
    // Fig. 4's setting: a reference background a learned or copied K/V could carry along.
    r.p_checkered = r.p_striped_background = r.p_dotted_background = r.p_noisy_background = 0.25f;
  }
  const auto& so = p.source.objects[0];
  for (int tries = 0; tries < 200; ++tries) {
    p.reference = world::sample_scene(rng, r);
    const auto& ro = p.reference.objects[0];
    if (world::color_distance(world::checker_tone(p.reference.background.color), p.source.background.color) < 35 &&
        world::is_textured(p.reference.background.kind))
      continue;
    if (ro.color == so.color || ro.shape == so.shape) continue;
    if (p.reference.background.color == p.source.background.color) continue;
    if (world::color_distance(ro.color, p.source.background.color) < 35) continue;
    if (world::color_distance(p.reference.background.color, p.source.background.color) < 35) continue;
    break;
  }
  const auto& ro = p.reference.objects[0];
  p.expected = p.source;
  p.expected.objects[0].color = ro.color;
  p.expected.objects[0].shape = ro.shape;
  p.expected.objects[0].pattern = ro.pattern;
  p.source_prompt = world::caption(p.source);
  p.target_prompt = world::caption(p.expected);
  p.source_words = {world::name_of(so.color), world::name_of(so.shape)};
  p.target_words = {world::name_of(ro.color)};
  if (ro.pattern != world::Pattern::plain) p.target_words.push_back(world::name_of(ro.pattern));
  if (unnamed_appearance) {
    p.target_prompt = without_appearance_words(p.target_prompt, p.target_words);
    p.target_words.clear();
  }
  p.target_words.push_back(world::name_of(ro.shape));
  p.source_image = world::render_scene(p.source, size, size);
  p.reference_image = world::render_scene(p.reference, size, size);
  p.reference_mask = world::render_object_mask(p.reference, 0, size, size);
  auto src_obj = world::render_object_mask(p.source, 0, size, size);
  auto tgt_obj = world::render_object_mask(p.expected, 0, size, size);
  p.target_region = tgt_obj.gt(0.5);
  namespace F = torch::nn::functional;
  auto either = torch::max(src_obj, tgt_obj).gt(0).to(torch::kFloat32).view({1, 1, size, size});
  auto grown = F::max_pool2d(either, F::MaxPool2dFuncOptions(7).stride(1).padding(3)).view({size, size});
  p.keep = grown.lt(0.5);
  return p;
}

double masked_psnr(const torch::Tensor& a_u8, const torch::Tensor& b_u8, const torch::Tensor& keep) {
  auto d = (a_u8.to(torch::kFloat64) - b_u8.to(torch::kFloat64)) / 255.0;
  auto m = keep.to(torch::kFloat64).unsqueeze(-1).expand_as(d);
  const double count = m.sum().item<double>();
  if (count <= 0) return 0;
  const double mse = (d.pow(2) * m).sum().item<double>() / count;
  return mse <= 0 ? 99.0 : -10.0 * std::log10(mse);
}

// Fraction of the expected object's pixels nearer the reference's background (its color, and a
// texture's second tone) than to the reference object's, the source object's and the source
// background's colors (the reference background leaking into the edit, Fig. 4 of the paper).
double reference_background_leak(const torch::Tensor& image_u8, const Pair& p) {
  auto img = image_u8.to(torch::kFloat32);
  auto tensor_of = [](const world::Rgb& v) { return torch::tensor({float(v[0]), float(v[1]), float(v[2])}); };
  auto rgb = [&](world::Color c) { return tensor_of(world::rgb_of(c)); };
  auto dist = [&](world::Color c) { return (img - rgb(c)).pow(2).sum(-1); };
  const world::Background& ref_bg = p.reference.background;
  auto d_bg = dist(ref_bg.color);
  if (world::is_textured(ref_bg.kind))
    d_bg = torch::min(d_bg, (img - tensor_of(world::checker_tone(ref_bg.color))).pow(2).sum(-1));
  auto nearest_other = torch::min(torch::min(dist(p.reference.objects[0].color), dist(p.source.objects[0].color)),
                                  dist(p.source.background.color));
  auto region = p.target_region;
  const double n = region.sum().item<double>();
  if (n <= 0) return 0;
  return (d_bg.lt(nearest_other).logical_and(region)).sum().item<double>() / n;
}

// Share of the expected object's pixels the judge would name as the reference background: the
// judge's palette color for the pixel (world::nearest_color) is the reference background's, or a
// texture's second tone is nearer still. Unlike the measure above, a neutral pixel goes to its own
// palette color rather than to whichever of four candidates is least far (that measure's floor:
// gray pixels of an edit that never saw the reference count as a yellow background).
double named_reference_background_leak(const torch::Tensor& image_u8, const Pair& p) {
  const world::Background& bg = p.reference.background;
  const bool textured = world::is_textured(bg.kind);
  const world::Rgb tone_rgb = world::checker_tone(bg.color);
  const auto tone = world::lab_of_rgb_float(tone_rgb[0], tone_rgb[1], tone_rgb[2]);
  auto img = image_u8.to(torch::kUInt8).contiguous();
  auto region = p.target_region.contiguous();
  const auto* px = img.data_ptr<uint8_t>();
  const auto* in = region.data_ptr<bool>();
  int64_t n = 0, hits = 0;
  for (int64_t i = 0; i < region.numel(); ++i) {
    if (!in[i]) continue;
    ++n;
    const auto lab = world::lab_of_rgb_float(px[3 * i], px[3 * i + 1], px[3 * i + 2]);
    const auto [color, distance] = world::nearest_color(lab);
    hits += color == bg.color || (textured && world::delta_e(lab, tone) < distance);
  }
  return n ? static_cast<double>(hits) / static_cast<double>(n) : 0.0;
}

// A leak counts when a tenth of the edited object's pixels take the reference's background.
constexpr double kLeakedShare = 0.1;

torch::Tensor mask_u8(const torch::Tensor& m, int64_t size) {
  if (!m.defined()) return torch::full({size, size, 3}, 128, torch::kUInt8);
  namespace F = torch::nn::functional;
  auto x = F::interpolate(m.to(torch::kFloat32).view({1, 1, m.size(-2), m.size(-1)}),
                          F::InterpolateFuncOptions().size(std::vector<int64_t>{size, size}).mode(torch::kNearest));
  return (x.view({size, size, 1}).clamp(0, 1) * 255).round().to(torch::kUInt8).expand({size, size, 3}).contiguous();
}

// ---------------------------------------------------------------------------------------------
// Run: one pair -> its judged edits.

// One edit of one pair, judged against the expected scene.
struct EditOutcome {
  bool pass = false, color = false, shape = false, pattern = false;
  double background_psnr = 0, reference_bg_leak = 0, named_bg_leak = 0, seconds = 0;
  bool leaked() const { return reference_bg_leak >= kLeakedShare; }
  bool leaked_named() const { return named_bg_leak >= kLeakedShare; }
};

EditOutcome judge_edit(const torch::Tensor& image, const Pair& p, double seconds) {
  EditOutcome e;
  const world::Verdict v = world::judge(image, &p.expected).verdict.value();
  e.pass = v.pass;
  if (!v.objects.empty() && v.objects[0].found >= 0) {
    e.color = v.objects[0].color_ok;
    e.shape = v.objects[0].shape_ok;
    e.pattern = v.objects[0].pattern_ok;
  }
  e.background_psnr = masked_psnr(image, p.source_image, p.keep);
  e.reference_bg_leak = reference_background_leak(image, p);
  e.named_bg_leak = named_reference_background_leak(image, p);
  e.seconds = seconds;
  return e;
}

nlohmann::json to_json(const EditOutcome& e) {
  return {{"pass", e.pass},
          {"color", e.color},
          {"shape", e.shape},
          {"pattern", e.pattern},
          {"background_psnr", e.background_psnr},
          {"reference_bg_leak", e.reference_bg_leak},
          {"named_bg_leak", e.named_bg_leak}};
}

// The edits in table order: Prompt-to-Prompt alone, SpecRef, its mask ablations, M_s derived.
const char* const kP2P = "p2p swap";
const char* const kSpecRef = "specref";
const std::vector<std::pair<std::string, specref::MaskMode>>& ablation_modes() {
  static const std::vector<std::pair<std::string, specref::MaskMode>> modes = {
      {"ms_only", specref::MaskMode::ms_only}, {"mt_only", specref::MaskMode::mt_only}, {"neither", specref::MaskMode::none}};
  return modes;
}
const char* const kDerived = "derived_ms";

struct PairResult {
  nlohmann::json record;  // per_pair in summary.json
  double psnr_vae = 0, psnr_guidance1 = 0, psnr_guidance = 0;
  std::optional<double> psnr_null_text;
  std::vector<std::pair<std::string, EditOutcome>> edits;
  int64_t cache_bytes = 0;
  double invert_seconds = 0;
};

PairResult run_pair(Pipeline& pipe, const SpecRefBenchOptions& o, int64_t k) {
  const int64_t size = pipe.canvas(o.size, o.size).first;
  InversionOptions inv;
  inv.steps = o.steps;
  inv.ddim = DDIMConfig::null_text_inversion();
  Pair p = make_pair_scene(o.seed + static_cast<uint64_t>(k), size, o.textured_references, o.unnamed_appearance);
  PairResult r;
  auto& rec = r.record;
  rec = {{"seed", o.seed + k}, {"source", p.source_prompt}, {"target", p.target_prompt},
         {"reference", world::caption(p.reference)}};
  auto target = to_model_input(p.source_image);
  auto z0 = pipe.encode_image(p.source_image);
  auto cond = pipe.encode_prompt(p.source_prompt);
  auto uncond = pipe.encode_prompt("");

  // 1. Inversion (null-text notebook convention).
  auto latents = ddim_invert(pipe, z0, cond, inv);
  r.psnr_vae = psnr(pipe.decode_latents(z0), target);
  r.psnr_guidance1 = psnr(pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, 1.0, inv)), target);
  r.psnr_guidance = psnr(pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, o.cfg_scale, inv)), target);
  rec["psnr_vae"] = r.psnr_vae;
  rec["psnr_ddim_g1"] = r.psnr_guidance1;
  rec["psnr_ddim_cfg"] = r.psnr_guidance;
  if (k < o.null_text_pairs) {
    NullTextOptions nt;
    nt.inner_steps = o.inner_steps;
    nt.guidance = o.cfg_scale;
    auto opt = null_text_inversion(pipe, latents, cond, uncond, inv, nt);
    auto rec_nt = pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, o.cfg_scale, inv, opt.embeddings));
    r.psnr_null_text = psnr(rec_nt, target);
    rec["psnr_null_text_cfg"] = *r.psnr_null_text;
  }

  // 2. Prompt-to-Prompt word swap (refine when the pattern word changes the length), LocalBlend,
  //    source path from the inversion latents (SpecRef's convention), no reference.
  specref::SpecRefConfig c;
  c.steps = o.steps;
  c.cfg_scale = o.cfg_scale;
  const bool same_len = p2p::split_words(p.source_prompt).size() == p2p::split_words(p.target_prompt).size();
  c.p2p.kind = same_len ? p2p::EditKind::replace : p2p::EditKind::refine;
  c.blend.source_words = p.source_words;
  c.blend.target_words = p.target_words;
  c.sr.sr_start = std::min<int64_t>(4 * o.steps / 50, o.steps - 1);
  c.sr.sr_end = o.steps;
  specref::SpecRefInputs in;
  in.source = p.source_image;
  in.reference = p.reference_image;
  in.ms_pixels = p.reference_mask;
  in.source_prompt = p.source_prompt;
  in.target_prompt = p.target_prompt;
  in.edit_words = p.target_words;
  auto joint = specref::invert_jointly(pipe, in, c, false);
  r.invert_seconds = joint.seconds;
  r.cache_bytes = joint.cache.bytes();
  auto add = [&](const std::string& name, const torch::Tensor& image, double seconds) {
    r.edits.emplace_back(name, judge_edit(image, p, seconds));
    return &r.edits.back().second;
  };

  torch::Tensor p2p_image;
  {
    auto t0 = std::chrono::steady_clock::now();
    p2p::ControllerConfig pc = c.p2p;
    pc.num_steps = o.steps;
    p2p::Controller controller(pipe.tokenizer(), p.source_prompt, p.target_prompt, pc, joint.rules.store_max_pixels);
    p2p::LocalBlend blend(pipe.tokenizer(), p.source_prompt, p.target_prompt, c.blend, joint.rules, o.steps);
    p2p::EditOptions eo;
    eo.steps = o.steps;
    eo.cfg_scale = o.cfg_scale;
    eo.ddim = c.ddim;
    p2p::ReconstructionPath path;
    path.inversion_latents = joint.source_latents;
    auto x = p2p::edit_latents(pipe, p.source_prompt, p.target_prompt, joint.source_latents.back(), &controller,
                               &controller.store(), &blend, path, eo);
    p2p_image = from_model_output(pipe.decode_latents(x.narrow(0, 1, 1))[0]);
    rec["p2p"] = to_json(*add(kP2P, p2p_image, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  }

  // 3. SpecRef with the exact reference mask, then the ablations.
  auto sr = specref::edit_with_reference(pipe, joint, in, c, false);
  rec["specref"] = to_json(*add(kSpecRef, sr.result, sr.edit_seconds));
  std::vector<torch::Tensor> cells{p.source_image, p.reference_image, sr.source_recon, p2p_image, sr.result,
                                   mask_u8(sr.ms_layer, size), mask_u8(sr.mt, size)};
  std::vector<std::string> labels{"source", "reference", "recon", "p2p", "specref", "M_s", "M_t"};
  if (o.ablations) {
    for (const auto& [name, mode] : ablation_modes()) {
      specref::SpecRefConfig ca = c;
      ca.sr.mask_mode = mode;
      auto ra = specref::edit_with_reference(pipe, joint, in, ca, false);
      rec[name] = to_json(*add(name, ra.result, ra.edit_seconds));
      cells.push_back(ra.result);
      labels.push_back(name);
    }
    specref::SpecRefInputs derived = in;
    derived.ms_pixels = torch::Tensor();
    auto rd = specref::edit_with_reference(pipe, joint, derived, c, false);
    rec[kDerived] = to_json(*add(kDerived, rd.result, rd.edit_seconds));
    // IoU of the derived M_s with the exact mask.
    auto a = rd.ms_pixels.ge(0.5), b = p.reference_mask.ge(0.5);
    rec[kDerived]["ms_iou"] = a.logical_and(b).sum().item<double>() / std::max(1.0, a.logical_or(b).sum().item<double>());
    cells.push_back(rd.result);
    labels.push_back("derived M_s");
    cells.push_back(mask_u8(rd.ms_pixels.ge(0.5), size));
    labels.push_back("M_s derived");
  }
  if (!o.output.empty()) {
    std::ostringstream name;
    name << o.output << "/pair_" << std::setw(2) << std::setfill('0') << k << ".png";
    write_png(name.str(), make_grid(cells, static_cast<int64_t>(cells.size()), 2, labels),
              {{"source", p.source_prompt}, {"target", p.target_prompt}});
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Tally: the pairs -> per-edit counts and the inversion means.

struct Tally {
  int64_t n = 0, pass = 0, color = 0, shape = 0, pattern = 0;
  double bg_psnr = 0, leak = 0, named_leak = 0, seconds = 0;
  std::vector<bool> passes, leaks, named_leaks;  // per pair, in pair order (paired tests)
  std::vector<double> named_shares;              // per pair: the named leak's share of the edited object
  void add(const EditOutcome& e) {
    ++n;
    pass += e.pass;
    color += e.color;
    shape += e.shape;
    pattern += e.pattern;
    passes.push_back(e.pass);
    leaks.push_back(e.leaked());
    named_leaks.push_back(e.leaked_named());
    named_shares.push_back(e.named_bg_leak);
    bg_psnr += e.background_psnr;
    leak += e.reference_bg_leak;
    named_leak += e.named_bg_leak;
    seconds += e.seconds;
  }
  int64_t leaked() const { return std::count(leaks.begin(), leaks.end(), true); }
  int64_t leaked_named() const { return std::count(named_leaks.begin(), named_leaks.end(), true); }
  double mean(double sum) const { return sum / static_cast<double>(std::max<int64_t>(n, 1)); }
};

struct BenchTally {
  int64_t pairs = 0, null_text_pairs = 0;
  double psnr_vae = 0, psnr_guidance1 = 0, psnr_guidance = 0;  // means over the pairs
  double psnr_null_text = 0, null_text_gain = 0;              // means over the null-text pairs
  std::vector<std::pair<std::string, Tally>> edits;            // table order
  int64_t cache_bytes = 0;
  double invert_seconds = 0;  // per pair
  nlohmann::json per_pair = nlohmann::json::array();

  const Tally* find(const std::string& name) const {
    for (const auto& [n, t] : edits)
      if (n == name) return &t;
    return nullptr;
  }
};

BenchTally tally(const std::vector<PairResult>& results) {
  BenchTally t;
  t.pairs = static_cast<int64_t>(results.size());
  double nt_sum = 0, g_on_nt_pairs = 0;
  for (const PairResult& r : results) {
    t.psnr_vae += r.psnr_vae;
    t.psnr_guidance1 += r.psnr_guidance1;
    t.psnr_guidance += r.psnr_guidance;
    if (r.psnr_null_text) {
      ++t.null_text_pairs;
      nt_sum += *r.psnr_null_text;
      g_on_nt_pairs += r.psnr_guidance;
    }
    for (const auto& edit : r.edits) {
      const std::string& name = edit.first;
      auto it = std::find_if(t.edits.begin(), t.edits.end(), [&](const auto& e) { return e.first == name; });
      if (it == t.edits.end()) it = t.edits.insert(t.edits.end(), {name, Tally{}});
      it->second.add(edit.second);
    }
    t.cache_bytes = r.cache_bytes;
    t.invert_seconds += r.invert_seconds;
    t.per_pair.push_back(r.record);
  }
  const double n = static_cast<double>(std::max<int64_t>(t.pairs, 1));
  t.psnr_vae /= n;
  t.psnr_guidance1 /= n;
  t.psnr_guidance /= n;
  t.invert_seconds /= n;
  if (t.null_text_pairs) {
    t.psnr_null_text = nt_sum / t.null_text_pairs;
    t.null_text_gain = (nt_sum - g_on_nt_pairs) / t.null_text_pairs;
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Report: the tally -> the console text and summary.json, the edits' table from one ReportTable.

SpecRefBenchReport report(const BenchTally& t, const SpecRefBenchOptions& o, const std::string& model) {
  SpecRefBenchReport report;
  auto& j = report.json;
  j["pairs"] = t.pairs;
  j["textured_references"] = o.textured_references;
  j["unnamed_appearance"] = o.unnamed_appearance;
  j["size"] = o.size;
  j["steps"] = o.steps;
  j["cfg_scale"] = o.cfg_scale;
  j["model"] = model;
  j["inversion"] = {{"psnr_vae_roundtrip", t.psnr_vae},
                    {"psnr_ddim_guidance1", t.psnr_guidance1},
                    {"psnr_ddim_cfg", t.psnr_guidance},
                    {"null_text_pairs", t.null_text_pairs},
                    {"psnr_null_text_cfg", t.psnr_null_text},
                    {"null_text_gain", t.null_text_gain}};

  ReportTable edits("edit", {"success", "color", "shape", "pattern", "bg PSNR dB", "ref-bg leak", "leaked",
                             "named leak", "leaked (named)", "s/edit"});
  for (const auto& [name, tl] : t.edits)
    edits.add(name, {ReportTable::rate(wilson(tl.pass, tl.n)), ReportTable::number(tl.mean(tl.color)),
                     ReportTable::number(tl.mean(tl.shape)), ReportTable::number(tl.mean(tl.pattern)),
                     ReportTable::number(tl.mean(tl.bg_psnr), 2), ReportTable::number(tl.mean(tl.leak)),
                     ReportTable::rate(wilson(tl.leaked(), tl.n)), ReportTable::number(tl.mean(tl.named_leak)),
                     ReportTable::rate(wilson(tl.leaked_named(), tl.n)), ReportTable::number(tl.mean(tl.seconds), 2)});
  j["edits"] = edits.json();
  j["kv_cache_bytes"] = t.cache_bytes;
  j["joint_inversion_seconds"] = t.invert_seconds;
  j["per_pair"] = t.per_pair;

  std::ostringstream s;
  s << "bench-specref: " << t.pairs << " pairs, " << o.steps << " steps, CFG " << fixed(o.cfg_scale, 1) << ", model "
    << model << "\n";
  s << "inversion PSNR (dB): VAE round trip " << fixed(t.psnr_vae, 2) << ", DDIM guidance 1 " << fixed(t.psnr_guidance1, 2)
    << ", DDIM at CFG " << fixed(o.cfg_scale, 1) << " " << fixed(t.psnr_guidance, 2);
  if (t.null_text_pairs)
    s << ", null-text at CFG " << fixed(o.cfg_scale, 1) << " " << fixed(t.psnr_null_text, 2) << " (gain "
      << fixed(t.null_text_gain, 2) << " on " << t.null_text_pairs << " pairs)";
  s << "\n";
  s << "edits, judged against the source scene with the object's color/shape/pattern from the reference\n"
       "(rates [95% Wilson]; leaked: a tenth or more of the edited object in the reference's background colors,\n"
       "nearest of those and the other three scene colors; named: nearest of the ten palette colors;\n"
       "p2p swap has no reference: its leaks are the measures' floor):\n"
    << edits.console();
  // Fig. 4's claim, case by case: without M_s the reference's background leaks; with it, it does not.
  const Tally* sr = t.find(kSpecRef);
  const Tally* mt_only = t.find("mt_only");
  if (sr && mt_only) {
    const McNemar leak_test = mcnemar(mt_only->leaks, sr->leaks);
    const McNemar pass_test = mcnemar(sr->passes, mt_only->passes);
    const McNemar named_test = mcnemar(mt_only->named_leaks, sr->named_leaks);
    s << "without M_s (mt_only) vs SpecRef, exact McNemar: leaked only without M_s " << leak_test.only_a
      << ", only with " << leak_test.only_b << ", p = " << leak_test.p_value << "; success only with M_s "
      << pass_test.only_a << ", only without " << pass_test.only_b << ", p = " << pass_test.p_value
      << "; leaked (named) only without M_s " << named_test.only_a << ", only with " << named_test.only_b
      << ", p = " << named_test.p_value << "\n";
    // The sign test on the named leak's share, pair by pair (declared before the run that first
    // reported it): which of the two edits has more of its object in the reference's background
    // colour. Ties (both 0, mostly) drop out, as in McNemar's test, which it equals on these signs.
    std::vector<bool> more_without, more_with;
    for (size_t i = 0; i < mt_only->named_shares.size() && i < sr->named_shares.size(); ++i) {
      more_without.push_back(mt_only->named_shares[i] > sr->named_shares[i]);
      more_with.push_back(sr->named_shares[i] > mt_only->named_shares[i]);
    }
    const McNemar share_test = mcnemar(more_without, more_with);
    s << "named leak share, pair by pair (sign test): larger without M_s " << share_test.only_a << ", larger with "
      << share_test.only_b << ", equal " << share_test.neither << ", p = " << share_test.p_value << "\n";
    j["claim_ms_leak"] = {{"a", "mt_only"}, {"b", "specref"}, {"outcome", "leaked"}, {"mcnemar", to_json(leak_test)}};
    j["claim_ms_leak_named"] = {{"a", "mt_only"}, {"b", "specref"}, {"outcome", "leaked (named)"},
                                {"mcnemar", to_json(named_test)}};
    j["claim_ms_leak_share"] = {{"a", "mt_only"}, {"b", "specref"}, {"outcome", "larger named leak share (sign test)"},
                                {"mcnemar", to_json(share_test)}};
    j["claim_ms_success"] = {{"a", "specref"}, {"b", "mt_only"}, {"outcome", "success"}, {"mcnemar", to_json(pass_test)}};
  }
  s << "reference K/V cache " << fixed(t.cache_bytes / 1048576.0, 3) << " MiB fp16 per pair; joint inversion "
    << fixed(t.invert_seconds, 2) << " s per pair\n";
  const int64_t sd15_bytes = specref::planned_cache_bytes(model_config_preset("sd15").unet, 64, 64, 4, 50);
  s << "SD 1.5 at 512x512, 50 steps (from its config): K/V cache " << fixed(sd15_bytes / 1073741824.0, 3)
    << " GiB fp16 (layers 10-15, steps 4-49)\n";
  j["sd15_kv_cache_bytes"] = sd15_bytes;
  report.text = s.str();
  return report;
}

}  // namespace

SpecRefBenchReport run_specref_bench(Pipeline& pipe, const SpecRefBenchOptions& o) {
  torch::NoGradGuard no_grad;
  if (o.pairs < 1) throw Error("pairs: must be at least 1 (got " + std::to_string(o.pairs) + ")");
  if (!o.output.empty()) fs::create_directories(o.output);
  std::vector<PairResult> results;
  ProgressBar bar("bench-specref", o.pairs);
  for (int64_t k = 0; k < o.pairs; ++k) {
    results.push_back(run_pair(pipe, o, k));
    bar.update(k + 1);
  }
  bar.finish();
  SpecRefBenchReport r = report(tally(results), o, pipe.source());
  if (!o.output.empty()) {
    const std::string path = o.output + "/summary.json";
    write_json_file(path, r.json);
    r.text += path + "\n";
  }
  return r;
}

}  // namespace sine::eval
