// sine invert | p2p | specref, and `sine world bench-specref`.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/specref_bench.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "methods/ddim_inversion.h"
#include "methods/local_blend.h"
#include "methods/null_text_inversion.h"
#include "methods/prompt_to_prompt.h"
#include "methods/method_parameters.h"
#include "methods/specref.h"
#include "methods/word_alignment.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

std::vector<std::string> split_list(const std::string& text, char sep = ',') {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string fmt(double v, int precision = 2) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

DDIMConfig parse_schedule(const std::string& name) {
  if (name == "null-text" || name == "p2p") return DDIMConfig::null_text_inversion();
  if (name == "specref") return DDIMConfig::specref();
  if (name == "sd") return DDIMConfig::stable_diffusion();
  throw Error("--schedule: unknown schedule '" + name + "' (known: null-text, specref, sd)");
}

torch::Tensor load_input_image(const std::string& path, const Pipeline& pipe, const std::string& fit) {
  if (!fs::exists(path)) throw Error(path + ": no such image");
  auto image = read_image_rgb(path);
  const int64_t size = pipe.native_size();
  return fit_image(image, size, size, parse_fit_policy(fit));
}

torch::Tensor mask_to_u8(const torch::Tensor& mask, int64_t h, int64_t w) {
  if (!mask.defined()) return torch::full({h, w, 3}, 128, torch::kUInt8);
  namespace F = torch::nn::functional;
  auto m = F::interpolate(mask.to(torch::kFloat32).view({1, 1, mask.size(-2), mask.size(-1)}),
                          F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest));
  return (m.view({h, w, 1}).clamp(0, 1) * 255).round().to(torch::kUInt8).expand({h, w, 3}).contiguous();
}

std::string with_suffix(const std::string& path, const std::string& suffix) {
  fs::path p(path);
  return (p.parent_path() / (p.stem().string() + suffix + p.extension().string())).string();
}

// ---------------------------------------------------------------------------------------------
// invert

struct InvertFlags {
  ModelFlags model;
  std::string image, prompt, output = "inversion.safetensors", recon, fit = "crop", schedule = "null-text";
  int64_t steps = 50, inner_steps = 10;
  double cfg_scale = 7.5, early_stop = 1e-5;
  bool null_text = false;
};

