// sine finetune / sine edit: SINE (arXiv 2212.04489) on the engine.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/validate.h"
#include "eval/sine_bench.h"
#include "eval/sine_resize_bench.h"
#include "io/image.h"
#include "methods/sine/sine_branches.h"
#include "methods/sine/sine_edit.h"
#include "methods/sine/sine_finetune.h"
#include "methods/method_parameters.h"
#include "methods/sine/sine_model.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void require_output_dir(const std::string& path, const std::string& flag) {
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent))
    throw Error(flag + " " + path + ": the folder " + parent.string() + " does not exist");
}

// ---------------------------------------------------------------------------------------------
// finetune

struct FinetuneFlags {
  ModelFlags model;
  std::string image;
  std::string output;
  std::string class_word;
  std::string prompt_template = "photo of a sks {class}";
  bool patch = false;
  int64_t steps = 0;       // 0: official (800 whole image, 10000 patch)
  double lr = 0;           // 0: 1e-6 for SD-size UNets, 1e-4 for small ones (see docs/sine.md)
  double recon_weight = 1.0;
  std::string grid_interp = "bilinear";
  bool grad_checkpointing = false;
  bool no_master_weights = false;
  std::string optimizer_state = "fp32";
  int64_t lora = 0;
  uint64_t seed = 23;
  std::string checkpoint;
  int64_t checkpoint_every = 100;
  bool fresh = false;
};

void run_finetune(FinetuneFlags& f) {
  if (f.image.empty()) throw Error("-i/--image is required");
  if (f.output.empty()) throw Error("-o/--output is required");
  if (!ends_with(f.output, ".safetensors")) throw Error("-o " + f.output + ": the output must be a .safetensors file");
  require_output_dir(f.output, "-o");
  if (f.class_word.empty()) throw Error("--class is required (the class word of the prompt, e.g. dog)");
  if (f.steps < 0) throw Error("--steps must be at least 1 (0: the official default)");
  if (f.lr < 0 || f.lr > 1) throw Error("--lr must be in (0, 1] (0: the default)");
  if (f.lora < 0) throw Error("--lora: the rank must be positive");
  if (f.checkpoint_every < 0) throw Error("--checkpoint-every must not be negative");
  SineFinetuneConfig c;
  c.class_word = f.class_word;
  c.prompt_template = f.prompt_template;
  sine_training_prompt(c.prompt_template, c.class_word);  // validates --template early
  c.mode = f.patch ? SineMode::Patch : SineMode::Whole;
  c.grid_interpolation = parse_grid_interpolation(f.grid_interp);
  c.recon_weight = f.recon_weight;
  c.gradient_checkpointing = f.grad_checkpointing;
  c.master_weights = !f.no_master_weights;
  c.optimizer_state = parse_optimizer_state_dtype(f.optimizer_state, "--optimizer-state");
  c.lora_rank = f.lora;
  c.seed = f.seed;
  if (!fs::exists(f.image)) throw Error("-i " + f.image + ": file does not exist");
  const torch::Tensor image = read_image_rgb(f.image);

  Pipeline pipe = load_pipeline(f.model);
  const bool sd_size = pipe.config().unet.model_channels >= 320;
  c.steps = f.steps > 0 ? f.steps : (f.patch ? 10000 : 800);
  c.lr = f.lr > 0 ? f.lr : (sd_size ? 1e-6 : 1e-4);
  c.checkpoint_path = f.checkpoint.empty() ? f.output + ".ckpt" : f.checkpoint;
  c.checkpoint_every = f.checkpoint_every;

  claim_sine_checkpoint(c, sine_finetune_identity(image, c, pipe.source()), f.fresh);
  SineFinetuner finetuner(pipe, image, c);
  if (finetuner.resume())
    std::cerr << "resuming " << c.checkpoint_path << " at step " << finetuner.trainer().step() << "/" << c.steps
              << "\n";
  finetuner.train();
  save_sine_model(f.output, finetuner, pipe.source());
  std::cout << f.output << "\n";
}

