#include <iostream>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/image.h"

namespace sine {

namespace {

struct GenerateFlags {
  ModelFlags model;
  GenerateOptions gen;
  std::string init_image;
  std::string output = "output.png";
  int64_t batch_count = 1;
};

void run_generate(GenerateFlags& f) {
  if (f.gen.prompt.empty() && f.init_image.empty()) throw Error("-p/--prompt is required");
  if (f.batch_count < 1) throw Error("-b/--batch-count must be at least 1");
  if (!f.init_image.empty()) f.gen.init_image = read_image_rgb(f.init_image);
  Pipeline pipe = load_pipeline(f.model);
  const std::string mode = f.gen.init_image.defined() ? "img2img" : "txt2img";
  for (int64_t b = 0; b < f.batch_count; ++b) {
    GenerateOptions o = f.gen;
    o.seed = f.gen.seed + static_cast<uint64_t>(b);
    o.release_after_use = b + 1 == f.batch_count;  // the last image frees each network once done with it
    SamplingProgress progress(mode);
    auto image = pipe.generate(o, progress.callback());
    progress.finish();
    const std::string out = batch_output_path(f.output, b, f.batch_count);
    std::map<std::string, std::string> params{
        {"mode", mode},
        {"prompt", o.prompt},
        {"negative_prompt", o.negative_prompt},
        {"steps", std::to_string(o.steps)},
        {"cfg_scale", std::to_string(o.cfg_scale)},
        {"seed", std::to_string(o.seed)},
        {"sampler", "DDIM"},
        {"eta", std::to_string(o.eta)},
        {"size", std::to_string(image.size(1)) + "x" + std::to_string(image.size(0))},
        {"model", pipe.source()},
        {"clip_skip", std::to_string(o.clip_skip)},
    };
    if (o.init_image.defined()) {
      params["init_image"] = f.init_image;
      params["strength"] = std::to_string(o.strength);
    }
    write_png(out, image, png_parameters(params));
    std::cout << out << "\n";
  }
}

}  // namespace

void register_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  auto* cmd = app.add_subcommand("generate", "txt2img, or img2img with --init-image/--strength (DDIM sampler)");
  add_model_flags(cmd, f->model);
  cmd->add_option("-p,--prompt", f->gen.prompt, "the prompt");
  cmd->add_option("-n,--negative-prompt", f->gen.negative_prompt, "the negative prompt (the unconditional branch of CFG)");
  cmd->add_option("-W,--width", f->gen.width, "image width in pixels, a multiple of 8 (default: the model's native size)");
  cmd->add_option("-H,--height", f->gen.height, "image height in pixels, a multiple of 8 (default: the model's native size)");
  cmd->add_option("--steps", f->gen.steps, "sampling steps")->capture_default_str();
  cmd->add_option("--cfg-scale", f->gen.cfg_scale, "classifier-free guidance scale (1 = no guidance)")->capture_default_str();
  cmd->add_option("--eta", f->gen.eta, "DDIM eta (0 = deterministic)")->capture_default_str();
  cmd->add_option("-s,--seed", f->gen.seed, "random seed (noise is drawn on the CPU: same seed, same image on every device)")
      ->capture_default_str();
  cmd->add_option("--clip-skip", f->gen.clip_skip, "use the output of the N-th last text-encoder layer (1 = last)")
      ->capture_default_str();
  cmd->add_option("-i,--init-image", f->init_image,
                  std::string("img2img input image (PNG/JPEG/BMP/TGA). ") + kImageFitPolicyHelp);
  cmd->add_option("--strength", f->gen.strength, "img2img: how much of the schedule re-noises the input (0..1]")
      ->capture_default_str();
  cmd->add_option("-b,--batch-count", f->batch_count, "number of images (seeds seed, seed+1, ...)")->capture_default_str();
  cmd->add_option("-o,--output", f->output, "output PNG (parameters in its text chunk)")->capture_default_str();
  on_run(cmd, [f] { run_generate(*f); });
}

}  // namespace sine
