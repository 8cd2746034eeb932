#include "eval/engine_bench.h"

#include <chrono>
#include <cstdio>
#include <functional>

#include "core/device.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "core/torch_compat.h"
#include "core/validate.h"
#include "diffusion/ddim.h"
#include "diffusion/guidance.h"
#include "diffusion/noise_schedule.h"
#include "eval/method_timing.h"
#include "models/lora.h"
#include "models/attention_hook.h"
#include "models/presets.h"
#include "models/stable_diffusion.h"
#include "models/unet_graph.h"
#include "models/weights.h"
#include "pipeline/pipeline.h"
#include "tokenizer/bpe_trainer.h"
#include "train/trainer.h"

namespace sine {

namespace {

// Makes attention take the explicit-probabilities path everywhere: what any hook that reads the
// maps (P2P, SpecRef masks) costs, and the baseline the fused path is compared against.
struct ProbsPathHook : AttentionHook {
  bool needs_probs(const AttentionSite&) override { return true; }
};

struct Timing {
  double mean = 0, best = 1e30;
};

template <class F>
Timing time_it(const torch::Device& device, int64_t repeat, F&& f, bool warm_up = true) {
  if (warm_up) f();  // allocations, oneDNN primitive caches, cuBLAS handles
  synchronize(device);
  Timing t;
  for (int64_t i = 0; i < repeat; ++i) {
    auto start = std::chrono::steady_clock::now();
    f();
    synchronize(device);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    t.mean += s / repeat;
    t.best = std::min(t.best, s);
  }
  return t;
}

// One row per measurement, handed to `on_row` as soon as it is measured.
class Rows {
 public:
  Rows(torch::Device device, std::vector<EngineBenchRow>& rows, const std::function<void(const EngineBenchRow&)>& on_row)
      : device_(device), rows_(rows), on_row_(on_row) {}
  // Starts a row's memory window (per row on CUDA; the CPU's peak RSS only grows).
  void begin() const { reset_peak_memory(device_); }
  void add(const std::string& what, const std::string& shape, const Timing& t, const std::string& note = "") {
    push(EngineBenchRow{what, shape, note, t.mean, t.best, peak_memory_bytes(device_) / 1e9});
  }
  // A row measured elsewhere (the methods' timings carry their own peak).
  void add_measured(const std::string& what, double seconds, double peak_gb, const std::string& note) {
    push(EngineBenchRow{what, "", note, seconds, seconds, peak_gb});
  }

 private:
  void push(EngineBenchRow r) {
    rows_.push_back(std::move(r));
    if (on_row_) on_row_(rows_.back());
  }
  torch::Device device_;
  std::vector<EngineBenchRow>& rows_;
  std::function<void(const EngineBenchRow&)> on_row_;
};

std::string square(int64_t b, int64_t side) {
  return "B" + std::to_string(b) + " " + std::to_string(side) + "x" + std::to_string(side);
}

// What every row group times on: the random model, its pipeline and the row sink.
struct BenchContext {
  const EngineBenchOptions& f;
  torch::Device device;
  ModelConfig config;
  StableDiffusion model;
  UNetModel unet;
  Pipeline& pipe;
  Rows& report;
  torch::TensorOptions opts, longs;
  int64_t ctx_len, px;

