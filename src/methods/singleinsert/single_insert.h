#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "methods/singleinsert/image_encoder.h"
#include "models/lora.h"
#include "pipeline/pipeline.h"
#include "train/trainer.h"

namespace sine {

// SingleInsert (arXiv 2310.08094, official code JarrentWu1031/SingleInsert): a concept from one
// image. Stage I trains an image encoder whose output replaces the '*' token of "* <class>"
// (frozen UNet and text encoder); stage II adds rank-4 LoRA on the UNet and text attention
// projections and trains them with the encoder. Losses in latent x0 space with the mask M:
//   L_fg = mean(M·(x̂0[*cls] − z0)²)
//   L_bg = mean((1−M)·(x̂0[*cls] − x̂0_frozen[cls])²)
//   L_sm = mean((x̂0_trained[cls] − x̂0_frozen[cls])²)          (stage II)

// ---- losses (plain means over B×4×h×w, not normalised by mask area, as the official code) ----
torch::Tensor foreground_loss(const torch::Tensor& x0_concept, const torch::Tensor& z0, const torch::Tensor& M);
torch::Tensor background_loss(const torch::Tensor& x0_concept, const torch::Tensor& x0_frozen_class,
                              const torch::Tensor& M);
torch::Tensor semantic_loss(const torch::Tensor& x0_trained_class, const torch::Tensor& x0_frozen_class);
// A mask [H, W], [1, H, W] or [1, 1, H, W] in [0, 1] area-pooled to the latent size: soft [1, 1, h, w].
torch::Tensor latent_mask(const torch::Tensor& mask, int64_t h, int64_t w);

// ---- token override ----
// The concept prompt and the class prompt of a training-prompt template ("* {class}" ->
// "* cube", "cube"): {class} replaced, and the placeholder word removed for the class prompt.
std::pair<std::string, std::string> insert_training_prompts(const std::string& prompt_template,
                                                           const std::string& class_word,
                                                           const std::string& placeholder);

// A prompt in which each placeholder word ("*", "*1", ...) is one added token; `slots` are the
// token positions (SOT = 0) and which placeholder each holds. ids carry a valid vocabulary id at
// the slots (their rows are overwritten anyway).
struct PlaceholderPrompt {
  torch::Tensor ids;  // I64 [1, 77]
  std::vector<std::pair<int64_t, size_t>> slots;
};
PlaceholderPrompt tokenize_with_placeholders(const ClipTokenizer& tokenizer, const std::string& prompt,
                                             const std::vector<std::string>& placeholders);
// Text states [1, 77, C] of the prompt with the embedding at every slot replaced by
// vectors[placeholder] ([C] each, may require grad); every other row is the normal lookup.
torch::Tensor encode_with_override(CLIPTextModel& text_encoder, const PlaceholderPrompt& prompt,
                                   const std::vector<torch::Tensor>& vectors);

// ---- training ----
// Stage I objective: the paper's Table 2 ablation rows.
enum class InsertObjective {
  Reconstruction,        // baseline: mean((x̂0[*cls] − z0)²) over the whole latent (M = 1, no L_bg)
  Foreground,            // + L_fg only
  ForegroundBackground,  // L_fg + γ·L_bg (SingleInsert)
};
InsertObjective parse_insert_objective(const std::string& name);  // "recon", "fg", "fg+bg"
const char* insert_objective_name(InsertObjective objective);

struct SingleInsertConfig {
  std::string class_word;            // e.g. "cube"; prompt "* cube", class prompt "cube"
  std::string placeholder = "*";
  // The training prompt: {class} is the class word, the placeholder is where the encoder's vector
  // goes; the class prompt is the same without the placeholder. The official code trains on
  // "* <class>" (a face: "_*_ face"); a base whose text encoder only saw whole captions needs
  // captions there, e.g. "a * {class} in the center on a checkered green background".
  std::string prompt_template = "* {class}";
  InsertObjective objective = InsertObjective::ForegroundBackground;
  int64_t batch = 4;                 // code default (paper: 16 in stage I)
  int64_t stage1_steps = 50;
  int64_t stage2_steps = 50;         // 0 = stage I only
  double stage1_lr = 1e-4;
  double stage2_lr = 5e-5;
  double gamma = 1.0;                // weight of L_bg
  double eta = 1.0;                  // weight of L_sm
  bool use_semantic_loss = true;     // L_sm in stage II
  bool frozen_text_target = false;   // paper-literal frozen target (code default: LoRA text states)
  double weight_decay = 1e-2;
  double grad_clip = 1.0;
  int64_t lora_rank = 4;
  std::string encoder = "";          // "vit-b32", "tiny"; empty = by the text width
  std::string encoder_weights;       // optional OpenAI CLIP vision .safetensors
  uint64_t seed = 0;
  std::string checkpoint_dir;        // stage1.ckpt / stage2.ckpt there (resumable); empty = none
  int64_t checkpoint_every = 0;

