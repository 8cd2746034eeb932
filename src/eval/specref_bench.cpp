#include "eval/specref_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <random>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/image.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/p2p/local_blend.h"
#include "methods/inversion/null_text_inversion.h"
#include "methods/p2p/prompt_to_prompt.h"
#include "methods/specref/specref.h"
#include "methods/p2p/word_alignment.h"
#include "models/presets.h"
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

Pair make_pair_scene(uint64_t seed, int64_t size, bool textured_reference) {
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

// A leak counts when a tenth of the edited object's pixels take the reference's background.
constexpr double kLeakedShare = 0.1;

struct Tally {
  int64_t n = 0, pass = 0, color = 0, shape = 0, pattern = 0;
  double bg_psnr = 0, leak = 0, seconds = 0;
  std::vector<bool> passes, leaks;  // per pair, in pair order (paired tests)
  void add(const world::Verdict& v, double psnr, double lk, double s) {
    ++n;
    pass += v.pass;
    passes.push_back(v.pass);
    leaks.push_back(lk >= kLeakedShare);
    if (!v.objects.empty() && v.objects[0].found >= 0) {
      color += v.objects[0].color_ok;
      shape += v.objects[0].shape_ok;
      pattern += v.objects[0].pattern_ok;
    }
    bg_psnr += psnr;
    leak += lk;
    seconds += s;
  }
  int64_t leaked() const { return std::count(leaks.begin(), leaks.end(), true); }
  nlohmann::json json() const {
    const double d = std::max<int64_t>(n, 1);
    return {{"n", n},          {"success", pass / d},   {"color", color / d},         {"shape", shape / d},
            {"pattern", pattern / d}, {"background_psnr", bg_psnr / d}, {"reference_bg_leak", leak / d},
            {"seconds_per_edit", seconds / d}, {"success_interval", to_json(wilson(pass, n))},
            {"leaked", to_json(wilson(leaked(), n))}};
  }
};

std::string pct(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(0) << 100 * v << "%";
  return s.str();
}

std::string num(double v, int p = 2) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(p) << v;
  return s.str();
}

torch::Tensor mask_u8(const torch::Tensor& m, int64_t size) {
  if (!m.defined()) return torch::full({size, size, 3}, 128, torch::kUInt8);
  namespace F = torch::nn::functional;
  auto x = F::interpolate(m.to(torch::kFloat32).view({1, 1, m.size(-2), m.size(-1)}),
                          F::InterpolateFuncOptions().size(std::vector<int64_t>{size, size}).mode(torch::kNearest));
  return (x.view({size, size, 1}).clamp(0, 1) * 255).round().to(torch::kUInt8).expand({size, size, 3}).contiguous();
}

}  // namespace

