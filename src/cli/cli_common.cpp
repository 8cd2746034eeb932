#include "cli/cli_common.h"

#include <nlohmann/json.hpp>

#include "core/runtime.h"

namespace sine {

void add_model_flags(CLI::App* cmd, ModelFlags& f) {
  cmd->add_option("-m,--model", f.model,
                  "model: single-file LDM .safetensors or diffusers folder (default: the bundled shapes-world model)");
  cmd->add_option("--tokenizer", f.tokenizer,
                  "tokenizer folder (vocab.json + merges.txt) or bpe_simple_vocab_16e6.txt.gz (default: found beside the model)");
  cmd->add_option("--model-config", f.model_config,
                  "JSON file or literal overriding what tensor shapes cannot tell, e.g. "
                  "'{\"unet\":{\"num_heads\":8},\"text\":{\"heads\":12}}'");
  cmd->add_option("--device", f.device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "fp32, fp16 or bf16")->capture_default_str();
  cmd->add_flag("--channels-last", f.channels_last,
                "UNet convolutions and activations in NHWC memory (`sine bench` times both layouts)");
}

LoadOptions load_options(const ModelFlags& f) {
  LoadOptions o;
  o.model = f.model;
  o.tokenizer = f.tokenizer;
  o.config_json = f.model_config;
  o.device = parse_device(f.device);
  o.dtype = parse_dtype(f.dtype);
  o.channels_last = f.channels_last;
  return o;
}

Pipeline load_pipeline(const ModelFlags& f) { return Pipeline::load(load_options(f)); }

StepCallback SamplingProgress::callback() {
  return [this](int64_t step, int64_t total) {
    if (!bar_) bar_ = std::make_unique<ProgressBar>(label_, total);
    bar_->update(step);
  };
}

void SamplingProgress::finish() {
  if (bar_) bar_->finish();
}

std::string batch_output_path(const std::string& output, int64_t index, int64_t count) {
  if (count <= 1) return output;
  const auto dot = output.rfind('.');
  return output.substr(0, dot) + "_" + std::to_string(index) + (dot == std::string::npos ? "" : output.substr(dot));
}

CLI::App* world_command(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App* s) { return s->get_name() == "world"; })) return sub;
  CLI::App* world = app.add_subcommand("world", "the shapes world: the bundled model's training data, trainer, judge and benchmarks");
  world->require_subcommand(1);
  return world;
}

CLI::Option* add_canvas_size_option(CLI::App* cmd, int64_t& size, const std::string& what) {
  return cmd
      ->add_option("--size", size, "square canvas of " + what + " in pixels, a multiple of 8 (default: the model's size)")
      ->check(CLI::Range(0, 1024) & CLI::Validator(
                                         [](std::string& v) {
                                           return std::stoll(v) % 8 == 0 ? std::string() : v + " is not a multiple of 8";
                                         },
                                         "multiple of 8"))
      ->capture_default_str();
}

}  // namespace sine
