#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "methods/inversion/invert_image.h"
#include "methods/p2p/prompt_to_prompt.h"

// Editing a real image with Prompt-to-Prompt, as the null-text inversion notebook (Mokady et al.)
// does: invert the image under its caption (methods/inversion/: DDIM inversion, optionally null-text
// inversion, kept in a file), then edit from z*_T with the P2P controller while the source branch
// reconstructs the image (by overwriting with z*_t, or through the null-text embeddings φ_t).
namespace sine {

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