// ---------------------------------------------------------------------------------------------
// edit

struct EditFlags {
  ModelFlags model;
  std::vector<std::string> finetuned;
  std::string prompt;
  std::string desc;
  std::vector<double> betas;
  std::vector<int64_t> ks;
  double v = 0.7;
  int64_t K = 400;
  double scale = 7.5;
  int64_t steps = 100;
  int64_t width = 0, height = 0;
  uint64_t seed = 42;
  std::string mode = "sine";
  bool no_guidance = false;
  bool force = false;
  std::string sweep;
  std::string output = "sine_edit.png";
};

struct Sweep {
  std::string name;  // "K" or "v"
  std::vector<double> values;
};

Sweep parse_sweep(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos) throw Error("--sweep \"" + text + "\": expected K=a,b,... or v=a,b,...");
  Sweep s;
  s.name = text.substr(0, eq);
  if (s.name != "K" && s.name != "v") throw Error("--sweep \"" + text + "\": only K and v can be swept");
  std::stringstream list(text.substr(eq + 1));
  std::string item;
  while (std::getline(list, item, ',')) {
    try {
      size_t used = 0;
      s.values.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw Error("--sweep \"" + text + "\": '" + item + "' is not a number");
    }
  }
  if (s.values.empty()) throw Error("--sweep \"" + text + "\": no values");
  return s;
}

void check_v(double v) {
  if (v < 0 || v > 1) throw Error("--v must be in [0, 1] (got " + shortest(v) + ")");
}
void check_k(double k) {
  if (k < 0 || k > 1000) throw Error("-K must be in [0, 1000] (got " + shortest(k) + ")");
}

void run_edit(EditFlags& f) {
  SineEditConfig c;
  c.edit_prompt = f.prompt;
  std::string desc = f.desc;
  const auto sep = f.prompt.find("[SEP]");  // the official "EDIT[SEP]DESC" form
  if (sep != std::string::npos) {
    c.edit_prompt = f.prompt.substr(0, sep);
    if (desc.empty()) desc = f.prompt.substr(sep + 5);
  }
  if (c.edit_prompt.empty()) throw Error("-p/--prompt (the edit prompt) is required");
  c.mode = f.no_guidance ? SineEditMode::NoGuidance : parse_sine_edit_mode(f.mode);
  if (f.no_guidance && f.mode != "sine" && f.mode != "no-guidance")
    throw Error("--no-guidance contradicts --mode " + f.mode);
  if (c.mode != SineEditMode::Pretrained && f.finetuned.empty())
    throw Error("--finetuned is required (a model written by sine finetune)");
  if (f.steps < 1) throw Error("--steps must be at least 1");
  const SineBranchWeights weights{f.v, f.K, f.betas, f.ks, desc};
  weights.validate(f.finetuned.size());
  std::optional<Sweep> sweep;
  if (!f.sweep.empty()) {
    sweep = parse_sweep(f.sweep);
    for (double x : sweep->values) sweep->name == "K" ? check_k(x) : check_v(x);
    if (f.finetuned.size() != 1 || c.mode != SineEditMode::Sine)
      throw Error("--sweep: needs exactly one --finetuned model and --mode sine");
  }
  if (!ends_with(f.output, ".png")) throw Error("-o " + f.output + ": the output must be a .png file");
  require_output_dir(f.output, "-o");
  c.steps = f.steps;
  c.scale = f.scale;
  c.seed = f.seed;
  c.width = f.width;
  c.height = f.height;
  c.force = f.force;

  LoadOptions base = load_options(f.model);
  // Without -m the base is the one the (first) fine-tune names.
  if (base.model.empty() && !f.finetuned.empty()) base.model = read_sine_model_info(f.finetuned.front()).base_model;
  Pipeline pretrained = Pipeline::load(base);
  const SineBranches finetuned(pretrained, f.finetuned, weights);
  const std::vector<SineBranch>& branches = finetuned.branches();

  std::vector<std::string> names;  // the fine-tunes by file name, never by local path
  for (const auto& path : f.finetuned) names.push_back(fs::path(path).filename().string());

  auto run_one = [&](const std::vector<SineBranch>& bs, const std::string& label) {
    SamplingProgress progress(label);
    auto image = sine_edit(pretrained, bs, c, progress.callback());
    progress.finish();
    return image;
  };

  if (!sweep) {
    auto image = run_one(branches, "sine edit");
    write_png(f.output, image, sine_edit_parameters(pretrained, c, branches, names, image.size(0), image.size(1)).png_text());
    std::cout << f.output << "\n";
    return;
  }
  std::vector<torch::Tensor> images;
  std::vector<std::string> labels;
  std::string values;
  for (double x : sweep->values) {
    std::vector<SineBranch> bs = branches;
    if (sweep->name == "K")
      bs[0].K = static_cast<int64_t>(x);
    else
      bs[0].beta = sine_beta(x);
    const std::string label = sweep->name + "=" + shortest(x);
    images.push_back(run_one(bs, "sine edit " + label));
    labels.push_back(label);
    values += (values.empty() ? "" : ",") + shortest(x);
  }
  auto params = sine_edit_parameters(pretrained, c, branches, names, images[0].size(0), images[0].size(1));
  params.set(sweep->name == "K" ? "SINE K" : "SINE v", values);  // the swept values, one per cell
  params.set("SINE sweep", sweep->name + "=" + values);
  write_png(f.output, make_grid(images, static_cast<int64_t>(images.size()), 4, labels), params.png_text());
  std::cout << f.output << "\n";
}

