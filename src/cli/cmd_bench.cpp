// `sine bench`: parses, runs eval/engine_bench, prints each row as it comes and the JSON.
#include <cstdio>
#include <iostream>

#include "cli/cli_common.h"
#include "eval/engine_bench.h"
#include "io/json_file.h"
#include "models/presets.h"

namespace sine {

namespace {

struct BenchFlags {
  EngineBenchOptions options;
  std::string json;
};

void run_bench(const BenchFlags& f) {
  auto header = [](const std::string& description) {
    std::printf("%s\n", description.c_str());
    std::printf("| %-40s | %-16s | %9s | %9s | %8s | %8s |\n", "what", "shape", "mean s", "best s", "it/s", "peak GB");
    std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(42, '-').c_str(), std::string(18, '-').c_str(),
                std::string(11, '-').c_str(), std::string(11, '-').c_str(), std::string(10, '-').c_str(),
                std::string(10, '-').c_str());
  };
  auto row = [](const EngineBenchRow& r) {
    std::printf("| %-40s | %-16s | %9.4f | %9.4f | %8.3f | %8.2f | %s\n", r.what.c_str(), r.shape.c_str(), r.mean_s,
                r.best_s, 1.0 / r.mean_s, r.peak_gb, r.note.c_str());
    std::fflush(stdout);
  };
  const EngineBenchResult result = run_engine_bench(f.options, header, row);
  std::printf("peak memory: %.2f GB (%s)\n", result.peak_gb, result.peak_kind.c_str());
  if (!f.json.empty()) write_json_file(f.json, result.json(f.options));
}

}  // namespace

void register_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  EngineBenchOptions* o = &f->options;
  auto* cmd = app.add_subcommand(
      "bench", "time text encode, UNet forward, a CFG step, VAE decode, a whole image and training steps (random weights)");
  cmd->add_option("--config", o->config, std::string("model size: ") + model_config_preset_names())->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "fp32, fp16 or bf16")->capture_default_str();
  cmd->add_option("--latent", o->latent, "latent size for inference (64 = 512 px for SD 1.5)")->capture_default_str();
  cmd->add_option("--batch", o->batch, "UNet batch for the forward timing")->capture_default_str();
  cmd->add_option("--train-latent", o->train_latent, "latent size of the training step")->capture_default_str();
  cmd->add_option("--repeat", o->repeat, "timed repetitions after one warm-up")->capture_default_str();
  cmd->add_option("--image-steps", o->image_steps, "CFG steps of the whole-image timing")->capture_default_str();
  cmd->add_option("--lora-rank", o->lora_rank, "rank of the LoRA training step (0: skip it)")->capture_default_str();
  cmd->add_flag("!--no-train", o->train, "skip the training-step timings");
  cmd->add_flag("!--no-baseline", o->baseline, "skip the explicit-probabilities baseline");
  cmd->add_flag("!--no-image", o->image, "skip the whole-image timing");
  cmd->add_flag("--methods", o->methods,
                "also time the methods: SINE fine-tune (full, LoRA) and edit, SingleInsert stages, SpecRef edit");
  cmd->add_flag("--only-methods", o->only_methods, "time the methods only");
  cmd->add_flag("--cuda-graph", o->cuda_graph, "also time the CFG step replayed as a CUDA graph (CUDA only)");
  cmd->add_option("--json", f->json, "also write the rows as JSON to this file");
  on_run(cmd, [f] { run_bench(*f); });
}

}  // namespace sine
