#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <string>

#include "core/progress.h"
#include "pipeline/pipeline.h"

namespace sine {

// Flags every model-using command shares (names follow stable-diffusion.cpp where they overlap).
struct ModelFlags {
  std::string model;
  std::string tokenizer;
  std::string model_config;
  std::string device = "cpu";
  std::string dtype = "fp32";
  bool channels_last = false;
};

void add_model_flags(CLI::App* cmd, ModelFlags& flags);
Pipeline load_pipeline(const ModelFlags& flags);
LoadOptions load_options(const ModelFlags& flags);

// A command's body runs after the whole command line parsed (and threads are set up).
void on_run(CLI::App* cmd, std::function<void()> run);

// Every command registers itself on the root app.
void register_generate(CLI::App& app);
void register_info(CLI::App& app);
void register_init_random(CLI::App& app);
void register_bench(CLI::App& app);
void register_inspect(CLI::App& app);  // tokenize, run
void register_world(CLI::App& app);  // world render, judge, eval
void register_world_train(CLI::App& app);
void register_sine(CLI::App& app);     // finetune, edit (SINE)
void register_specref(CLI::App& app);  // invert, p2p, specref
void register_insert(CLI::App& app);   // insert train|generate|export|import (SingleInsert)
void register_serve(CLI::App& app);    // serve (web page, A1111 API, job API)

// A progress bar fed by a sampling StepCallback; the bar appears at the first step, when the
// total is known.
class SamplingProgress {
 public:
  explicit SamplingProgress(std::string label) : label_(std::move(label)) {}
  StepCallback callback();
  void finish();

 private:
  std::string label_;
  std::unique_ptr<ProgressBar> bar_;
};

// OUT.png for a single image, OUT_<index>.png when a batch writes `count` > 1 images.
std::string batch_output_path(const std::string& output, int64_t index, int64_t count);

// --size of the world benches: a square canvas in pixels, 0 (the default) = the model's size;
// anything but 0 or a multiple of 8 up to 1024 is refused by the parser.
CLI::Option* add_canvas_size_option(CLI::App* cmd, int64_t& size, const std::string& what);

// `sine world ...`: created by whichever command registers under it first.
CLI::App* world_command(CLI::App& app);


}  // namespace sine