void run_invert(const InvertFlags& f) {
  if (f.prompt.empty()) throw Error("-p/--prompt is required");
  if (f.steps < 1) throw Error("--steps must be at least 1");
  if (f.inner_steps < 1) throw Error("--inner-steps must be at least 1");
  if (f.output.size() < 12 || f.output.substr(f.output.size() - 12) != ".safetensors")
    throw Error("-o/--output must end in .safetensors (got '" + f.output + "')");
  InversionOptions inv;
  inv.steps = f.steps;
  inv.ddim = parse_schedule(f.schedule);
  Pipeline pipe = load_pipeline(f.model);
  auto image = load_input_image(f.image, pipe, f.fit);
  auto z0 = pipe.encode_image(image);
  auto cond = pipe.encode_prompt(f.prompt);
  auto uncond = pipe.encode_prompt("");
  std::vector<torch::Tensor> latents;
  {
    ProgressBar bar("ddim invert", f.steps);
    latents = ddim_invert(pipe, z0, cond, inv, {}, [&](int64_t d, int64_t) { bar.update(d); });
    bar.finish();
  }
  auto target = to_model_input(image);
  auto vae_recon = pipe.decode_latents(z0);
  const double psnr_vae = psnr(vae_recon, target);
  auto rec1 = pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, 1.0, inv));
  auto recg = pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, f.cfg_scale, inv));
  std::cout << "VAE round trip PSNR " << fmt(psnr_vae) << " dB\n";
  std::cout << "DDIM inversion, reconstruction at guidance 1: PSNR " << fmt(psnr(rec1, target)) << " dB\n";
  std::cout << "DDIM inversion, reconstruction at guidance " << fmt(f.cfg_scale, 1) << ": PSNR "
            << fmt(psnr(recg, target)) << " dB\n";
  std::map<std::string, std::string> meta{{"format", "sine-inversion"},
                                          {"prompt", f.prompt},
                                          {"steps", std::to_string(f.steps)},
                                          {"schedule", f.schedule},
                                          {"steps_offset", std::to_string(inv.ddim.steps_offset)},
                                          {"set_alpha_to_one", inv.ddim.set_alpha_to_one ? "true" : "false"},
                                          {"inversion_guidance", "1"},
                                          {"model", pipe.source()},
                                          {"image", f.image},
                                          {"psnr_guidance1", fmt(psnr(rec1, target), 3)}};
  std::map<std::string, torch::Tensor> tensors{{"latents", torch::cat(latents).cpu()}};
  torch::Tensor final_recon = rec1;
  if (f.null_text) {
    NullTextOptions nt;
    nt.inner_steps = f.inner_steps;
    nt.guidance = f.cfg_scale;
    nt.early_stop_epsilon = f.early_stop;
    NullTextResult r;
    {
      ProgressBar bar("null-text", f.steps);
      r = null_text_inversion(pipe, latents, cond, uncond, inv, nt, [&](int64_t d, int64_t) { bar.update(d); });
      bar.finish();
    }
    auto recn = pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, f.cfg_scale, inv, r.embeddings));
    const double p = psnr(recn, target);
    int64_t iters = 0;
    for (auto i : r.iterations) iters += i;
    std::cout << "null-text inversion (" << iters << " Adam steps), reconstruction at guidance "
              << fmt(f.cfg_scale, 1) << ": PSNR " << fmt(p) << " dB (gain " << fmt(p - psnr(recg, target))
              << " dB)\n";
    tensors["null_embeddings"] = torch::cat(r.embeddings).cpu();
    meta["null_text_guidance"] = fmt(f.cfg_scale, 3);
    meta["null_text_inner_steps"] = std::to_string(f.inner_steps);
    meta["psnr_null_text"] = fmt(p, 3);
    final_recon = recn;
  }
  save_safetensors(f.output, tensors, meta);
  std::cout << f.output << "\n";
  if (!f.recon.empty()) {
    GenerationParameters p;
    p.prompt = f.prompt;
    p.set("Steps", f.steps).set("Sampler", f.null_text ? "DDIM inversion + null-text" : "DDIM inversion");
    p.set("CFG scale", f.null_text ? f.cfg_scale : 1.0).set("Model", pipe.model_name());
    write_png(f.recon, from_model_output(final_recon[0]), p.png_text());
    std::cout << f.recon << "\n";
  }
}

// ---------------------------------------------------------------------------------------------
// p2p

struct EditFlags {
  ModelFlags model;
  std::string image, prompt, target, output = "p2p.png", fit = "crop", edit = "auto", inversion, path = "auto";
  std::string reweight, blend_words, blend_substruct, cross_words, grid;
  int64_t steps = 50, inner_steps = 10;
  double cfg_scale = 7.5, cross_replace = 0.8, self_replace = 0.6, blend_threshold = 0.3, blend_start = 0.2;
  bool blend = false, null_text = false;
};

std::map<std::string, float> parse_reweight(const std::string& text) {
  std::map<std::string, float> out;
  for (const auto& item : split_list(text)) {
    auto eq = item.find('=');
    if (eq == std::string::npos) throw Error("--reweight: expected word=factor, got '" + item + "'");
    try {
      out[item.substr(0, eq)] = std::stof(item.substr(eq + 1));
    } catch (const std::exception&) {
      throw Error("--reweight: '" + item.substr(eq + 1) + "' is not a number");
    }
  }
  return out;
}

// "dog=0.2:0.5,cat=0.6" -> per-word cross-replacement bounds (a single number b means (0, b)).
std::map<std::string, p2p::Bounds> parse_cross_words(const std::string& text) {
  std::map<std::string, p2p::Bounds> out;
  for (const auto& item : split_list(text)) {
    auto eq = item.find('=');
    if (eq == std::string::npos) throw Error("--cross-replace-words: expected word=end or word=start:end, got '" + item + "'");
    const std::string value = item.substr(eq + 1);
    try {
      auto colon = value.find(':');
      out[item.substr(0, eq)] = colon == std::string::npos
                                    ? p2p::Bounds{0.0, std::stod(value)}
                                    : p2p::Bounds{std::stod(value.substr(0, colon)), std::stod(value.substr(colon + 1))};
    } catch (const std::exception&) {
      throw Error("--cross-replace-words: '" + value + "' is not a number or start:end");
    }
  }
  return out;
}

