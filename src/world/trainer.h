#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/config.h"
#include "models/stable_diffusion.h"
#include "tokenizer/clip_tokenizer.h"
#include "train/trainer.h"
#include "world/scene.h"

// Trains the bundled shapes-world model from scratch: (1) a BPE tokenizer on sampled captions,
// (2) the VAE on rendered scenes, (3) text encoder and UNet jointly on the ε-loss, with the VAE
// frozen. Scenes are rendered on the fly from seeds drawn by the trainer's generator, so every
// stage is deterministic for a seed and resumes bit for bit from its checkpoint.
namespace sine::world {

// SD 1.x topology at a CPU-trainable size: 64x64 pixels, VAE factor 4 (16x16x4 latents),
// cross-attention at 16x16 and 8x8, a 2-layer CLIP-style text encoder over the caption vocabulary.
ModelConfig shapes_model_config(int64_t vocab_size);

struct StageConfig {
  int64_t steps = 0;
  int64_t batch = 16;
  double lr = 1e-3;
  int64_t warmup_steps = 0;
  double min_lr_ratio = 1.0;  // cosine decay to lr * min_lr_ratio; 1 = constant
  double ema_decay = 0;       // 0 = no EMA; with EMA the exported weights are the average
  double grad_clip = 1.0;
};

struct WorldTrainOptions {
  std::string work_dir = "shapes-train";  // tokenizer + stage checkpoints (resumed when present)
  std::string output = "shapes.safetensors";
  uint64_t seed = 0;
  int64_t image_size = 64;
  SceneSampling scenes;
  // Canvas buckets of the text encoder + UNet stage (height, width); empty: image_size square.
  // Each step draws one bucket and renders scenes laid out for its aspect; the batch shrinks with
  // the canvas (batch * image_size^2 / (height * width), at least 1) so every step costs about
  // the same. The VAE stage always trains at image_size.
  std::vector<std::pair<int64_t, int64_t>> buckets;

  int64_t tokenizer_captions = 20000;
  int64_t bpe_merges = 2000;  // an upper bound: BPE stops once every caption word is one token

  StageConfig vae{3000, 16, 1e-3, 100, 0.1, 0, 1.0};
  double kl_weight = 1e-6;

  StageConfig diffusion{30000, 32, 5e-4, 500, 0.1, 0.999, 1.0};
  double caption_dropout = 0.1;  // empty prompt, so classifier-free guidance works
  // Offset noise (Guttenberg 2023): ε += offset · N(0,1) per sample and channel, constant over
  // the image. At 16x16 latents the SD schedule leaves an image's mean colour readable even at
  // t = 999, so without it the sampler takes the background colour from the starting noise's
  // mean and the text never learns to set it. The schedule itself stays SD 1.x's.
  double offset_noise = 0.1;

  int64_t checkpoint_every = 500;
  int64_t eval_images = 64;  // held-out scenes (a seed range training never draws from)
  bool fp16_output = true;
  torch::Device device = torch::kCPU;
  // The architecture for a vocabulary size; tests substitute a smaller one.
  std::function<ModelConfig(int64_t vocab_size)> architecture = shapes_model_config;
};

// A batch of rendered scenes: images float [B,3,H,W] in [-1,1] (on the CPU) and their captions.
struct SceneBatch {
  torch::Tensor images;
  std::vector<std::string> captions;
};
// Renders the scenes seeded by `seeds` (each seeds its own std::mt19937_64), laid out for a
// height x width canvas (sampling.aspect is set from it).
SceneBatch render_batch(const std::vector<uint64_t>& seeds, int64_t height, int64_t width, SceneSampling sampling);
inline SceneBatch render_batch(const std::vector<uint64_t>& seeds, int64_t image_size, const SceneSampling& sampling) {
  return render_batch(seeds, image_size, image_size, sampling);
}
// "64x64,128x64" (WIDTHxHEIGHT, like -W/-H) -> (height, width) pairs; each side a positive
// multiple of `factor`.
std::vector<std::pair<int64_t, int64_t>> parse_buckets(const std::string& text, int64_t factor);
// Seeds of the held-out evaluation scenes: at or above 2^63, where training draws never land.
std::vector<uint64_t> eval_seeds(int64_t count, uint64_t offset = 0);

struct VAEEval {
  double l1 = 0, psnr = 0;  // of reconstructions from the posterior mean, pixels in [0, 1]
};

struct DiffusionEval {
  double loss = 0;               // with the scenes' captions
  double loss_empty_prompt = 0;  // same latents, timesteps and noise, prompt ""
};

class ShapesWorldTrainer {
 public:
  // Builds (or reloads from work_dir) the tokenizer and initializes the model from the seed.
  explicit ShapesWorldTrainer(WorldTrainOptions options);
  ~ShapesWorldTrainer();

  // Stage 2. Resumes from work_dir/vae.ckpt.safetensors; trains up to `stop_at` steps (default:
  // all), as if interrupted there.
  void train_vae(int64_t stop_at = -1);
  // Stage 3 (needs a finished VAE stage). Measures the latent scale first.
  void train_diffusion(int64_t stop_at = -1);
  // The single-file model: canonical keys, EMA weights, sine.config and the tokenizer in metadata.
  void save_model(const std::string& path);

  // 1 / std of posterior samples of the held-out scenes; stored as VAEConfig::scaling_factor.
  double measure_latent_scale();
  VAEEval evaluate_vae();
  // ε-loss on the held-out scenes with fixed timesteps and noise, with their captions and with
  // empty prompts: the gap is what the text contributes (≈ 0 means the model ignores prompts).
  DiffusionEval evaluate_diffusion();

  const ClipTokenizer& tokenizer() const { return *tokenizer_; }
  StableDiffusion& model() { return model_; }
  const WorldTrainOptions& options() const { return options_; }
  const Trainer& vae_trainer();
  // The stages' trainers (restored from their checkpoints on first use).
  const Trainer& diffusion_trainer();

 private:
  std::string path_in_work_dir(const std::string& name) const;
  void build_tokenizer();
  void ensure_vae_trainer();
  void ensure_diffusion_trainer();
  void require_finished_vae();
  std::vector<uint64_t> draw_seeds(int64_t count, torch::Generator& gen) const;
  torch::Tensor encode_latents(const torch::Tensor& images, torch::Generator* gen);
  torch::Tensor vae_loss(torch::Generator& gen);
  torch::Tensor diffusion_loss(torch::Generator& gen);

  WorldTrainOptions options_;
  std::shared_ptr<ClipTokenizer> tokenizer_;
  StableDiffusion model_{nullptr};
  std::unique_ptr<Trainer> vae_;
  std::unique_ptr<Trainer> diffusion_;
  bool scale_measured_ = false;
};

// All three stages and the export, resuming whatever work_dir already holds. Reports each
// stage's speed and held-out metrics on stderr. `vae_only` stops after the VAE stage (no export).
void train_shapes_world(const WorldTrainOptions& options, bool vae_only = false);

}  // namespace sine::world
