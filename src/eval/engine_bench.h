#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

// `sine bench`: the engine's units of work timed on random weights of a preset size (SD 1.5 by
// default): text encode, UNet forward with fused attention and with explicit probabilities (the
// path a hook that reads the maps takes), a CFG sampling step (optionally replayed as a CUDA
// graph), VAE decode, a whole image, training steps (full, with gradient checkpointing, LoRA) and,
// with `methods`, each method's unit of work (eval/method_timing.h). Every row has its own
// peak-memory window on CUDA.
namespace sine {

struct EngineBenchOptions {
  std::string config = "sd15";  // models/presets.h
  std::string device = "cpu";
  std::string dtype = "fp32";
  int64_t latent = 64;           // inference latent side (64 = 512 px for SD 1.5)
  int64_t batch = 2;             // UNet batch of the forward timing
  int64_t train_latent = 64;     // latent side of the training steps
  int64_t repeat = 3;            // timed repetitions after one warm-up
  int64_t image_steps = 20;      // CFG steps of the whole-image row
  int64_t lora_rank = 4;         // LoRA training row (0: none)
  bool train = true, baseline = true, image = true;
  bool cuda_graph = false;
  bool methods = false, only_methods = false;

  void validate() const;  // errors name the field
};

struct EngineBenchRow {
  std::string what, shape, note;
  double mean_s = 0, best_s = 0;
  double peak_gb = 0;
};

struct EngineBenchResult {
  std::string description;  // model size, device, dtype, LibTorch
  std::string devices;
  std::vector<EngineBenchRow> rows;
  double peak_gb = 0;
  std::string peak_kind;
  nlohmann::json json(const EngineBenchOptions& options) const;
};

// `on_start` hears the description once the model is built, `on_row` every row as it is measured.
EngineBenchResult run_engine_bench(const EngineBenchOptions& options,
                                   const std::function<void(const std::string&)>& on_start = {},
                                   const std::function<void(const EngineBenchRow&)>& on_row = {});

}  // namespace sine
