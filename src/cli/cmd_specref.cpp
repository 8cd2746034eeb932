// sine invert | p2p | specref, and `sine world bench-specref`.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/validate.h"
#include "core/progress.h"
#include "eval/specref_bench.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/p2p/local_blend.h"
#include "methods/inversion/null_text_inversion.h"
#include "methods/p2p/prompt_to_prompt.h"
#include "methods/method_parameters.h"
#include "methods/p2p/real_image_edit.h"
#include "methods/specref/specref.h"
#include "methods/p2p/word_alignment.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

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
  InvertConfig config;
  std::string image, output = "inversion.safetensors", recon, fit = "crop";
};

void run_invert(const InvertFlags& f) {
  f.config.validate();
  if (f.output.size() < 12 || f.output.substr(f.output.size() - 12) != ".safetensors")
    throw Error("-o/--output must end in .safetensors (got '" + f.output + "')");
  Pipeline pipe = load_pipeline(f.model);
  auto image = load_input_image(f.image, pipe, f.fit);
  auto r = invert_image(pipe, image, f.config);
  const auto& c = f.config;
  std::cout << "VAE round trip PSNR " << fixed(r.psnr_vae, 2) << " dB\n";
  std::cout << "DDIM inversion, reconstruction at guidance 1: PSNR " << fixed(r.psnr_guidance1, 2) << " dB\n";
  std::cout << "DDIM inversion, reconstruction at guidance " << fixed(c.cfg_scale, 1) << ": PSNR " << fixed(r.psnr_guidance, 2)
            << " dB\n";
  if (c.null_text)
    std::cout << "null-text inversion (" << r.adam_steps << " Adam steps), reconstruction at guidance "
              << fixed(c.cfg_scale, 1) << ": PSNR " << fixed(r.psnr_null_text, 2) << " dB (gain "
              << fixed(r.psnr_null_text - r.psnr_guidance, 2) << " dB)\n";
  r.inversion.info["image"] = fs::path(f.image).filename().string();
  save_inversion(f.output, r.inversion);
  std::cout << f.output << "\n";
  if (!f.recon.empty()) {
    write_png(f.recon, r.reconstruction, invert_parameters(pipe, c).png_text());
    std::cout << f.recon << "\n";
  }
}

// ---------------------------------------------------------------------------------------------
// p2p

struct EditFlags {
  ModelFlags model;
  P2PEditConfig config;
  std::string image, output = "p2p.png", fit = "crop", inversion, reweight, blend_substruct, cross_words, grid;
};

void run_p2p(EditFlags f) {
  auto& c = f.config;
  c.reweight = parse_reweight(f.reweight);
  c.cross_replace_words = parse_cross_replace_words(f.cross_words);
  if (!f.blend_substruct.empty()) {
    auto colon = f.blend_substruct.find(':');
    if (colon == std::string::npos) throw Error("--blend-substruct: expected SOURCE_WORDS:TARGET_WORDS");
    c.blend_substruct_source = split_list(f.blend_substruct.substr(0, colon));
    c.blend_substruct_target = split_list(f.blend_substruct.substr(colon + 1));
  }
  Pipeline pipe = load_pipeline(f.model);
  c.validate(pipe.tokenizer());
  auto image = load_input_image(f.image, pipe, f.fit);
  std::optional<Inversion> inversion;
  if (!f.inversion.empty()) {
    try {
      inversion = load_inversion(f.inversion, pipe.device());
    } catch (const Error& e) {
      throw Error(std::string("--inversion: ") + e.what());
    }
  }
  auto r = p2p_edit_image(pipe, image, c, inversion ? &*inversion : nullptr);
  std::cout << "reconstruction path: " << (r.null_text_path ? "null-text embeddings" : "inversion latents")
            << "; source reconstruction PSNR " << fixed(r.psnr_reconstruction, 2) << " dB\n";
  const auto params = p2p_parameters(pipe, c.source, c.target, r.controller, c.steps, c.cfg_scale, r.blended,
                                     r.null_text_path ? "null-text" : "latents", r.edited.size(0), r.edited.size(1))
                          .png_text();
  write_png(f.output, r.edited, params);
  std::cout << f.output << "\n";
  const std::string grid = f.grid.empty() ? with_suffix(f.output, "_grid") : f.grid;
  std::vector<torch::Tensor> cells{image, r.reconstruction, r.edited};
  std::vector<std::string> labels{"source", "reconstruction", "edit"};
  if (r.blend_mask.defined()) {
    cells.push_back(mask_to_u8(r.blend_mask, image.size(0), image.size(1)));
    labels.push_back("blend mask");
  }
  write_png(grid, make_grid(cells, static_cast<int64_t>(cells.size()), 4, labels), params);
  std::cout << grid << "\n";
}

