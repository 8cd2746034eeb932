#pragma once
#include <torch/torch.h>

#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "diffusion/ddim.h"
#include "methods/prompt_to_prompt.h"
#include "pipeline/pipeline.h"

// Editing a real image with Prompt-to-Prompt, as the null-text inversion notebook (Mokady et al.)
// does: invert the image under its caption (DDIM inversion, optionally null-text inversion), keep
// the inversion in a file, then edit from z*_T with the P2P controller while the source branch
// reconstructs the image (by overwriting with z*_t, or through the null-text embeddings φ_t).
namespace sine {

// DDIM timestep conventions by name: "null-text" (= "p2p", 980…0, the notebook's), "specref"
// (981…1, final ᾱ 1) and "sd" (981…1, final ᾱ_0). Errors name "schedule".
DDIMConfig ddim_schedule(const std::string& name);

// An inverted image, the file `sine invert` writes and `sine p2p --inversion` reads: tensors
// `latents` z*_0..z*_T [T+1,4,h,w] and, after null-text inversion, `null_embeddings` φ_0..φ_{T-1}
// [T,77,C]; metadata format=sine-inversion, prompt, steps, schedule, steps_offset, set_alpha_to_one
// and `info` (model, image, PSNRs).
struct Inversion {
  std::string prompt;
  std::string schedule = "null-text";
  std::vector<torch::Tensor> latents;          // each [1,4,h,w]
  std::vector<torch::Tensor> null_embeddings;  // each [1,77,C]; empty without null-text
  std::map<std::string, std::string> info;

  int64_t steps() const { return static_cast<int64_t>(latents.size()) - 1; }
  DDIMConfig ddim() const { return ddim_schedule(schedule); }
};
// Atomic (temp file + rename).
void save_inversion(const std::string& path, const Inversion& inversion);
// Checks the format and the shapes; errors name the file. Latents go to `device`.
Inversion load_inversion(const std::string& path, const torch::Device& device = torch::kCPU);

// A new stage of a multi-stage run begins ("ddim invert", "null-text", "p2p edit") with `total` steps.
using StageCallback = std::function<void(const std::string& stage, int64_t total)>;

struct InvertConfig {
  std::string prompt;           // the image's caption
  int64_t steps = 50;
  std::string schedule = "null-text";
  double cfg_scale = 7.5;       // the reconstruction check's and null-text's guidance
  bool null_text = false;       // optimise φ_t per step (null-text inversion)
  int64_t inner_steps = 10;     // Adam iterations per step
  double early_stop = 1e-5;     // + i·2e-5

  void validate() const;  // errors name the field: "steps: must be in [1, 1000] (got 0)"
};

struct InvertResult {
  Inversion inversion;
  torch::Tensor reconstruction;  // u8 [H,W,3]: guidance 1, or null-text embeddings at cfg_scale
  double psnr_vae = 0;           // the VAE round trip (the ceiling)
  double psnr_guidance1 = 0;     // DDIM from z*_T at guidance 1
  double psnr_guidance = 0;      // ... at cfg_scale (what null-text repairs)
  double psnr_null_text = std::numeric_limits<double>::quiet_NaN();
  int64_t adam_steps = 0;
};

// `image` u8 [H,W,3] at a size the model takes. `on_step` may throw to cancel.
InvertResult invert_image(Pipeline& pipe, const torch::Tensor& image, const InvertConfig& config, bool progress = true,
                          const StageCallback& on_stage = {}, const StepCallback& on_step = {});

struct P2PEditConfig {
  std::string source, target;  // prompts: the image's caption and the edited one
  int64_t steps = 50;
  double cfg_scale = 7.5;
  std::string edit = "auto";   // replace, refine, none (reweight only), auto
  double cross_replace = 0.8, self_replace = 0.6;
  std::map<std::string, float> reweight;                  // target word -> factor
  std::map<std::string, p2p::Bounds> cross_replace_words;  // per-word cross replacement
  bool local_blend = false;
  std::string blend_words;  // "SOURCE:TARGET" (empty: the words that differ)
  std::vector<std::string> blend_substruct_source, blend_substruct_target;
  double blend_threshold = 0.3, blend_start = 0.2;
  std::string path = "auto";  // source reconstruction: latents, null-text, auto (null-text when available/asked)
  bool null_text = false;     // run null-text inversion when the inversion has none
  int64_t inner_steps = 10;

  // Errors name the field; `tokenizer` checks word swaps and blend words.
  void validate(const ClipTokenizer& tokenizer) const;
};

struct P2PEditResult {
  torch::Tensor reconstruction, edited;  // u8 [H,W,3]
  torch::Tensor blend_mask;              // float [H,W] in {0,1} (undefined without LocalBlend)
  p2p::ControllerConfig controller;
  bool null_text_path = false;  // the source branch used φ_t (else the inversion latents)
  bool blended = false;
  double psnr_reconstruction = 0;
};

// Edits `image` (u8 [H,W,3]) from `config.source` to `config.target`. `inversion` (optional) is a
// prior `invert_image` of the same image and prompt with config.steps steps; without one the image
// is inverted here.
P2PEditResult p2p_edit_image(Pipeline& pipe, const torch::Tensor& image, const P2PEditConfig& config,
                             const Inversion* inversion = nullptr, bool progress = true,
                             const StageCallback& on_stage = {}, const StepCallback& on_step = {});

// Text forms of the options (the CLI's and the page's): "dog=2,cat=0.5" and "dog=0.2:0.5,cat=0.6"
// (a single number b means (0, b)). Errors name "reweight" / "cross_replace_words".
std::map<std::string, float> parse_reweight(const std::string& text);
std::map<std::string, p2p::Bounds> parse_cross_replace_words(const std::string& text);

}  // namespace sine