void run_p2p(const EditFlags& f) {
  if (f.prompt.empty()) throw Error("-p/--prompt (the source prompt) is required");
  if (f.target.empty()) throw Error("--target (the edited prompt) is required");
  if (f.steps < 1) throw Error("--steps must be at least 1");
  if (f.path != "auto" && f.path != "latents" && f.path != "null-text")
    throw Error("--path: unknown reconstruction path '" + f.path + "' (known: auto, latents, null-text)");
  const auto equalizer_values = parse_reweight(f.reweight);
  const auto cross_words = parse_cross_words(f.cross_words);
  const auto kind = p2p::choose_edit_kind(f.edit, f.prompt, f.target);
  if (kind == p2p::EditKind::replace && p2p::split_words(f.prompt).size() != p2p::split_words(f.target).size())
    throw Error("--edit replace: word swap needs prompts with the same number of words; use --edit refine");
  Pipeline pipe = load_pipeline(f.model);
  auto image = load_input_image(f.image, pipe, f.fit);
  auto z0 = pipe.encode_image(image);
  auto cond = pipe.encode_prompt(f.prompt);
  InversionOptions inv;
  inv.steps = f.steps;
  inv.ddim = DDIMConfig::null_text_inversion();
  p2p::ReconstructionPath path;
  std::vector<torch::Tensor> latents;
  if (!f.inversion.empty()) {
    if (!fs::exists(f.inversion)) throw Error("--inversion: " + f.inversion + ": no such file");
    auto st = SafeTensors::open(f.inversion);
    if (!st.contains("latents")) throw Error("--inversion: " + f.inversion + " has no 'latents' tensor");
    auto all = st.get("latents").to(torch::kFloat32);
    if (all.size(0) != f.steps + 1)
      throw Error("--inversion: " + f.inversion + " holds " + std::to_string(all.size(0) - 1) + " steps, --steps is " +
                  std::to_string(f.steps));
    if (st.metadata().count("schedule")) inv.ddim = parse_schedule(st.metadata().at("schedule"));
    for (int64_t i = 0; i < all.size(0); ++i) latents.push_back(all.narrow(0, i, 1).to(pipe.device()));
    if (st.contains("null_embeddings")) {
      auto e = st.get("null_embeddings").to(torch::kFloat32);
      for (int64_t i = 0; i < e.size(0); ++i) path.null_embeddings.push_back(e.narrow(0, i, 1));
    }
  } else {
    ProgressBar bar("ddim invert", f.steps);
    latents = ddim_invert(pipe, z0, cond, inv, {}, [&](int64_t d, int64_t) { bar.update(d); });
    bar.finish();
  }
  const bool want_null = f.path == "null-text" || (f.path == "auto" && (f.null_text || !path.null_embeddings.empty()));
  if (want_null && path.null_embeddings.empty()) {
    NullTextOptions nt;
    nt.inner_steps = f.inner_steps;
    nt.guidance = f.cfg_scale;
    ProgressBar bar("null-text", f.steps);
    path.null_embeddings = null_text_inversion(pipe, latents, cond, pipe.encode_prompt(""), inv, nt,
                                               [&](int64_t d, int64_t) { bar.update(d); })
                               .embeddings;
    bar.finish();
  }
  if (!want_null) {
    path.null_embeddings.clear();
    path.inversion_latents = latents;
  }
  const auto rules = edit_layer_rules(pipe.config().unet, z0.size(2), z0.size(3));
  p2p::ControllerConfig pc;
  pc.kind = kind;
  pc.cross_replace = {0.0, f.cross_replace};
  pc.self_replace = {0.0, f.self_replace};
  pc.equalizer = equalizer_values;
  pc.cross_replace_words = cross_words;
  pc.num_steps = f.steps;
  p2p::Controller controller(pipe.tokenizer(), f.prompt, f.target, pc, rules.store_max_pixels);
  std::unique_ptr<p2p::LocalBlend> blend;
  if (f.blend || !f.blend_words.empty()) {
    auto bc = p2p::LocalBlendConfig::for_prompts(f.blend_words, f.prompt, f.target, f.blend_threshold, f.blend_start);
    if (!f.blend_substruct.empty()) {
      auto colon = f.blend_substruct.find(':');
      if (colon == std::string::npos) throw Error("--blend-substruct: expected SOURCE_WORDS:TARGET_WORDS");
      bc.source_substruct = split_list(f.blend_substruct.substr(0, colon));
      bc.target_substruct = split_list(f.blend_substruct.substr(colon + 1));
    }
    blend = std::make_unique<p2p::LocalBlend>(pipe.tokenizer(), f.prompt, f.target, bc, rules, f.steps);
  }
  p2p::EditOptions eo;
  eo.steps = f.steps;
  eo.cfg_scale = f.cfg_scale;
  eo.ddim = inv.ddim;
  torch::Tensor x;
  {
    ProgressBar bar("p2p edit", f.steps);
    x = p2p::edit_latents(pipe, f.prompt, f.target, latents.back(), &controller, &controller.store(), blend.get(),
                          path, eo, [&](int64_t d, int64_t) { bar.update(d); });
    bar.finish();
  }
  auto images = pipe.decode_latents(x);
  auto recon = from_model_output(images[0]), edited = from_model_output(images[1]);
  std::cout << "reconstruction path: " << (want_null ? "null-text embeddings" : "inversion latents")
            << "; source reconstruction PSNR " << fmt(psnr(images[0], to_model_input(image))) << " dB\n";
  const auto params = p2p_parameters(pipe, f.prompt, f.target, pc, f.steps, f.cfg_scale, blend != nullptr,
                                     want_null ? "null-text" : "latents", edited.size(0), edited.size(1))
                          .png_text();
  write_png(f.output, edited, params);
  std::cout << f.output << "\n";
  const std::string grid = f.grid.empty() ? with_suffix(f.output, "_grid") : f.grid;
  std::vector<torch::Tensor> cells{image, recon, edited};
  std::vector<std::string> labels{"source", "reconstruction", "edit"};
  if (blend && blend->last_mask().defined()) {
    cells.push_back(mask_to_u8(blend->last_mask()[1][0], image.size(0), image.size(1)));
    labels.push_back("blend mask");
  }
  write_png(grid, make_grid(cells, static_cast<int64_t>(cells.size()), 4, labels), params);
  std::cout << grid << "\n";
}