SpecRefBenchReport run_specref_bench(Pipeline& pipe, const SpecRefBenchOptions& o) {
  torch::NoGradGuard no_grad;
  const int64_t size = pipe.native_size();
  if (!o.output.empty()) fs::create_directories(o.output);
  const DDIMConfig nt_schedule = DDIMConfig::null_text_inversion();
  InversionOptions inv;
  inv.steps = o.steps;
  inv.ddim = nt_schedule;

  double psnr_vae = 0, psnr_g1 = 0, psnr_g = 0, psnr_nt = 0, psnr_g_nt_subset = 0;
  int64_t nt_count = 0;
  Tally p2p_tally, sr_tally;
  std::map<std::string, Tally> ablation;
  int64_t cache_bytes = 0;
  double invert_seconds = 0;
  nlohmann::json per_pair = nlohmann::json::array();
  const std::vector<std::pair<std::string, specref::MaskMode>> modes = {
      {"ms_only", specref::MaskMode::ms_only},
      {"mt_only", specref::MaskMode::mt_only},
      {"neither", specref::MaskMode::none}};

  ProgressBar bar("bench-specref", o.pairs);
  for (int64_t k = 0; k < o.pairs; ++k) {
    Pair p = make_pair_scene(o.seed + static_cast<uint64_t>(k), size, o.textured_references);
    nlohmann::json rec{{"seed", o.seed + k}, {"source", p.source_prompt}, {"target", p.target_prompt},
                       {"reference", world::caption(p.reference)}};
    auto target = to_model_input(p.source_image);
    auto z0 = pipe.encode_image(p.source_image);
    auto cond = pipe.encode_prompt(p.source_prompt);
    auto uncond = pipe.encode_prompt("");

    // 1. Inversion (null-text notebook convention).
    auto latents = ddim_invert(pipe, z0, cond, inv);
    const double v = psnr(pipe.decode_latents(z0), target);
    const double g1 = psnr(pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, 1.0, inv)), target);
    const double g = psnr(pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, o.cfg_scale, inv)), target);
    psnr_vae += v;
    psnr_g1 += g1;
    psnr_g += g;
    rec["psnr_vae"] = v;
    rec["psnr_ddim_g1"] = g1;
    rec["psnr_ddim_cfg"] = g;
    if (k < o.null_text_pairs) {
      NullTextOptions nt;
      nt.inner_steps = o.inner_steps;
      nt.guidance = o.cfg_scale;
      torch::Tensor rec_nt;
      {
        auto r = null_text_inversion(pipe, latents, cond, uncond, inv, nt);
        rec_nt = pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, o.cfg_scale, inv, r.embeddings));
      }
      const double pn = psnr(rec_nt, target);
      psnr_nt += pn;
      psnr_g_nt_subset += g;
      ++nt_count;
      rec["psnr_null_text_cfg"] = pn;
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
    invert_seconds += joint.seconds;
    cache_bytes = joint.cache.bytes();

    torch::Tensor p2p_image;
    {
      auto t0 = std::chrono::steady_clock::now();
      auto rules = joint.rules;
      p2p::ControllerConfig pc = c.p2p;
      pc.num_steps = o.steps;
      p2p::Controller controller(pipe.tokenizer(), p.source_prompt, p.target_prompt, pc, rules.store_max_pixels);
      p2p::LocalBlend blend(pipe.tokenizer(), p.source_prompt, p.target_prompt, c.blend, rules, o.steps);
      p2p::EditOptions eo;
      eo.steps = o.steps;
      eo.cfg_scale = o.cfg_scale;
      eo.ddim = c.ddim;
      p2p::ReconstructionPath path;
      path.inversion_latents = joint.source_latents;
      auto x = p2p::edit_latents(pipe, p.source_prompt, p.target_prompt, joint.source_latents.back(), &controller,
                                 &controller.store(), &blend, path, eo);
      p2p_image = from_model_output(pipe.decode_latents(x.narrow(0, 1, 1))[0]);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto verdict = world::judge(p2p_image, &p.expected).verdict.value();
      const double bg = masked_psnr(p2p_image, p.source_image, p.keep);
      const double leak = reference_background_leak(p2p_image, p);
      p2p_tally.add(verdict, bg, leak, secs);
      rec["p2p"] = {{"pass", verdict.pass}, {"background_psnr", bg}, {"reference_bg_leak", leak}};
    }

    // 3. SpecRef with the exact reference mask, then the ablations.
    auto r = specref::edit_with_reference(pipe, joint, in, c, false);
    {
      auto verdict = world::judge(r.result, &p.expected).verdict.value();
      const double bg = masked_psnr(r.result, p.source_image, p.keep);
      const double leak = reference_background_leak(r.result, p);
      sr_tally.add(verdict, bg, leak, r.edit_seconds);
      rec["specref"] = {{"pass", verdict.pass}, {"background_psnr", bg}, {"reference_bg_leak", leak}};
    }
    std::vector<torch::Tensor> cells{p.source_image, p.reference_image, r.source_recon, p2p_image, r.result,
                                     mask_u8(r.ms_layer, size), mask_u8(r.mt, size)};
    std::vector<std::string> labels{"source", "reference", "recon", "p2p", "specref", "M_s", "M_t"};
    if (o.ablations) {
      for (const auto& [name, mode] : modes) {
        specref::SpecRefConfig ca = c;
        ca.sr.mask_mode = mode;
        auto ra = specref::edit_with_reference(pipe, joint, in, ca, false);
        auto verdict = world::judge(ra.result, &p.expected).verdict.value();
        const double bg = masked_psnr(ra.result, p.source_image, p.keep);
        const double leak = reference_background_leak(ra.result, p);
        ablation[name].add(verdict, bg, leak, ra.edit_seconds);
        rec[name] = {{"pass", verdict.pass}, {"background_psnr", bg}, {"reference_bg_leak", leak}};
        cells.push_back(ra.result);
        labels.push_back(name);
      }
      specref::SpecRefInputs derived = in;
      derived.ms_pixels = torch::Tensor();
      auto rd = specref::edit_with_reference(pipe, joint, derived, c, false);
      auto verdict = world::judge(rd.result, &p.expected).verdict.value();
      const double bg = masked_psnr(rd.result, p.source_image, p.keep);
      const double leak = reference_background_leak(rd.result, p);
      ablation["derived_ms"].add(verdict, bg, leak, rd.edit_seconds);
      // IoU of the derived M_s with the exact mask.
      auto a = rd.ms_pixels.ge(0.5), b = p.reference_mask.ge(0.5);
      const double iou = a.logical_and(b).sum().item<double>() / std::max(1.0, a.logical_or(b).sum().item<double>());
      rec["derived_ms"] = {{"pass", verdict.pass}, {"background_psnr", bg}, {"reference_bg_leak", leak}, {"ms_iou", iou}};
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
    per_pair.push_back(rec);
    bar.update(k + 1);
  }
  bar.finish();

  const double n = static_cast<double>(o.pairs);
  SpecRefBenchReport report;
  auto& j = report.json;
  j["pairs"] = o.pairs;
  j["textured_references"] = o.textured_references;
  j["steps"] = o.steps;
  j["cfg_scale"] = o.cfg_scale;
  j["model"] = pipe.source();
  j["inversion"] = {{"psnr_vae_roundtrip", psnr_vae / n},
                    {"psnr_ddim_guidance1", psnr_g1 / n},
                    {"psnr_ddim_cfg", psnr_g / n},
                    {"null_text_pairs", nt_count},
                    {"psnr_null_text_cfg", nt_count ? psnr_nt / nt_count : 0.0},
                    {"null_text_gain", nt_count ? (psnr_nt - psnr_g_nt_subset) / nt_count : 0.0}};
  j["p2p_word_swap"] = p2p_tally.json();
  j["specref"] = sr_tally.json();
  for (const auto& [name, t] : ablation) j["ablation_" + name] = t.json();
  j["kv_cache_bytes"] = cache_bytes;
  j["joint_inversion_seconds"] = invert_seconds / n;
  j["per_pair"] = per_pair;

  std::ostringstream t;
  t << "bench-specref: " << o.pairs << " pairs, " << o.steps << " steps, CFG " << num(o.cfg_scale, 1) << ", model "
    << pipe.source() << "\n";
  t << "inversion PSNR (dB): VAE round trip " << num(psnr_vae / n) << ", DDIM guidance 1 " << num(psnr_g1 / n)
    << ", DDIM at CFG " << num(o.cfg_scale, 1) << " " << num(psnr_g / n);
  if (nt_count)
    t << ", null-text at CFG " << num(o.cfg_scale, 1) << " " << num(psnr_nt / nt_count) << " (gain "
      << num((psnr_nt - psnr_g_nt_subset) / nt_count) << " on " << nt_count << " pairs)";
  t << "\n";
  auto line = [&](const std::string& name, const Tally& tl) {
    auto js = tl.json();
    t << "  " << std::left << std::setw(14) << name << " success " << std::setw(5) << pct(js["success"])
      << " color " << std::setw(5) << pct(js["color"]) << " shape " << std::setw(5) << pct(js["shape"]) << " pattern "
      << std::setw(5) << pct(js["pattern"]) << " bg PSNR " << num(js["background_psnr"]) << " dB  ref-bg leak "
      << pct(js["reference_bg_leak"]) << "  " << num(js["seconds_per_edit"]) << " s/edit\n";
  };
  t << "edits (judged against the source scene with the object's color/shape/pattern from the reference):\n";
  line("p2p swap", p2p_tally);
  line("specref", sr_tally);
  for (const auto& [name, tl] : ablation) line(name, tl);
  t << "(leaked: a tenth or more of the edited object in the reference's background colors; rate [95% Wilson])\n";
  auto leaked_line = [&](const std::string& name, const Tally& tl) {
    t << "  " << std::left << std::setw(14) << name << " success " << format_rate(wilson(tl.pass, tl.n)) << "  leaked "
      << format_rate(wilson(tl.leaked(), tl.n)) << "\n";
  };
  leaked_line("p2p swap", p2p_tally);  // no reference at all: the measure's floor
  leaked_line("specref", sr_tally);
  for (const auto& [name, tl] : ablation) leaked_line(name, tl);
  // Fig. 4's claim, case by case: without M_s the reference's background leaks; with it, it does not.
  if (ablation.count("mt_only")) {
    const McNemar leak_test = mcnemar(ablation["mt_only"].leaks, sr_tally.leaks);
    const McNemar pass_test = mcnemar(sr_tally.passes, ablation["mt_only"].passes);
    t << "without M_s (mt_only) vs SpecRef, exact McNemar: leaked only without M_s " << leak_test.only_a
      << ", only with " << leak_test.only_b << ", p = " << leak_test.p_value << "; success only with M_s "
      << pass_test.only_a << ", only without " << pass_test.only_b << ", p = " << pass_test.p_value << "\n";
    j["claim_ms_leak"] = {{"a", "mt_only"}, {"b", "specref"}, {"outcome", "leaked"}, {"mcnemar", to_json(leak_test)}};
    j["claim_ms_success"] = {{"a", "specref"}, {"b", "mt_only"}, {"outcome", "success"}, {"mcnemar", to_json(pass_test)}};
  }
  t << "reference K/V cache " << num(cache_bytes / 1048576.0, 3) << " MiB fp16 per pair; joint inversion "
    << num(invert_seconds / n) << " s per pair\n";
  const int64_t sd15_bytes = specref::planned_cache_bytes(model_config_preset("sd15").unet, 64, 64, 4, 50);
  t << "SD 1.5 at 512x512, 50 steps (from its config): K/V cache " << num(sd15_bytes / 1073741824.0, 3)
    << " GiB fp16 (layers 10-15, steps 4-49)\n";
  j["sd15_kv_cache_bytes"] = sd15_bytes;
  report.text = t.str();
  if (!o.output.empty()) {
    const std::string path = o.output + "/summary.json";
    write_atomically(path, [&](const std::string& tmp) {
      std::ofstream f(tmp);
      f << j.dump(2) << "\n";
      if (!f) throw Error(path + ": cannot write");
    });
    report.text += path + "\n";
  }
  return report;
}

}  // namespace sine::eval