  // Inference: text encode, UNet forward (fused and explicit-probabilities), a CFG step (and its
  // CUDA graph), VAE decode, a whole image.
  void time_inference();
  // Training steps: full (with and without gradient checkpointing) and LoRA.
  void time_training();
};

void BenchContext::time_inference() {
  torch::NoGradGuard ng;
  auto ids = torch::randint(0, config.text.vocab_size, {1, ctx_len}, longs);
  report.begin();
  report.add("text encode", "B1 77 tokens", time_it(device, f.repeat, [&] { model->text_encoder->encode(ids); }));

  auto x = torch::randn({f.batch, config.unet.in_channels, f.latent, f.latent}, opts);
  auto t = torch::full({f.batch}, 500, longs);
  auto ctx = torch::randn({f.batch, ctx_len, config.unet.context_dim}, opts);
  report.begin();
  auto fused = time_it(device, f.repeat, [&] { unet->forward(x, t, ctx); });
  report.add("UNet forward (fused attention)", square(f.batch, f.latent), fused,
             compat::has_sdpa ? "SDPA" : "chunked softmax");
  if (f.baseline) {
    ProbsPathHook hook;
    ScopedAttentionHook guard(unet, &hook);  // for this row only
    report.begin();
    auto probs = time_it(device, f.repeat, [&] { unet->forward(x, t, ctx); });
    char note[64];
    std::snprintf(note, sizeof note, "fused is %.2fx this baseline", probs.mean / fused.mean);
    report.add("UNet forward (explicit probs: baseline)", square(f.batch, f.latent), probs, note);
  }
  if (f.baseline) {
    // The fused forward with NHWC convolutions and activations (UNetModelImpl::set_channels_last).
    char note[64];
    unet->set_channels_last(true);
    report.begin();
    auto nhwc = time_it(device, f.repeat, [&] { unet->forward(x, t, ctx); });
    unet->set_channels_last(false);
    std::snprintf(note, sizeof note, "%.2fx the default layout's speed", fused.mean / nhwc.mean);
    report.add("UNet forward (channels-last)", square(f.batch, f.latent), nhwc, note);
  }
  DDIMScheduler scheduler(DDIMConfig::stable_diffusion(), 50);
  auto latents = torch::randn({1, config.unet.in_channels, f.latent, f.latent}, opts);
  auto ctx2 = torch::randn({2, ctx_len, config.unet.context_dim}, opts);
  auto t2 = torch::full({2}, 981, longs);
  auto cfg_step = [&](const torch::Tensor& z, int64_t timestep) {
    auto eps = unet->forward(torch::cat({z, z}), t2.fill_(timestep), ctx2).chunk(2);
    return scheduler.step(classifier_free_guidance(eps[0], eps[1], 7.5), timestep, z).prev_sample;
  };
  report.begin();
  report.add("CFG sampling step (UNet B2 + DDIM)", square(1, f.latent),
             time_it(device, f.repeat, [&] { cfg_step(latents, 981); }));
  if (f.cuda_graph) {
    if (!UNetGraph::supported(unet, device))
      throw Error("cuda_graph: CUDA graphs need a CUDA build (make build-cuda) and --device cuda");
    UNetGraph graph(unet, torch::cat({latents, latents}), t2, ctx2);
    report.begin();
    report.add("CFG sampling step (CUDA graph)", square(1, f.latent), time_it(device, f.repeat, [&] {
                 auto eps = graph.forward(torch::cat({latents, latents}), t2, ctx2).chunk(2);
                 scheduler.step(classifier_free_guidance(eps[0], eps[1], 7.5), 981, latents);
               }));
  }
  report.begin();
  report.add("VAE decode", square(1, px) + " px", time_it(device, f.repeat, [&] { model->vae->decode(latents); }));
  if (f.image) {
    // What `sine generate` does after loading: two prompts, the CFG steps, the decode (one run).
    GenerateOptions g;
    g.prompt = "a red circle in the center on a white background";
    g.steps = f.image_steps;
    g.width = g.height = px;
    report.begin();
    auto whole = time_it(device, 1, [&] { pipe.generate(g); }, /*warm_up=*/false);
    report.add("whole image (" + std::to_string(f.image_steps) + " CFG steps + decode)", square(1, px) + " px",
               whole);
  }
}

void BenchContext::time_training() {
  unet->train();
  const std::string tshape = square(1, f.train_latent);
  auto xt = torch::randn({1, config.unet.in_channels, f.train_latent, f.train_latent}, opts);
  auto tt = torch::full({1}, 500, longs);
  auto ct = torch::randn({1, ctx_len, config.unet.context_dim}, opts);
  auto noise = torch::randn_like(xt);
  {
    // What `sine finetune` runs: the project's Trainer, with fp32 master weights when the model is
    // bf16/fp16, AdamW moments in fp32 and (with checkpointing) in bf16.
    const bool progress = progress_enabled();
    set_progress_enabled(false);
    for (auto state : {torch::kFloat32, torch::kBFloat16}) {
      NamedTensors params;
      for (const auto& item : unet->named_parameters()) params.emplace_back(item.key(), item.value());
      TrainConfig tc;
      tc.steps = int64_t{1} << 40;
      tc.lr = 1e-6;
      tc.grad_clip = 0;
      tc.optimizer_state = state;
      tc.label = "bench";
      Trainer trainer(params, tc);
      const torch::Tensor target = noise.to(torch::kFloat32);
      const LossFunction loss = [&](int64_t, torch::Generator&) {
        return epsilon_loss(unet->forward(xt, tt, ct).to(torch::kFloat32), target);
      };
      auto train_step = [&] { trainer.run(loss, trainer.step() + 1); };
      char note[160];
      std::snprintf(note, sizeof note, "fwd+bwd+AdamW; masters + moments %.2f GB (%s state)",
                    static_cast<double>(trainer.optimizer_bytes()) / 1e9, state == torch::kFloat32 ? "fp32" : "bf16");
      for (bool ckpt : {false, true}) {
        if (state != torch::kFloat32 && !ckpt) continue;
        unet->set_gradient_checkpointing(ckpt);
        std::string what = ckpt ? "training step, full (ckpt)" : "training step, full";
        if (state != torch::kFloat32) what = "training step, full (ckpt, bf16 state)";
        report.begin();
        report.add(what, tshape, time_it(device, f.repeat, train_step),
                   std::string(note) + (ckpt ? ", gradient checkpointing" : ""));
      }
      unet->set_gradient_checkpointing(false);
    }
    set_progress_enabled(progress);
  }
  if (f.lora_rank > 0) {
    for (auto& p : unet->parameters()) p.set_requires_grad(false);
    LoRAConfig lc;
    lc.rank = f.lora_rank;
    lc.text_encoder = false;
    LoRANetwork lora = LoRANetwork::attach(model, lc);
    std::vector<torch::Tensor> params;
    for (auto& [name, p] : lora.parameters()) params.push_back(p);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-4));
    auto train_step = [&] {
      opt.zero_grad();
      auto loss = epsilon_loss(unet->forward(xt, tt, ct), noise);
      loss.backward();
      opt.step();
    };
    report.begin();
    report.add("training step, LoRA r" + std::to_string(f.lora_rank), tshape, time_it(device, f.repeat, train_step),
               std::to_string(lora.size()) + " adapted projections");
    lora.remove();
  }
}

}  // namespace