// ---------------------------------------------------------------------------------------------
// specref

struct SpecRefFlags {
  ModelFlags model;
  specref::SpecRefOptions options;
  std::string source, reference, prompt, target, words, ref_mask, ref_cutout, ref_prompt;
  std::string output = "specref.png", grid, fit = "crop";
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
  if (!f.ref_mask.empty() && !f.ref_cutout.empty()) throw Error("--ref-mask and --ref-cutout are exclusive");
  specref::SpecRefInputs in;
  in.source_prompt = f.prompt;
  in.target_prompt = f.target;
  in.edit_words = split_list(f.words);
  in.reference_prompt = f.ref_prompt;
  Pipeline pipe = load_pipeline(f.model);
  const specref::SpecRefConfig c = f.options.config(pipe.tokenizer(), in);
  in.source = load_input_image(f.source, pipe, f.fit);
  in.reference = load_input_image(f.reference, pipe, f.fit);
  const int64_t H = in.source.size(0), W = in.source.size(1);
  if (!f.ref_mask.empty()) {
    if (!fs::exists(f.ref_mask)) throw Error("--ref-mask: " + f.ref_mask + ": no such image");
    in.ms_pixels = read_mask(f.ref_mask, H, W).view({H, W});
  } else if (!f.ref_cutout.empty()) {
    in.ms_pixels = cutout_mask(f.ref_cutout, H, W);
  }
  auto joint = specref::invert_jointly(pipe, in, c);
  std::cout << "reference K/V cache: " << joint.cache.entries() << " K/V pairs (" << joint.rules.sr_layers.size()
            << " layers x " << (c.sr.sr_end - c.sr.sr_start) << " steps), " << fixed(joint.cache.bytes() / 1048576.0, 3)
            << " MiB fp16\n";
  auto r = specref::edit_with_reference(pipe, joint, in, c);
  if (r.ms_derived)
    std::cout << "M_s: no --ref-mask/--ref-cutout given; derived from the reference's cross-attention to '" << f.words
              << "' in '" << (f.ref_prompt.empty() ? f.target : f.ref_prompt) << "'\n";
  std::cout << "masks: " << specref::mask_mode_name(c.sr.mask_mode) << "; inversion " << fixed(r.invert_seconds, 2)
            << " s, edit " << fixed(r.edit_seconds, 2) << " s\n";
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
  cmd->add_flag("--textured-references", o.textured_references,
                "references on checkered, striped, dotted or noisy backgrounds (the paper's Fig. 4 leak)");
  cmd->add_flag("--unnamed-appearance", o.unnamed_appearance,
                "the target prompt names only the reference object's shape: color and pattern come from the reference");
  add_canvas_size_option(cmd, o.size, "the pairs");
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

// Prompt-to-Prompt's controller and LocalBlend, the same flags for `p2p` and `specref`: both configs
// (P2PEditConfig, specref::SpecRefOptions) name these fields alike.
template <class Config>
void add_p2p_control_flags(CLI::App* cmd, Config& c, const std::string& edits) {
  cmd->add_option("--edit", c.edit, edits)->capture_default_str();
  cmd->add_option("--cross-replace", c.cross_replace, "cross-attention replacement until this fraction of steps")
      ->capture_default_str();
  cmd->add_option("--self-replace", c.self_replace, "self-attention replacement until this fraction of steps")
      ->capture_default_str();
  cmd->add_option("--blend-words", c.blend_words, "LocalBlend words SOURCE:TARGET, comma-separated each (default: "
                                                  "the words that differ)");
  cmd->add_option("--blend-threshold", c.blend_threshold, "LocalBlend threshold")->capture_default_str();
  cmd->add_option("--blend-start", c.blend_start, "LocalBlend from this fraction of steps")->capture_default_str();
}

}  // namespace

