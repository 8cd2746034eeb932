#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/runtime.h"
#include "world/trainer.h"

namespace sine {

namespace {

struct WorldTrainFlags {
  world::WorldTrainOptions options;
  std::string device = "cpu";
  bool fp32 = false;
  bool export_only = false;
  bool vae_only = false;
  std::string buckets;
  bool textured = false;
};

}  // namespace

void register_world_train(CLI::App& app) {
  auto f = std::make_shared<WorldTrainFlags>();
  world::WorldTrainOptions& o = f->options;
  CLI::App* cmd = world_command(app)->add_subcommand(
      "train",
      "train the bundled shapes-world model from scratch (tokenizer, VAE, text encoder + UNet); rerun to resume");
  cmd->add_option("-o,--output", o.output, "the model file (.safetensors, tokenizer embedded)")->capture_default_str();
  cmd->add_option("--work-dir", o.work_dir, "tokenizer and resumable stage checkpoints")->capture_default_str();
  cmd->add_option("-s,--seed", o.seed, "seed of initialization and data (same seed, same model)")->capture_default_str();
  cmd->add_option("--captions", o.tokenizer_captions, "captions the BPE tokenizer is learned from")->capture_default_str();
  cmd->add_option("--vae-steps", o.vae.steps, "VAE training steps")->capture_default_str();
  cmd->add_option("--vae-batch", o.vae.batch, "VAE batch size")->capture_default_str();
  cmd->add_option("--vae-lr", o.vae.lr, "VAE peak learning rate")->capture_default_str();
  cmd->add_option("--steps", o.diffusion.steps, "text encoder + UNet training steps")->capture_default_str();
  cmd->add_option("--batch", o.diffusion.batch, "text encoder + UNet batch size")->capture_default_str();
  cmd->add_option("--lr", o.diffusion.lr, "text encoder + UNet peak learning rate")->capture_default_str();
  cmd->add_option("--warmup", o.diffusion.warmup_steps, "text encoder + UNet learning-rate warmup steps")
      ->capture_default_str();
  cmd->add_option("--offset-noise", o.offset_noise,
                  "per-image, per-channel constant added to the training noise (0 = plain ε)")
      ->capture_default_str();
  cmd->add_option("--ema-decay", o.diffusion.ema_decay, "EMA of the text encoder + UNet weights (0 = off)")
      ->capture_default_str();
  cmd->add_option("--caption-dropout", o.caption_dropout, "fraction of empty prompts (for classifier-free guidance)")
      ->capture_default_str();
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "steps between resumable checkpoints")->capture_default_str();
  cmd->add_option("--buckets", f->buckets,
                  "canvas sizes of the text encoder + UNet stage, WIDTHxHEIGHT,... (e.g. 64x64,128x64,64x128); "
                  "one per step, batch scaled to the same pixel count");
  cmd->add_flag("--textured-backgrounds", f->textured,
               "the shapes-v4 world: striped, dotted, noisy and split backgrounds besides solid, gradient, checkered");
  cmd->add_option("--device", f->device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_flag("--fp32", f->fp32, "store fp32 weights (default fp16)");
  cmd->add_flag("--export-only", f->export_only,
                "write the model from the work dir's latest checkpoints without training (a run cut short)");
  cmd->add_flag("--vae-only", f->vae_only, "train (or resume) the VAE stage alone and stop, reporting its held-out PSNR");
  on_run(cmd, [f] {
    if (f->options.vae.steps < 1 || f->options.diffusion.steps < 1) throw Error("--vae-steps and --steps must be at least 1");
    if (f->options.vae.batch < 1 || f->options.diffusion.batch < 1) throw Error("--vae-batch and --batch must be at least 1");
    if (f->options.offset_noise < 0) throw Error("--offset-noise must not be negative");
    if (f->options.diffusion.warmup_steps < 0) throw Error("--warmup must not be negative");
    if (f->options.caption_dropout < 0 || f->options.caption_dropout > 1)
      throw Error("--caption-dropout must be in [0, 1]");
    if (f->textured) f->options.scenes = world::with_textured_backgrounds(f->options.scenes);
    if (!f->buckets.empty()) f->options.buckets = world::parse_buckets(f->buckets, world::shapes_model_config(1).vae.downsample_factor());
    f->options.device = parse_device(f->device);
    f->options.fp16_output = !f->fp32;
    if (f->export_only && f->vae_only) throw Error("--export-only and --vae-only: choose one");
    if (f->export_only) {
      world::ShapesWorldTrainer trainer(f->options);
      trainer.save_model(f->options.output);
      std::fprintf(stderr, "wrote %s (text encoder + UNet at step %lld)\n", f->options.output.c_str(),
                   static_cast<long long>(trainer.diffusion_trainer().step()));
      return;
    }
    world::train_shapes_world(f->options, f->vae_only);
  });
}

}  // namespace sine