void EngineBenchOptions::validate() const {
  if (latent < 8) throw Error("latent: must be at least 8 (got " + std::to_string(latent) + ")");
  if (train_latent < 8) throw Error("train_latent: must be at least 8 (got " + std::to_string(train_latent) + ")");
  if (batch < 1) throw Error("batch: must be at least 1 (got " + std::to_string(batch) + ")");
  if (repeat < 1) throw Error("repeat: must be at least 1 (got " + std::to_string(repeat) + ")");
  if (image_steps < 1) throw Error("image_steps: must be at least 1 (got " + std::to_string(image_steps) + ")");
  if (lora_rank < 0) throw Error("lora_rank: must be 0 (skip) or positive (got " + std::to_string(lora_rank) + ")");
}

nlohmann::json EngineBenchResult::json(const EngineBenchOptions& f) const {
  nlohmann::json rows_json = nlohmann::json::array();
  for (const auto& r : rows)
    rows_json.push_back({{"what", r.what}, {"shape", r.shape}, {"mean_s", r.mean_s}, {"best_s", r.best_s},
                         {"it_per_s", 1.0 / r.mean_s}, {"peak_gb", r.peak_gb}, {"note", r.note}});
  return {{"config", f.config},
          {"device", f.device},
          {"dtype", dtype_name(parse_dtype(f.dtype))},
          {"libtorch", compat::torch_version()},
          {"sdpa", compat::has_sdpa},
          {"cuda_compiled", compat::cuda_compiled},
          {"devices", devices},
          {"threads", torch::get_num_threads()},
          {"rows", rows_json},
          {"peak_gb", peak_gb},
          {"peak_kind", peak_kind}};
}

EngineBenchResult run_engine_bench(const EngineBenchOptions& f, const std::function<void(const std::string&)>& on_start,
                                   const std::function<void(const EngineBenchRow&)>& on_row) {
  f.validate();
  const torch::Device device = parse_device(f.device);
  const torch::ScalarType dtype = parse_dtype(f.dtype);
  ModelConfig config = model_config_preset(f.config);
  torch::manual_seed(0);
  StableDiffusion model = [&] {
    ScopedDefaultDtype build_in(dtype);
    return StableDiffusion(config);
  }();
  model->to(device, dtype);
  model->eval();
  UNetModel unet = model->unet;
  char line[256];
  std::snprintf(line, sizeof line, "sine bench: %s (UNet %.1fM, VAE %.1fM, text %.1fM parameters), device %s, dtype %s, LibTorch %s%s",
                f.config.c_str(), count_parameters(*unet) / 1e6, count_parameters(*model->vae) / 1e6,
                count_parameters(*model->text_encoder) / 1e6, f.device.c_str(), dtype_name(dtype).c_str(),
                compat::torch_version().c_str(), compat::has_sdpa ? " (SDPA)" : "");
  EngineBenchResult result;
  result.description = line;
  result.devices = describe_devices();
  if (on_start) on_start(result.description + "\ndevices: " + result.devices);
  // The pipeline over the random model, with a tokenizer learned from a few captions (token ids are
  // all the networks see; the words only have to exist): the whole-image row and the methods use it.
  static const std::vector<std::string> captions = {
      "a red circle in the center on a white background", "a blue star in the center on a white background",
      "a blue circle on the left on a gray background", "photo of a sks thing", "a * circle"};
  Pipeline pipe(model, std::make_shared<ClipTokenizer>(train_bpe(captions, 300)), device, dtype, "random " + f.config);
  Rows report(device, result.rows, on_row);
  BenchContext b{f, device, config, model, unet, pipe, report,
                 torch::TensorOptions().device(device).dtype(dtype), torch::TensorOptions().device(device).dtype(torch::kLong),
                 config.text.context_length, f.latent * config.vae.downsample_factor()};
  if (!f.only_methods) b.time_inference();
  if (f.train && !f.only_methods) b.time_training();
  if (f.methods || f.only_methods) {
    // The methods' units of work on the same random model.
    unet->eval();
    MethodTimingOptions mo;
    mo.steps = f.repeat;
    mo.lora_rank = f.lora_rank > 0 ? f.lora_rank : 4;
    for (const auto& r : time_methods(pipe, mo)) report.add_measured(r.what, r.seconds, r.peak_gb, r.note);
  }
  result.peak_gb = peak_memory_bytes(device) / 1e9;
  result.peak_kind = peak_memory_kind(device);
  return result;
}

}  // namespace sine
