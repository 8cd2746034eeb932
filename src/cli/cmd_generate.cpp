#include <filesystem>
#include <iostream>
#include <optional>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "pipeline/prompt_loras.h"

namespace sine {

namespace {

struct GenerateFlags {
  ModelFlags model;
  GenerateOptions gen;
  std::string init_image;
  std::string mask;
  std::string masked_content = "original";
  std::string sampler = "ddim";
  std::string scheduler = "default";
  std::string lora_dir;
  std::string init_noise;
  bool no_prompt_syntax = false;
  std::string output = "output.png";
  int64_t batch_count = 1;
};

// x_T from a file, as diffusers' `latents=`: the tensor `init_latents`, `x_T` or `latents`, or a
// file's only tensor; unit-variance noise [1, 4, H/8, W/8] (the sampler scales it).
torch::Tensor read_init_noise(const std::string& path) {
  auto tensors = load_safetensors(path);
  for (const char* key : {"init_latents", "x_T", "latents"})
    if (tensors.count(key)) return tensors.at(key).to(torch::kFloat32);
  if (tensors.size() == 1) return tensors.begin()->second.to(torch::kFloat32);
  throw Error("init_latents: " + path + ": no tensor named init_latents, x_T or latents, and more than one tensor");
}

void run_generate(GenerateFlags& f) {
  if (f.gen.prompt.empty() && f.init_image.empty()) throw Error("-p/--prompt is required");
  if (f.batch_count < 1) throw Error("-b/--batch-count must be at least 1");
  if (!f.init_image.empty()) f.gen.init_image = read_image_rgb(f.init_image);
  if (!f.mask.empty()) {
    if (f.init_image.empty()) throw Error("--mask: inpainting needs -i/--init-image");
    f.gen.mask = read_mask(f.mask, f.gen.init_image.size(0), f.gen.init_image.size(1)).squeeze(0).squeeze(0);
  }
  if (!f.init_noise.empty()) {
    if (f.batch_count > 1) throw Error("--init-noise: one x_T gives one image; drop -b/--batch-count");
    f.gen.init_latents = read_init_noise(f.init_noise);
    f.gen.init_latents_name = std::filesystem::path(f.init_noise).filename().string();
  }
  f.gen.masked_content = parse_masked_content(f.masked_content);
  f.gen.sampler = canonical_sampler_name(f.sampler);
  f.gen.schedule = parse_sigma_schedule(f.scheduler);
  f.gen.prompt_syntax = !f.no_prompt_syntax;
  // Each network is read from the file when first used, so with release_after_use (the last image)
  // the peak is about the UNet alone, not the three networks (docs/performance.md).
  LoadOptions load = load_options(f.model);
  load.defer_weights = true;
  Pipeline pipe = Pipeline::load(load);
  // Made at the first <lora:...> tag, when generate has loaded every network.
  std::optional<PromptLoras> loras;
  f.gen.apply_loras = [&](const std::vector<LoraReference>& tags) {
    if (!loras && tags.empty()) return;
    if (!loras) loras.emplace(pipe.model(), f.lora_dir);
    loras->apply(tags);
  };
  const std::string mode = f.gen.init_image.defined() ? "img2img" : "txt2img";
  for (int64_t b = 0; b < f.batch_count; ++b) {
    GenerateOptions o = f.gen;
    o.seed = f.gen.seed + static_cast<uint64_t>(b);
    o.release_after_use = b + 1 == f.batch_count;  // the last image frees each network once done with it
    SamplingProgress progress(mode);
    auto image = pipe.generate(o, progress.callback());
    progress.finish();
    const std::string out = batch_output_path(f.output, b, f.batch_count);
    write_png(out, image, pipe.describe(o, image.size(0), image.size(1)).png_text());
    std::cout << out << "\n";
  }
}

}  // namespace

void register_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  auto* cmd = app.add_subcommand("generate", "txt2img, or img2img with --init-image/--strength (inpainting with --mask)");
  add_model_flags(cmd, f->model);
  cmd->add_option("-p,--prompt", f->gen.prompt, "the prompt");
  cmd->add_option("-n,--negative-prompt", f->gen.negative_prompt, "the negative prompt (the unconditional branch of CFG)");
  cmd->add_option("-W,--width", f->gen.width, "image width in pixels, a multiple of 8 (default: the model's native size)");
  cmd->add_option("-H,--height", f->gen.height, "image height in pixels, a multiple of 8 (default: the model's native size)");
  cmd->add_option("--steps", f->gen.steps, "sampling steps")->capture_default_str();
  cmd->add_option("--cfg-scale", f->gen.cfg_scale, "classifier-free guidance scale (1 = no guidance)")->capture_default_str();
  cmd->add_option("--sampling-method", f->sampler,
                  "sampling method: ddim, euler, euler_a, heun, dpmpp_2m (A1111 spellings accepted: \"Euler a\", \"DPM++ 2M\")")
      ->capture_default_str();
  cmd->add_option("--scheduler", f->scheduler, "sigma schedule of the k-diffusion methods: default or karras")
      ->capture_default_str();
  cmd->add_option("--eta", f->gen.eta, "DDIM eta (0 = deterministic)")->capture_default_str();
  cmd->add_option("-s,--seed", f->gen.seed, "random seed (noise is drawn on the CPU: same seed, same image on every device)")
      ->capture_default_str();
  cmd->add_option("--clip-skip", f->gen.clip_skip, "use the output of the N-th last text-encoder layer (1 = last)")
      ->capture_default_str();
  cmd->add_option("-i,--init-image", f->init_image,
                  std::string("img2img input image (PNG/JPEG/BMP/TGA). ") + kImageFitPolicyHelp);
  cmd->add_option("--strength", f->gen.strength, "img2img: how much of the schedule re-noises the input (0..1]")
      ->capture_default_str();
  cmd->add_option("--mask", f->mask,
                  "inpainting mask for --init-image (white = repaint; alpha used when present), resized to the image");
  cmd->add_option("--mask-blur", f->gen.mask_blur, "feather the mask edge (Gaussian, pixels)")->capture_default_str();
  cmd->add_option("--masked-content", f->masked_content,
                  "what the masked region starts from: original, fill (mean colour of the rest), latent-noise, latent-nothing")
      ->capture_default_str();
  cmd->add_flag("--force", f->gen.force, "try a size the memory estimate says will not fit");
  cmd->add_option("--init-noise", f->init_noise,
                  "start from this x_T (a .safetensors with init_latents, x_T or latents [1,4,H/8,W/8], unit "
                  "variance) instead of the seed's noise, as diffusers' latents=");
  cmd->add_option("--lora-dir", f->lora_dir, "folder of LoRA files for <lora:NAME:WEIGHT> in the prompt (kohya, diffusers, PEFT keys)");
  cmd->add_flag("--no-prompt-syntax", f->no_prompt_syntax,
                "take the prompts literally (default: AUTOMATIC1111's (emphasis:1.2), [less], BREAK, chunks past 77 tokens, <lora:...>)");
  cmd->add_option("-b,--batch-count", f->batch_count, "number of images (seeds seed, seed+1, ...)")->capture_default_str();
  cmd->add_option("-o,--output", f->output, "output PNG (parameters in its text chunk)")->capture_default_str();
  on_run(cmd, [f] { run_generate(*f); });
}

}  // namespace sine
