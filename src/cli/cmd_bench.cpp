#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/runtime.h"
#include "diffusion/ddim.h"
#include "diffusion/guidance.h"
#include "diffusion/noise_schedule.h"
#include "models/attention_hook.h"
#include "models/presets.h"
#include "models/weights.h"
#ifdef SINE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#endif

namespace sine {

namespace {

struct BenchFlags {
  std::string config = "sd15";
  std::string device = "cpu";
  std::string dtype = "fp32";
  int64_t latent = 64;
  int64_t batch = 2;
  int64_t train_latent = 64;
  int64_t repeat = 3;
  bool no_train = false;
  bool no_baseline = false;
};

// Makes attention take the explicit-probabilities path everywhere: what any hook that reads the
// maps (P2P, SpecRef masks) costs, and the baseline the fused path is compared against.
struct ProbsPathHook : AttentionHook {
  bool needs_probs(const AttentionSite&) override { return true; }
};

void sync(const torch::Device& device) {
#ifdef SINE_WITH_CUDA
  if (device.is_cuda()) torch::cuda::synchronize();
#endif
}

double peak_memory_gb(const torch::Device& device) {
#ifdef SINE_WITH_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return stats.allocated_bytes[0].peak / 1e9;
  }
#endif
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1e6;  // KiB -> GB (approximately)
}

struct Timing {
  double mean = 0, best = 1e30;
};

template <class F>
Timing time_it(const torch::Device& device, int64_t repeat, F&& f) {
  f();  // warm-up (allocations, oneDNN primitive caches)
  sync(device);
  Timing t;
  for (int64_t i = 0; i < repeat; ++i) {
    auto start = std::chrono::steady_clock::now();
    f();
    sync(device);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    t.mean += s / repeat;
    t.best = std::min(t.best, s);
  }
  return t;
}

void row(const std::string& what, const std::string& shape, const Timing& t, const std::string& note = "") {
  std::printf("| %-38s | %-16s | %9.4f | %9.4f | %8.3f | %s\n", what.c_str(), shape.c_str(), t.mean, t.best,
              1.0 / t.mean, note.c_str());
  std::fflush(stdout);
}

void run_bench(const BenchFlags& f) {
  const torch::Device device = parse_device(f.device);
  const torch::ScalarType dtype = parse_dtype(f.dtype);
  ModelConfig config = model_config_preset(f.config);
  torch::manual_seed(0);
  UNetModel unet(config.unet);
  unet->to(device, dtype);
  unet->eval();
  const auto opts = torch::TensorOptions().device(device).dtype(dtype);
  const int64_t ctx_len = config.text.context_length;
  std::printf("sine bench: %s UNet (%.1fM parameters), device %s, dtype %s, %d CPU threads\n", f.config.c_str(),
              count_parameters(*unet) / 1e6, f.device.c_str(), dtype_name(dtype).c_str(), torch::get_num_threads());
  std::printf("| %-38s | %-16s | %9s | %9s | %8s |\n", "what", "shape", "mean s", "best s", "it/s");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(40, '-').c_str(), std::string(18, '-').c_str(),
              std::string(11, '-').c_str(), std::string(11, '-').c_str(), std::string(10, '-').c_str());
  const std::string shape =
      "B" + std::to_string(f.batch) + " " + std::to_string(f.latent) + "x" + std::to_string(f.latent);
  auto x = torch::randn({f.batch, config.unet.in_channels, f.latent, f.latent}, opts);
  auto t = torch::full({f.batch}, 500, torch::TensorOptions().device(device).dtype(torch::kLong));
  auto ctx = torch::randn({f.batch, ctx_len, config.unet.context_dim}, opts);
  Timing fused;
  {
    torch::NoGradGuard ng;
    fused = time_it(device, f.repeat, [&] { unet->forward(x, t, ctx); });
    row("UNet forward (fused attention)", shape, fused);
    if (!f.no_baseline) {
      ProbsPathHook hook;
      unet->set_attention_hook(&hook);
      auto probs = time_it(device, f.repeat, [&] { unet->forward(x, t, ctx); });
      unet->set_attention_hook(nullptr);
      char note[64];
      std::snprintf(note, sizeof note, "fused is %.2fx this baseline", probs.mean / fused.mean);
      row("UNet forward (explicit probs: baseline)", shape, probs, note);
    }
    DDIMScheduler scheduler(DDIMConfig::stable_diffusion(), 50);
    auto latents = torch::randn({1, config.unet.in_channels, f.latent, f.latent}, opts);
    auto ctx2 = torch::randn({2, ctx_len, config.unet.context_dim}, opts);
    auto t2 = torch::full({2}, 981, torch::TensorOptions().device(device).dtype(torch::kLong));
    auto step = time_it(device, f.repeat, [&] {
      auto eps = unet->forward(torch::cat({latents, latents}), t2, ctx2).chunk(2);
      scheduler.step(classifier_free_guidance(eps[0], eps[1], 7.5), 981, latents);
    });
    row("CFG sampling step (UNet B2 + DDIM)", "B1 " + std::to_string(f.latent) + "x" + std::to_string(f.latent), step);
  }
  if (!f.no_train) {
    unet->train();
    torch::optim::AdamW opt(unet->parameters(), torch::optim::AdamWOptions(1e-6));
    const std::string tshape = "B1 " + std::to_string(f.train_latent) + "x" + std::to_string(f.train_latent);
    auto xt = torch::randn({1, config.unet.in_channels, f.train_latent, f.train_latent}, opts);
    auto tt = torch::full({1}, 500, torch::TensorOptions().device(device).dtype(torch::kLong));
    auto ct = torch::randn({1, ctx_len, config.unet.context_dim}, opts);
    auto noise = torch::randn_like(xt);
    auto train_step = [&] {
      opt.zero_grad();
      auto loss = epsilon_loss(unet->forward(xt, tt, ct), noise);
      loss.backward();
      opt.step();
    };
    for (bool ckpt : {false, true}) {
      unet->set_gradient_checkpointing(ckpt);
      auto ts = time_it(device, f.repeat, train_step);
      row(ckpt ? "training step (fwd+bwd+AdamW, ckpt)" : "training step (fwd+bwd+AdamW)", tshape, ts,
          ckpt ? "gradient checkpointing" : "");
    }
    unet->set_gradient_checkpointing(false);
  }
  std::printf("peak memory: %.2f GB (%s)\n", peak_memory_gb(device),
              device.is_cuda() ? "CUDA allocator peak" : "process peak RSS");
}

}  // namespace

void register_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  auto* cmd = app.add_subcommand("bench", "time UNet forward, a CFG sampling step and a training step (random weights)");
  cmd->add_option("--config", f->config, std::string("model size: ") + model_config_preset_names())->capture_default_str();
  cmd->add_option("--device", f->device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--dtype", f->dtype, "fp32, fp16 or bf16")->capture_default_str();
  cmd->add_option("--latent", f->latent, "latent size for inference (64 = 512 px for SD 1.5)")->capture_default_str();
  cmd->add_option("--batch", f->batch, "UNet batch for the forward timing")->capture_default_str();
  cmd->add_option("--train-latent", f->train_latent, "latent size of the training step")->capture_default_str();
  cmd->add_option("--repeat", f->repeat, "timed repetitions after one warm-up")->capture_default_str();
  cmd->add_flag("--no-train", f->no_train, "skip the training-step timing");
  cmd->add_flag("--no-baseline", f->no_baseline, "skip the explicit-probabilities baseline");
  on_run(cmd, [f] { run_bench(*f); });
}

}  // namespace sine