// ---------------------------------------------------------------------------------------------
// specref

struct SpecRefFlags {
  ModelFlags model;
  std::string source, reference, prompt, target, words, ref_mask, ref_cutout, ref_prompt, masks = "both";
  std::string output = "specref.png", grid, fit = "crop", edit = "auto", blend_words;
  int64_t steps = 50, sr_start = 4, sr_end = 50;
  double cfg_scale = 7.5, threshold = 0.5, cross_replace = 0.8, self_replace = 0.6, blend_threshold = 0.3,
         blend_start = 0.2;
  bool bilinear = false, no_blend = false;
};

torch::Tensor cutout_mask(const std::string& path, int64_t h, int64_t w) {
  if (!fs::exists(path)) throw Error("--ref-cutout: " + path + ": no such image");
  auto rgba = read_image_rgba(path);
  torch::Tensor fg;
  if (rgba.select(2, 3).lt(255).any().item<bool>())
    fg = rgba.select(2, 3).gt(0);
  else
    fg = rgba.narrow(2, 0, 3).gt(0).any(2);  // black-background cut-out: any channel > 0
  namespace F = torch::nn::functional;
  auto m = F::interpolate(fg.to(torch::kFloat32).view({1, 1, fg.size(0), fg.size(1)}),
                          F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest));
  return m.view({h, w});
}