  nlohmann::json to_json() const;
};

struct InsertLosses {
  double total = 0, fg = 0, bg = 0, sm = 0;
};

// Everything a trained concept needs at inference (the encoder itself is not needed).
struct Concept {
  std::string class_word;
  std::string token = "*";
  torch::Tensor vector;  // [C], the encoder output for the source image
  LoRAWeights lora;      // UNet + text encoder LoRA; empty for a stage-I-only concept
  nlohmann::json info;   // base model, config, steps, final losses, seconds
};

class SingleInsertTrainer {
 public:
  // image uint8 [H, W, 3] at the model's size; mask [1, 1, H, W] (or [H, W]) in [0, 1].
  SingleInsertTrainer(Pipeline& pipeline, const torch::Tensor& image_u8, const torch::Tensor& mask,
                      SingleInsertConfig config);
  ~SingleInsertTrainer();

  // Stage I then stage II, resuming from checkpoint_dir when it holds checkpoints.
  Concept train();
  // The pieces, for tests and the benchmark.
  void run_stage1(int64_t stop_at = -1);
  void begin_stage2();  // attaches the LoRA (fresh) and makes the stage II optimizer
  void run_stage2(int64_t stop_at = -1);
  // The losses of one step (stage 1 or 2) with randomness from `gen`; `loss` carries the graph.
  std::pair<torch::Tensor, InsertLosses> step_loss(int stage, torch::Generator& gen);

  Concept concept_now() const;
  torch::Tensor token_vector() const;  // [C], no grad
  ImageEncoder& encoder() { return encoder_; }
  LoRANetwork& unet_lora() { return unet_lora_; }
  LoRANetwork& text_lora() { return text_lora_; }
  const std::vector<InsertLosses>& history(int stage) const { return stage == 1 ? history1_ : history2_; }
  const SingleInsertConfig& config() const { return config_; }
  int stage() const { return stage_; }
  // Removes the LoRA from the model (the trainer keeps the weights).
  void detach_lora();

 private:
  TrainConfig train_config(int stage) const;
  torch::Tensor sample_z0(torch::Generator& gen);

  Pipeline& pipeline_;
  SingleInsertConfig config_;
  mutable ImageEncoder encoder_{nullptr};
  torch::Tensor pixels_;             // encoder input [1, 3, R, R]
  torch::Tensor posterior_mean_, posterior_std_;  // VAE posterior of the image (unscaled)
  torch::Tensor M_;                  // [1, 1, h, w]
  PlaceholderPrompt concept_prompt_, class_prompt_;
  LoRANetwork unet_lora_, text_lora_;
  std::unique_ptr<Trainer> trainer_;
  int stage_ = 0;
  double seconds_[2] = {0, 0};
  std::vector<InsertLosses> history1_, history2_;
};

// ★ A soft mask [1, 1, H, W] of the class word in `image_u8`, from the model's cross-attention:
// the image is noised at a few timesteps, the UNet runs on "a <class>" and the attention
// probabilities of the class tokens are averaged over heads, layers and timesteps, upsampled,
// min-max normalised and thresholded at `threshold`.
torch::Tensor attention_mask(Pipeline& pipeline, const torch::Tensor& image_u8, const std::string& class_word,
                             uint64_t seed = 0, double threshold = 0.5);

// ---- inference ----
// Text states for a prompt holding concept tokens (each concept's token word, e.g. "*1").
torch::Tensor encode_concept_prompt(Pipeline& pipeline, const std::string& prompt,
                                    const std::vector<Concept>& concepts);
// DDIM + CFG txt2img with the concepts' tokens (their LoRA must be attached by the caller:
// attach_concepts in methods/singleinsert/concept_file.h). Returns uint8 [H, W, 3].
torch::Tensor generate_with_concepts(Pipeline& pipeline, const std::vector<Concept>& concepts,
                                     const GenerateOptions& options, const StepCallback& on_step = {});

// The same for several prompts and seeds in one batch (prompt i with seed i; the initial noise of
// each equals that of generate_with_concepts with that seed). `size`: the square canvas in pixels
// (0: the model's native size). Returns uint8 [H, W, 3] each.
std::vector<torch::Tensor> generate_batch_with_concepts(Pipeline& pipeline, const std::vector<Concept>& concepts,
                                                        const std::vector<std::string>& prompts,
                                                        const std::vector<uint64_t>& seeds, int64_t steps,
                                                        double cfg_scale, const std::string& negative_prompt = "",
                                                        int64_t size = 0);

}  // namespace sine