struct ResizeBenchFlags {
  ModelFlags model;
  SineResizeBenchOptions options;
};

struct BenchFlags {
  ModelFlags model;
  SineBenchOptions options;
  bool no_sweeps = false, no_resize = false;
};

}  // namespace

void register_sine(CLI::App& app) {
  {
    auto f = std::make_shared<FinetuneFlags>();
    auto* cmd = app.add_subcommand(
        "finetune", "SINE stage 1: fine-tune UNet + text encoder on one image (whole image or --patch with the positional grid)");
    add_model_flags(cmd, f->model);
    cmd->add_option("-i,--image", f->image, "the image to fine-tune on (resized ignoring its aspect ratio)");
    cmd->add_option("-o,--output", f->output, "the fine-tuned model (.safetensors: fp16 deltas from the base + metadata)");
    cmd->add_option("--class", f->class_word, "class word of the prompt (e.g. dog)");
    cmd->add_option("--template", f->prompt_template, "training prompt with {class}")->capture_default_str();
    cmd->add_flag("--patch", f->patch, "patch mode: random crops + positional grid + (t/1000)^2 |x0'-x0| term");
    cmd->add_option("--steps", f->steps, "training steps (default: 800, or 10000 with --patch, as the official configs)");
    cmd->add_option("--lr", f->lr, "AdamW learning rate (default: 1e-6 for SD-size models as official, 1e-4 for small models such as the shapes world)");
    cmd->add_option("--recon-weight", f->recon_weight, "patch mode: weight of the (t/1000)^2 reconstruction term")
        ->capture_default_str();
    cmd->add_option("--grid-interp", f->grid_interp, "positional grid interpolation: bilinear (align_corners) or nearest")
        ->capture_default_str();
    cmd->add_flag("--grad-checkpointing", f->grad_checkpointing, "gradient checkpointing of the UNet (less memory, slower)");
    cmd->add_option("--optimizer-state", f->optimizer_state,
                    "AdamW moments in fp32 or bf16 (stochastically rounded; half the memory)")
        ->capture_default_str();
    cmd->add_flag("--no-master-weights", f->no_master_weights,
                  "with --dtype bf16/fp16: update the low-precision weights directly instead of fp32 masters "
                  "(less memory; updates below the dtype's step are lost)");
    cmd->add_option("--lora", f->lora, "train LoRA adapters of this rank (UNet + text attention) instead of all weights");
    cmd->add_option("-s,--seed", f->seed, "seed of crops, posterior samples, timesteps and noise")->capture_default_str();
    cmd->add_option("--checkpoint", f->checkpoint, "resumable checkpoint (default: OUTPUT.ckpt); a rerun resumes it");
    cmd->add_option("--checkpoint-every", f->checkpoint_every, "steps between checkpoints (0: only at the end)")
        ->capture_default_str();
    cmd->add_flag("--fresh", f->fresh, "ignore an existing checkpoint and start over");
    on_run(cmd, [f] { run_finetune(*f); });
  }
  {
    auto f = std::make_shared<EditFlags>();
    auto* cmd = app.add_subcommand("edit", "SINE stage 2: edit with model-based classifier-free guidance");
    add_model_flags(cmd, f->model);
    cmd->add_option("--finetuned", f->finetuned, "fine-tuned model(s) from sine finetune (repeat for several)");
    cmd->add_option("-p,--prompt", f->prompt, "the edit prompt for the pre-trained model (or \"EDIT[SEP]DESC\")");
    cmd->add_option("--desc", f->desc, "prompt of the fine-tuned model (default: its training prompt)");
    cmd->add_option("-K,--K", f->K, "guidance runs while t >= K (DDPM units)")->capture_default_str();
    cmd->add_option("--v", f->v, "weight of the pre-trained model's edit prompt during guidance (β = 1 - v)")
        ->capture_default_str();
    cmd->add_option("--beta", f->betas, "several models: weight β_i of each fine-tuned model (default (1-v)/N)")
        ->delimiter(',');
    cmd->add_option("--model-K", f->ks, "several models: K of each fine-tuned model (default -K)")->delimiter(',');
    cmd->add_option("--cfg-scale", f->scale, "guidance scale s")->capture_default_str();
    cmd->add_option("--steps", f->steps, "DDIM steps (eta 0)")->capture_default_str();
    cmd->add_option("-W,--width", f->width, "width in pixels, a multiple of the VAE factor (default: native)");
    cmd->add_option("-H,--height", f->height, "height in pixels, a multiple of the VAE factor (default: native)");
    cmd->add_option("-s,--seed", f->seed, "seed of the initial noise")->capture_default_str();
    cmd->add_flag("--force", f->force, "try a size the memory estimate says will not fit");
    cmd->add_option("--mode", f->mode, "sine, no-guidance (fine-tuned model alone, ablation) or pretrained (baseline)")
        ->capture_default_str();
    cmd->add_flag("--no-guidance", f->no_guidance, "ablation: sample the fine-tuned model alone with the edit prompt");
    cmd->add_option("--sweep", f->sweep, "K=200,400,600,800 or v=0.3,0.5,0.7,0.9: a labelled grid of edits");
    cmd->add_option("-o,--output", f->output, "output PNG (parameters in its text chunks)")->capture_default_str();
    on_run(cmd, [f] { run_edit(*f); });
  }
  {
    auto f = std::make_shared<BenchFlags>();
    auto* cmd = world_command(app)->add_subcommand(
        "bench-sine", "SINE judged on the shapes world: edits vs ablations, 2x sizes, K/v sweeps, fine-tuning cost");
    add_model_flags(cmd, f->model);
    auto& o = f->options;
    cmd->add_option("--scenes", o.scenes, "source scenes (each fine-tuned twice: whole and patch)")->capture_default_str();
    cmd->add_option("--seed", o.seed, "seed of the scenes")->capture_default_str();
    cmd->add_option("--whole-steps", o.whole_steps, "fine-tuning steps, whole-image mode")->capture_default_str();
    cmd->add_option("--patch-steps", o.patch_steps, "fine-tuning steps, patch mode")->capture_default_str();
    cmd->add_option("--lr", o.lr, "fine-tuning learning rate")->capture_default_str();
    cmd->add_option("--edit-steps", o.edit_steps, "DDIM steps per edit")->capture_default_str();
    cmd->add_option("--cfg-scale", o.scale, "guidance scale s")->capture_default_str();
    cmd->add_option("-K,--K", o.K, "K of the main comparison")->capture_default_str();
    cmd->add_option("--v", o.v, "v of the main comparison")->capture_default_str();
    cmd->add_option("--k-sweep", o.k_sweep, "K values of the sweep")->delimiter(',')->capture_default_str();
    cmd->add_option("--v-sweep", o.v_sweep, "v values of the sweep")->delimiter(',')->capture_default_str();
    cmd->add_flag("--no-sweeps", f->no_sweeps, "skip the K and v sweeps");
    cmd->add_option("--sweep-scenes", o.sweep_scenes, "run the sweeps on the first N scenes only (-1: all)")
        ->capture_default_str();
    cmd->add_flag("--no-resize", f->no_resize, "skip the 2x width / 2x height duplicate count");
    cmd->add_option("--lora-rank", o.lora_rank, "rank of the LoRA fine-tune variant (edited and timed; 0: skip LoRA)")
        ->capture_default_str();
    cmd->add_option("--lora-lr", o.lora_lr, "learning rate of the LoRA fine-tune variant")->capture_default_str();
    cmd->add_option("--timing-steps", o.timing_steps, "steps timed per fine-tuning variant (0: skip)")->capture_default_str();
    cmd->add_option("--grid-scenes", o.grid_scenes, "scenes shown in grid.png")->capture_default_str();
    cmd->add_option("-o,--output", o.output_dir, "output folder (results.json, grid.png, resize.png)")->capture_default_str();
    on_run(cmd, [f] {
      f->options.model = load_options(f->model);
      f->options.sweeps = !f->no_sweeps;
      f->options.resize_test = !f->no_resize;
      run_sine_bench(f->options);
    });
  }
  {
    auto f = std::make_shared<ResizeBenchFlags>();
    auto* cmd = world_command(app)->add_subcommand(
        "bench-sine-resize",
        "SINE's claim at other sizes: objects duplicated / lost at 2x width, 2x height, 1.5x both, patch + grid vs whole");
    add_model_flags(cmd, f->model);
    auto& o = f->options;
    cmd->add_option("--scenes", o.scenes, "source scenes (each fine-tuned whole and patch)")->capture_default_str();
    cmd->add_option("--seed", o.seed, "seed of the scenes")->capture_default_str();
    cmd->add_option("--whole-steps", o.whole_steps, "fine-tuning steps, whole-image mode")->capture_default_str();
    cmd->add_option("--patch-steps", o.patch_steps, "patch-mode step counts to judge at, increasing (the last is the main row)")
        ->delimiter(',')
        ->capture_default_str();
    cmd->add_option("--lr", o.lr, "fine-tuning learning rate")->capture_default_str();
    cmd->add_option("--edit-steps", o.edit_steps, "DDIM steps per image")->capture_default_str();
    cmd->add_option("--cfg-scale", o.scale, "guidance scale s")->capture_default_str();
    cmd->add_option("-K,--K", o.K, "SINE's K")->capture_default_str();
    cmd->add_option("--v", o.v, "SINE's v")->capture_default_str();
    cmd->add_flag("--textured-backgrounds", o.textured_backgrounds, "sources from the shapes-v4 world");
    cmd->add_option("--grid-scenes", o.grid_scenes, "scenes shown in resize.png")->capture_default_str();
    cmd->add_option("-o,--output", o.output_dir, "output folder (results.json, resize.png)")->capture_default_str();
    on_run(cmd, [f] {
      f->options.model = load_options(f->model);
      run_sine_resize_bench(f->options);
    });
  }
}

}  // namespace sine