void run_specref_cmd(const SpecRefFlags& f) {
  if (f.prompt.empty()) throw Error("-p/--prompt (the source prompt) is required");
  if (f.target.empty()) throw Error("--target (the edited prompt) is required");
  if (f.words.empty()) throw Error("--words (the edited word(s) of the target prompt) is required");
  if (!f.ref_mask.empty() && !f.ref_cutout.empty()) throw Error("--ref-mask and --ref-cutout are exclusive");
  if (f.steps < 1) throw Error("--steps must be at least 1");
  if (f.sr_start < 0 || f.sr_end > f.steps || f.sr_start >= f.sr_end)
    throw Error("--sr-start/--sr-end: need 0 <= start < end <= steps (got " + std::to_string(f.sr_start) + ", " +
                std::to_string(f.sr_end) + ")");
  if (f.threshold <= 0 || f.threshold > 1) throw Error("--threshold must be in (0, 1]");
  specref::SpecRefConfig c;
  c.steps = f.steps;
  c.cfg_scale = f.cfg_scale;
  c.sr.sr_start = f.sr_start;
  c.sr.sr_end = f.sr_end;
  c.sr.threshold = f.threshold;
  c.sr.bilinear = f.bilinear;
  c.sr.mask_mode = specref::parse_mask_mode(f.masks);
  c.p2p.kind = p2p::choose_edit_kind(f.edit, f.prompt, f.target);
  c.p2p.cross_replace = {0.0, f.cross_replace};
  c.p2p.self_replace = {0.0, f.self_replace};
  c.local_blend = !f.no_blend;
  specref::SpecRefInputs in;
  in.source_prompt = f.prompt;
  in.target_prompt = f.target;
  in.edit_words = split_list(f.words);
  in.reference_prompt = f.ref_prompt;
  if (c.local_blend) {
    c.blend = p2p::LocalBlendConfig::for_prompts(f.blend_words.empty() ? std::string() : f.blend_words, f.prompt, f.target,
                           f.blend_threshold, f.blend_start);
  }
  Pipeline pipe = load_pipeline(f.model);
  in.source = load_input_image(f.source, pipe, f.fit);
  in.reference = load_input_image(f.reference, pipe, f.fit);
  const int64_t H = in.source.size(0), W = in.source.size(1);
  if (!f.ref_mask.empty()) {
    if (!fs::exists(f.ref_mask)) throw Error("--ref-mask: " + f.ref_mask + ": no such image");
    in.ms_pixels = read_mask(f.ref_mask, H, W).view({H, W});
  } else if (!f.ref_cutout.empty()) {
    in.ms_pixels = cutout_mask(f.ref_cutout, H, W);
  }
  for (const auto& word : in.edit_words)
    if (p2p::word_indices(pipe.tokenizer(), f.target, word).empty())
      throw Error("--words: '" + word + "' is not a word of the target prompt '" + f.target + "'");
  auto joint = specref::invert_jointly(pipe, in, c);
  std::cout << "reference K/V cache: " << joint.cache.entries() << " K/V pairs (" << joint.rules.sr_layers.size()
            << " layers x " << (f.sr_end - f.sr_start) << " steps), " << fmt(joint.cache.bytes() / 1048576.0, 3)
            << " MiB fp16\n";
  auto r = specref::edit_with_reference(pipe, joint, in, c);
  if (r.ms_derived)
    std::cout << "M_s: no --ref-mask/--ref-cutout given; derived from the reference's cross-attention to '" << f.words
              << "' in '" << (f.ref_prompt.empty() ? f.target : f.ref_prompt) << "'\n";
  std::cout << "masks: " << specref::mask_mode_name(c.sr.mask_mode) << "; inversion " << fmt(r.invert_seconds)
            << " s, edit " << fmt(r.edit_seconds) << " s\n";
  const auto params = specref_parameters(pipe, in, c, r.ms_derived, r.result.size(0), r.result.size(1)).png_text();
  write_png(f.output, r.result, params);
  std::cout << f.output << "\n";
  const std::string grid = f.grid.empty() ? with_suffix(f.output, "_grid") : f.grid;
  std::vector<torch::Tensor> cells{in.source, in.reference, r.source_recon, r.result, mask_to_u8(r.ms_pixels, H, W),
                                   mask_to_u8(r.mt, H, W), mask_to_u8(r.blend_mask, H, W)};
  std::vector<std::string> labels{"source", "reference", "recon", "result", r.ms_derived ? "M_s (derived)" : "M_s",
                                  "M_t", "blend"};
  write_png(grid, make_grid(cells, static_cast<int64_t>(cells.size()), 4, labels), params);
  std::cout << grid << "\n";
}

