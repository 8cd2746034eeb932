#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "methods/sine/positional_grid.h"
#include "methods/sine/sine_patch.h"
#include "pipeline/pipeline.h"
#include "train/trainer.h"

// SINE stage 1 (official LDM code): fine-tune the whole UNet and the whole CLIP text encoder on one
// image with the prompt "photo of a sks {class}", VAE frozen, latent = scale × a posterior sample,
// ε-MSE over t ~ U{0..999}, AdamW (torch defaults, constant lr, no clipping), batch 1. Whole-image
// mode resizes the image to the training resolution; patch mode trains on random crops with the
// positional grid sliced to the crop added after conv_in, plus (t/1000)²·mean|x̂0 − x0|.
namespace sine {

enum class SineMode { Whole, Patch };
SineMode parse_sine_mode(const std::string& name);  // "whole", "patch"
const char* sine_mode_name(SineMode mode);

struct SineFinetuneConfig {
  std::string class_word = "object";
  std::string prompt_template = "photo of a sks {class}";
  SineMode mode = SineMode::Whole;
  int64_t steps = 800;          // official: 800 whole-image, 10000 patch
  double lr = 1e-6;             // official for SD 1.x
  double weight_decay = 1e-2;   // torch AdamW default
  double grad_clip = 0;         // the LDM run does not clip
  double recon_weight = 1.0;    // scale_recon_loss of the patch configs (0 in whole-image mode)
  uint64_t seed = 23;
  bool gradient_checkpointing = false;
  // Mixed precision on a bf16/fp16 model: fp32 master weights (train/trainer.h); AdamW moments in
  // fp32 or bf16 (stochastically rounded, train/adamw.h). A full SD 1.5 fine-tune holds per trainable
  // weight 2 (bf16 weight) + 2 (grad) + 4 (master) + 8 or 4 (moments) bytes.
  bool master_weights = true;
  torch::ScalarType optimizer_state = torch::kFloat32;
  GridInterpolation grid_interpolation = GridInterpolation::Bilinear;
  int64_t grid_size = 0;        // 0: 2 × the training latent size
  double min_patch_fraction = 0.1;
  int64_t lora_rank = 0;        // > 0: train LoRA adapters (UNet + text attention) instead of all weights
  std::string checkpoint_path;  // resumable Trainer checkpoint (empty: none)
  int64_t checkpoint_every = 0;
};

// "photo of a sks {class}" with {class} replaced.
std::string sine_training_prompt(const std::string& prompt_template, const std::string& class_word);
// G for a pipeline: 2 × its training latent size (128 for SD 1.x at 512 px, 32 for the shapes model).
int64_t default_grid_size(const Pipeline& pipeline);

struct SineLossParts {
  torch::Tensor total, eps_loss, recon_loss;  // recon_loss is 0 in whole-image mode
  int64_t t = 0;
  CropBox box;
};

// A fine-tune's identity: the image (hashed), prompt, mode, learning rate, seed, LoRA rank, grid
// interpolation, reconstruction weight and the base model. A checkpoint is resumed only by the
// run that wrote it.
nlohmann::json sine_finetune_identity(const torch::Tensor& image_u8, const SineFinetuneConfig& config,
                                      const std::string& base_model);
// Claims config.checkpoint_path for the run `identity` before it trains: `fresh` first removes the
// checkpoint and its identity file (<checkpoint>.json); an existing checkpoint of another run is a
// sine::Error naming "checkpoint"; the identity is then written (atomically) beside it.
void claim_sine_checkpoint(const SineFinetuneConfig& config, const nlohmann::json& identity, bool fresh);

class SineFinetuner {
 public:
  // Fine-tunes `pipeline`'s model in place. image_u8: uint8 [H, W, 3], any size.
  SineFinetuner(Pipeline& pipeline, const torch::Tensor& image_u8, SineFinetuneConfig config);
  ~SineFinetuner();

  // One training sample's loss; all randomness (crop, posterior sample, t, noise) from `gen`.
  SineLossParts loss(torch::Generator& gen);
  // Resumes from config.checkpoint_path when it exists; returns whether it did.
  bool resume();
  // Trains up to `stop_at` steps (default: config.steps).
  void train(int64_t stop_at = -1);

  Trainer& trainer() { return *trainer_; }
  const SineFinetuneConfig& config() const { return config_; }
  const std::string& prompt() const { return prompt_; }
  const PositionalGrid* grid() const { return grid_ ? &*grid_ : nullptr; }
  Pipeline& pipeline() { return pipeline_; }
  // Trained weights: with LoRA the adapters ("<module>.lora_down/.lora_up"), else every UNet and
  // text-encoder tensor under its checkpoint key.
  NamedTensors trained_parameters() const;
  // The base weights the fine-tune started from (a CPU copy of every trained tensor; full mode only).
  const std::map<std::string, torch::Tensor>& base_weights() const { return base_; }
  // weights_fingerprint (sine_model.h) of the model before training (full mode only), taken when the
  // fine-tuner is made, so saving never has to put the base weights back to hash them.
  const std::string& base_fingerprint() const { return base_fingerprint_; }
  // The LoRA network (LoRA mode only).
  const class LoRANetwork* lora() const;

 private:
  Pipeline& pipeline_;
  SineFinetuneConfig config_;
  std::string prompt_;
  torch::Tensor tokens_;
  torch::Tensor image_;  // whole-image mode: uint8 at the training resolution
  std::optional<PatchSampler> sampler_;
  std::optional<PositionalGrid> grid_;
  std::map<std::string, torch::Tensor> base_;
  std::string base_fingerprint_;
  std::unique_ptr<class LoRANetwork> lora_;
  std::unique_ptr<Trainer> trainer_;
};

}  // namespace sine