void register_specref(CLI::App& app) {
  auto inv = std::make_shared<InvertFlags>();
  CLI::App* invert = app.add_subcommand("invert", "DDIM (and null-text) inversion of a real image; prints reconstruction PSNR");
  add_model_flags(invert, inv->model);
  invert->add_option("image", inv->image, "the image to invert")->required();
  invert->add_option("-p,--prompt", inv->config.prompt, "the image's caption");
  invert->add_option("-o,--output", inv->output, "latents (+ null-text embeddings) .safetensors")->capture_default_str();
  invert->add_option("--recon", inv->recon, "also write the reconstruction PNG");
  invert->add_option("--steps", inv->config.steps, "DDIM steps")->capture_default_str();
  invert->add_option("--cfg-scale", inv->config.cfg_scale, "guidance of the reconstruction check and null-text")->capture_default_str();
  invert->add_option("--schedule", inv->config.schedule, "timestep convention: null-text (980..0, final alpha_0) or specref (981..1, final 1)")->capture_default_str();
  invert->add_flag("--null-text", inv->config.null_text, "optimise per-step unconditional embeddings (null-text inversion)");
  invert->add_option("--inner-steps", inv->config.inner_steps, "null-text Adam iterations per step")->capture_default_str();
  invert->add_option("--early-stop", inv->config.early_stop, "null-text early stop epsilon (+ i*2e-5)")->capture_default_str();
  add_fit(invert, inv->fit);
  on_run(invert, [inv] { run_invert(*inv); });

  auto e = std::make_shared<EditFlags>();
  CLI::App* p2p_cmd = app.add_subcommand("p2p", "Prompt-to-Prompt edit of a real image (inversion + attention control)");
  add_model_flags(p2p_cmd, e->model);
  p2p_cmd->add_option("image", e->image, "the image to edit")->required();
  p2p_cmd->add_option("-p,--prompt", e->config.source, "source prompt (describes the image)");
  p2p_cmd->add_option("--target", e->config.target, "edited prompt");
  p2p_cmd->add_option("-o,--output", e->output, "edited image PNG (a _grid PNG is written beside it)")->capture_default_str();
  p2p_cmd->add_option("--grid", e->grid, "grid PNG path (source, reconstruction, edit, mask)");
  p2p_cmd->add_option("--reweight", e->reweight, "equalizer: word=factor[,word=factor] (target prompt words)");
  p2p_cmd->add_option("--cross-replace-words", e->cross_words, "per-word cross replacement: word=end or word=start:end, comma-separated");
  p2p_cmd->add_option("--blend-substruct", e->blend_substruct, "LocalBlend words to cut out, SOURCE:TARGET (threshold th[1], unpooled)");
  add_p2p_control_flags(p2p_cmd, e->config, "replace (word swap), refine, none (reweight only), auto");
  p2p_cmd->add_flag("--blend", e->config.local_blend, "LocalBlend (on --blend-words, or the words that differ)");
  p2p_cmd->add_option("--inversion", e->inversion, "latents/null-text embeddings from `sine invert`");
  p2p_cmd->add_option("--path", e->config.path, "source reconstruction: latents (overwrite with inversion latents), null-text, auto")->capture_default_str();
  p2p_cmd->add_flag("--null-text", e->config.null_text, "run null-text inversion here (when no --inversion file has it)");
  p2p_cmd->add_option("--inner-steps", e->config.inner_steps, "null-text Adam iterations per step")->capture_default_str();
  p2p_cmd->add_option("--steps", e->config.steps, "DDIM steps")->capture_default_str();
  p2p_cmd->add_option("--cfg-scale", e->config.cfg_scale, "guidance scale")->capture_default_str();
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
  auto& o = s->options;
  sr->add_option("--masks", o.masks, "SR masks: both, ms (M_s only), mt (M_t only), none")->capture_default_str();
  sr->add_option("-o,--output", s->output, "result PNG (a _grid PNG is written beside it)")->capture_default_str();
  sr->add_option("--grid", s->grid, "grid PNG path (source, reference, recon, result, M_s, M_t, blend)");
  sr->add_option("--steps", o.steps, "DDIM steps")->capture_default_str();
  sr->add_option("--cfg-scale", o.cfg_scale, "guidance scale")->capture_default_str();
  sr->add_option("--sr-start", o.sr_start, "first SR-attention step")->capture_default_str();
  sr->add_option("--sr-end", o.sr_end, "SR-attention before this step (default: to the last step)");
  sr->add_option("--threshold", o.threshold, "M_s/M_t threshold (>=)")->capture_default_str();
  sr->add_flag("--bilinear", o.bilinear, "bilinear mask resizing (official default: nearest)");
  add_p2p_control_flags(sr, o, "P2P edit: replace, refine, auto");
  sr->add_flag("!--no-blend", o.local_blend, "no LocalBlend");
  add_fit(sr, s->fit);
  on_run(sr, [s] { run_specref_cmd(*s); });

  register_bench_specref(app);
}

}  // namespace sine