void register_bench_specref(CLI::App& app) {
  auto b = std::make_shared<std::pair<ModelFlags, eval::SpecRefBenchOptions>>();
  CLI::App* cmd = world_command(app)->add_subcommand(
      "bench-specref", "judged benchmark of DDIM/null-text inversion, P2P word swap and SpecRef on shapes-world pairs");
  add_model_flags(cmd, b->first);
  auto& o = b->second;
  cmd->add_option("--pairs", o.pairs, "number of (source, reference) pairs")->capture_default_str();
  cmd->add_option("-s,--seed", o.seed, "pair k is drawn from seed + k")->capture_default_str();
  cmd->add_option("--steps", o.steps, "DDIM steps (official: 50)")->capture_default_str();
  cmd->add_option("--cfg-scale", o.cfg_scale, "editing / null-text guidance")->capture_default_str();
  cmd->add_option("--null-text-pairs", o.null_text_pairs, "pairs that also get null-text inversion (slow)")->capture_default_str();
  cmd->add_option("--inner-steps", o.inner_steps, "null-text Adam iterations per step")->capture_default_str();
  cmd->add_flag("!--no-ablations", o.ablations, "skip the M_s-only / M_t-only / neither / derived-M_s runs");
  cmd->add_option("-o,--output", o.output, "folder for per-pair grids and summary.json");
  on_run(cmd, [b] {
    if (b->second.pairs < 1) throw Error("--pairs must be at least 1");
    if (b->second.steps < 2) throw Error("--steps must be at least 2");
    Pipeline pipe = load_pipeline(b->first);
    auto report = eval::run_specref_bench(pipe, b->second);
    std::cout << report.text;
  });
}

void add_fit(CLI::App* cmd, std::string& fit) {
  cmd->add_option("--fit", fit, kImageFitPolicyHelp)->capture_default_str();
}

}  // namespace

