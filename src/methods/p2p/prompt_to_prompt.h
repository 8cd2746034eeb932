#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/ddim.h"
#include "methods/attention_layout.h"
#include "methods/p2p/attention_store.h"
#include "models/attention_hook.h"
#include "pipeline/pipeline.h"

// Prompt-to-Prompt (Hertz et al.), as google/prompt-to-prompt's null-text notebook (the copy
// SpecRef uses): a controller on the attention seam that edits the conditional half of the
// batch, prompt 0 (source) being the base and prompt 1 (target) the edited one.
namespace sine::p2p {

class LocalBlend;

enum class EditKind { none, replace, refine };
EditKind parse_edit_kind(const std::string& name);  // "replace"/"swap", "refine", "none"
// `name`, or for "auto" Replace when the prompts have as many words, else Refine.
EditKind choose_edit_kind(const std::string& name, const std::string& source, const std::string& target);
const char* edit_kind_name(EditKind kind);

// (start, end) fractions of the schedule.
using Bounds = std::pair<double, double>;

struct ControllerConfig {
  EditKind kind = EditKind::replace;
  Bounds cross_replace{0.0, 0.8};                 // cross_replace_steps (a float b means (0, b))
  std::map<std::string, Bounds> cross_replace_words;  // per-word overrides (target prompt words)
  Bounds self_replace{0.0, 0.6};                  // self_replace_steps
  std::map<std::string, float> equalizer;         // reweight: target word -> factor (empty = none)
  int64_t num_steps = 50;
};

// get_time_words_attention_alpha for two prompts: float [num_steps + 1, 77]; row r is 1 on
// [int(a·(steps+1)), int(b·(steps+1))) for the default bounds, per-word entries override their columns.
torch::Tensor cross_replace_alpha(const ClipTokenizer& tokenizer, const std::string& target, int64_t num_steps,
                                  Bounds default_bounds, const std::map<std::string, Bounds>& words);
// [int(steps·a), int(steps·b)).
std::pair<int64_t, int64_t> self_replace_window(int64_t num_steps, Bounds bounds);
// get_equalizer: float [77], ones with the words' tokens set to their values.
torch::Tensor equalizer(const ClipTokenizer& tokenizer, const std::string& text, const std::map<std::string, float>& values);

// The AttentionControlEdit hook. Batches are [uncond..., cond...] with P = 2 prompts per half
// (or only the cond half when the batch has P elements); only the cond half is edited and stored.
class Controller : public AttentionHook {
 public:
  Controller(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target,
             const ControllerConfig& config, int64_t store_max_pixels);

  bool needs_probs(const AttentionSite& site) override;
  torch::Tensor on_probs(const AttentionSite& site, torch::Tensor probs) override;

  // Cross-attention edit of the target maps given the base: [heads, N, 77] x [heads, N, 77] -> [heads, N, 77].
  torch::Tensor edit_cross(const torch::Tensor& base, const torch::Tensor& target) const;

  AttentionStore& store() { return store_; }
  const torch::Tensor& alpha() const { return alpha_; }
  std::pair<int64_t, int64_t> self_window() const { return self_window_; }
  const ControllerConfig& config() const { return config_; }
  // Called with every site whose probabilities passed through on_probs, after the edit.
  std::function<void(const AttentionSite&, const torch::Tensor&)> observer;

 private:
  ControllerConfig config_;
  AttentionStore store_;
  torch::Tensor alpha_;           // [steps+1, 77]
  torch::Tensor replace_mapper_;  // [77, 77]
  torch::Tensor refine_mapper_, refine_alphas_;  // [77] I64, [77]
  torch::Tensor equalizer_;       // [77] or undefined
  std::pair<int64_t, int64_t> self_window_;
};

// How the source branch reconstructs the real image while editing.
struct ReconstructionPath {
  std::vector<torch::Tensor> inversion_latents;  // z*_0..z*_T: overwrite the source latent each step (FEC-ref)
  std::vector<torch::Tensor> null_embeddings;    // φ_0..φ_{T-1} [1,77,C]: uncond embedding of both prompts
};

struct EditOptions {
  int64_t steps = 50;
  double cfg_scale = 7.5;
  DDIMConfig ddim = DDIMConfig::null_text_inversion();
};

// Edits from z_T [1,4,h,w] with prompts [source, target]: batch [u, u, c_src, c_tgt], CFG, DDIM
// (η 0), then LocalBlend. `hook` (usually the controller, or SpecRef's hook around it) is set
// on the UNet for the loop; `store` gets end_step() after every UNet call. Returns [2,4,h,w].
torch::Tensor edit_latents(Pipeline& pipe, const std::string& source, const std::string& target,
                           const torch::Tensor& z_T, AttentionHook* hook, AttentionStore* store, LocalBlend* blend,
                           const ReconstructionPath& path, const EditOptions& options,
                           const StepCallback& on_step = {});

}  // namespace sine::p2p