void register_specref(CLI::App& app) {
  auto inv = std::make_shared<InvertFlags>();
  CLI::App* invert = app.add_subcommand("invert", "DDIM (and null-text) inversion of a real image; prints reconstruction PSNR");
  add_model_flags(invert, inv->model);
  invert->add_option("image", inv->image, "the image to invert")->required();
  invert->add_option("-p,--prompt", inv->prompt, "the image's caption");
  invert->add_option("-o,--output", inv->output, "latents (+ null-text embeddings) .safetensors")->capture_default_str();
  invert->add_option("--recon", inv->recon, "also write the reconstruction PNG");
  invert->add_option("--steps", inv->steps, "DDIM steps")->capture_default_str();
  invert->add_option("--cfg-scale", inv->cfg_scale, "guidance of the reconstruction check and null-text")->capture_default_str();
  invert->add_option("--schedule", inv->schedule, "timestep convention: null-text (980..0, final alpha_0) or specref (981..1, final 1)")->capture_default_str();
  invert->add_flag("--null-text", inv->null_text, "optimise per-step unconditional embeddings (null-text inversion)");
  invert->add_option("--inner-steps", inv->inner_steps, "null-text Adam iterations per step")->capture_default_str();
  invert->add_option("--early-stop", inv->early_stop, "null-text early stop epsilon (+ i*2e-5)")->capture_default_str();
  add_fit(invert, inv->fit);
  on_run(invert, [inv] { run_invert(*inv); });

  auto e = std::make_shared<EditFlags>();
  CLI::App* p2p_cmd = app.add_subcommand("p2p", "Prompt-to-Prompt edit of a real image (inversion + attention control)");
  add_model_flags(p2p_cmd, e->model);
  p2p_cmd->add_option("image", e->image, "the image to edit")->required();
  p2p_cmd->add_option("-p,--prompt", e->prompt, "source prompt (describes the image)");
  p2p_cmd->add_option("--target", e->target, "edited prompt");
  p2p_cmd->add_option("-o,--output", e->output, "edited image PNG (a _grid PNG is written beside it)")->capture_default_str();
  p2p_cmd->add_option("--grid", e->grid, "grid PNG path (source, reconstruction, edit, mask)");
  p2p_cmd->add_option("--edit", e->edit, "replace (word swap), refine, none (reweight only), auto")->capture_default_str();
  p2p_cmd->add_option("--reweight", e->reweight, "equalizer: word=factor[,word=factor] (target prompt words)");
  p2p_cmd->add_option("--cross-replace", e->cross_replace, "cross-attention replacement until this fraction of steps")->capture_default_str();
  p2p_cmd->add_option("--cross-replace-words", e->cross_words, "per-word cross replacement: word=end or word=start:end, comma-separated");
  p2p_cmd->add_option("--blend-substruct", e->blend_substruct, "LocalBlend words to cut out, SOURCE:TARGET (threshold th[1], unpooled)");
  p2p_cmd->add_option("--self-replace", e->self_replace, "self-attention replacement until this fraction of steps")->capture_default_str();
  p2p_cmd->add_flag("--blend", e->blend, "LocalBlend on the words that differ");
  p2p_cmd->add_option("--blend-words", e->blend_words, "LocalBlend words SOURCE:TARGET (comma-separated each)");
  p2p_cmd->add_option("--blend-threshold", e->blend_threshold, "LocalBlend threshold")->capture_default_str();
  p2p_cmd->add_option("--blend-start", e->blend_start, "LocalBlend from this fraction of steps")->capture_default_str();
  p2p_cmd->add_option("--inversion", e->inversion, "latents/null-text embeddings from `sine invert`");
  p2p_cmd->add_option("--path", e->path, "source reconstruction: latents (overwrite with inversion latents), null-text, auto")->capture_default_str();
  p2p_cmd->add_flag("--null-text", e->null_text, "run null-text inversion here (when no --inversion file has it)");
  p2p_cmd->add_option("--inner-steps", e->inner_steps, "null-text Adam iterations per step")->capture_default_str();
  p2p_cmd->add_option("--steps", e->steps, "DDIM steps")->capture_default_str();
  p2p_cmd->add_option("--cfg-scale", e->cfg_scale, "guidance scale")->capture_default_str();
  add_fit(p2p_cmd, e->fit);
  on_run(p2p_cmd, [e] { run_p2p(*e); });

  auto s = std::make_shared<SpecRefFlags>();
  CLI::App* sr = app.add_subcommand("specref", "SpecRef: edit an object to look like a reference image's object");
  add_model_flags(sr, s->model);
  sr->add_option("source", s->source, "the image to edit")->required();
  sr->add_option("reference", s->reference, "the reference image")->required();
  sr->add_option("-p,--prompt", s->prompt, "source prompt");
  sr->add_option("--target", s->target, "edited prompt");
  sr->add_option("--words", s->words, "edited word(s) of the target prompt, comma-separated (M_t, LocalBlend)");
  sr->add_option("--ref-mask", s->ref_mask, "reference foreground mask M_s (white = object)");
  sr->add_option("--ref-cutout", s->ref_cutout, "reference cut-out on black/transparent (M_s = any channel > 0)");
  sr->add_option("--ref-prompt", s->ref_prompt, "prompt for deriving M_s from the reference's cross-attention (default: --target)");
  sr->add_option("--masks", s->masks, "SR masks: both, ms (M_s only), mt (M_t only), none")->capture_default_str();
  sr->add_option("-o,--output", s->output, "result PNG (a _grid PNG is written beside it)")->capture_default_str();
  sr->add_option("--grid", s->grid, "grid PNG path (source, reference, recon, result, M_s, M_t, blend)");
  sr->add_option("--steps", s->steps, "DDIM steps")->capture_default_str();
  sr->add_option("--cfg-scale", s->cfg_scale, "guidance scale")->capture_default_str();
  sr->add_option("--sr-start", s->sr_start, "first SR-attention step")->capture_default_str();
  sr->add_option("--sr-end", s->sr_end, "SR-attention before this step")->capture_default_str();
  sr->add_option("--threshold", s->threshold, "M_s/M_t threshold (>=)")->capture_default_str();
  sr->add_flag("--bilinear", s->bilinear, "bilinear mask resizing (official default: nearest)");
  sr->add_option("--edit", s->edit, "P2P edit: replace, refine, auto")->capture_default_str();
  sr->add_option("--cross-replace", s->cross_replace, "P2P cross replacement fraction")->capture_default_str();
  sr->add_option("--self-replace", s->self_replace, "P2P self replacement fraction")->capture_default_str();
  sr->add_flag("--no-blend", s->no_blend, "no LocalBlend");
  sr->add_option("--blend-words", s->blend_words, "LocalBlend words SOURCE:TARGET (default: the differing words)");
  sr->add_option("--blend-threshold", s->blend_threshold, "LocalBlend threshold")->capture_default_str();
  sr->add_option("--blend-start", s->blend_start, "LocalBlend start fraction")->capture_default_str();
  add_fit(sr, s->fit);
  on_run(sr, [s] { run_specref_cmd(*s); });

  register_bench_specref(app);
}

}  // namespace sine
