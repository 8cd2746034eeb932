#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "methods/attention_layout.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/p2p/local_blend.h"
#include "methods/p2p/prompt_to_prompt.h"

// SpecRef (specp2p): edit a real image so that the edited object takes a reference image's
// appearance. Joint DDIM inversion of [source, reference] caches the reference's self-attention
// K, V; while editing with Prompt-to-Prompt, the target-cond branch of the decoder's
// high-resolution self-attention also attends to the reference foreground (M_s) and blends that
// in where the edited word attends (M_t): SR-attention.
namespace sine::specref {

enum class MaskMode { both, ms_only, mt_only, none };  // the paper's M_s and M_t: both (spec_mask_type 0), M_s only, M_t only, neither
MaskMode parse_mask_mode(const std::string& name);  // both, ms, mt, none
const char* mask_mode_name(MaskMode mode);

// The reference's projected K and V ([M, C], half precision) per (editing step, self layer).
class ReferenceKV {
 public:
  void put(int64_t step, int layer, const torch::Tensor& k, const torch::Tensor& v);
  bool has(int64_t step, int layer) const { return kv_.count({step, layer}) != 0; }
  const std::pair<torch::Tensor, torch::Tensor>& get(int64_t step, int layer) const;
  int64_t bytes() const;
  size_t entries() const { return kv_.size(); }

 private:
  std::map<std::pair<int64_t, int>, std::pair<torch::Tensor, torch::Tensor>> kv_;
};

// Records the reference's K/V (batch element `ref_index`) during the joint inversion, only for
// the SR layers and the steps where SR-attention will read them: inversion step i serves editing
// step s = steps − 1 − i (same timestep).
class KVRecorder : public AttentionHook {
 public:
  KVRecorder(ReferenceKV& cache, std::vector<int> layers, int64_t steps, int64_t sr_start, int64_t sr_end,
             int64_t ref_index = 1)
      : cache_(cache), layers_(std::move(layers)), steps_(steps), sr_start_(sr_start), sr_end_(sr_end),
        ref_index_(ref_index) {}
  void on_qkv(const AttentionSite& site, torch::Tensor& q, torch::Tensor& k, torch::Tensor& v) override;

 private:
  ReferenceKV& cache_;
  std::vector<int> layers_;
  int64_t steps_, sr_start_, sr_end_, ref_index_;
};

// Bytes the reference K/V cache needs for a UNet at a latent size (SR layers x SR steps, K and V,
// `bytes_per_value` each: 2 for fp16), from the config alone.
int64_t planned_cache_bytes(const UNetConfig& unet, int64_t latent_h, int64_t latent_w, int64_t sr_start,
                            int64_t sr_end, int64_t bytes_per_value = 2);

// M_s,l: the pixel mask [H,W] resized to h×w (nearest, or bilinear) and binarised (≥ thres).
torch::Tensor layer_mask(const torch::Tensor& mask_hw, int64_t h, int64_t w, double threshold, bool bilinear);
// M_t at step s from the running sum of the target-cond cross-attention maps [N, 77] over `count`
// calls: Σ over word tokens of the mean, min-max normalised over the map (constant map: zeros),
// [hb, wb] in [0,1].
torch::Tensor target_map(const torch::Tensor& sum, int64_t count, const std::vector<int64_t>& word_tokens,
                         int64_t hb, int64_t wb);

// SR-attention for one head-merged batch: O_ref = softmax(q_t K_ref^T·scale + B) V_ref with
// B = 1 on M_s (float32 min elsewhere), per head; returns [N, C].
torch::Tensor reference_attention(const torch::Tensor& q_t, const torch::Tensor& k_ref, const torch::Tensor& v_ref,
                                  const torch::Tensor& ms_flat, int64_t heads);

struct SRConfig {
  int64_t sr_start = 4, sr_end = 50;  // editing steps [start, end)
  double threshold = 0.5;             // thres for M_s and M_t
  bool bilinear = false;              // polatemode (official default: nearest)
  MaskMode mask_mode = MaskMode::both;
  int64_t target_index = 3;           // batch element edited (target cond)
};

// The editing-path hook: P2P controller for every site, plus SR-attention on the SR layers and
// steps (where the controller is bypassed, as in the official code). Collects M_t from the
// post-edit cross-attention at the blend layers.
class SRAttention : public AttentionHook {
 public:
  SRAttention(p2p::Controller* controller, const ReferenceKV* cache, const EditLayerRules& rules,
              const SRConfig& config, std::vector<int64_t> target_word_tokens, torch::Tensor ms_pixels);

  bool needs_probs(const AttentionSite& site) override;
  torch::Tensor on_probs(const AttentionSite& site, torch::Tensor probs) override;
  torch::Tensor on_output(const AttentionSite& site, torch::Tensor out, const torch::Tensor& q,
                          const torch::Tensor& k, const torch::Tensor& v) override;

  bool is_sr_site(const AttentionSite& site) const;
  // M_t as it stands ([hb, wb] normalised map; undefined before any map).
  torch::Tensor current_target_map() const;
  // The last binarised M_t and M_s used ([h, w] at the highest SR resolution).
  torch::Tensor last_mt, last_ms;
  int64_t sr_calls = 0;

 private:
  p2p::Controller* controller_;
  const ReferenceKV* cache_;
  EditLayerRules rules_;
  SRConfig config_;
  std::vector<int64_t> words_;
  torch::Tensor ms_pixels_;  // [H,W] float or undefined (= ones)
  torch::Tensor mt_sum_;     // [N, 77]
  int64_t mt_count_ = 0;
};

struct SpecRefConfig {
  int64_t steps = 50;
  double cfg_scale = 7.5;
  double inversion_guidance = 1.0;
  SRConfig sr;
  p2p::ControllerConfig p2p;            // Replace, cross 0.8, self 0.6
  bool local_blend = true;
  p2p::LocalBlendConfig blend;          // th 0.3, start 0.2
  DDIMConfig ddim = DDIMConfig::specref();
};

struct SpecRefInputs {
  torch::Tensor source;      // uint8 [H,W,3] at the model's size
  torch::Tensor reference;   // uint8 [H,W,3]
  torch::Tensor ms_pixels;   // float [H,W] in [0,1]; undefined: derive from the reference's cross-attention
  std::string source_prompt, target_prompt;
  std::vector<std::string> edit_words;  // target words (M_t and LocalBlend)
  std::string reference_prompt;         // for deriving M_s (default: the target prompt)
};

struct SpecRefResult {
  torch::Tensor source_recon, result;  // uint8 [H,W,3]
  torch::Tensor ms_pixels;             // [H,W] float used as M_s (given or derived)
  bool ms_derived = false;
  torch::Tensor mt, ms_layer, blend_mask;  // float [H',W'] masks of the last step (may be undefined)
  int64_t cache_bytes = 0, cache_entries = 0;
  double invert_seconds = 0, edit_seconds = 0;
};

// Derives M_s [H,W] in [0,1] from the reference's own cross-attention to `words` in `prompt`:
// the blend-layer maps of UNet(z_ref[i], t_i, prompt) summed over steps, min-max normalised,
// upsampled bilinearly to the image size.
torch::Tensor derive_reference_mask(Pipeline& pipe, const std::vector<torch::Tensor>& ref_latents,
                                    const std::string& prompt, const std::vector<std::string>& words,
                                    const EditLayerRules& rules, const DDIMConfig& ddim, int64_t steps,
                                    int64_t image_h, int64_t image_w);

// Stage A: joint DDIM inversion of [source, reference] with prompts [source, ""] at guidance 1,
// caching the reference's K/V (fp16) for the SR layers and steps only.
struct JointInversion {
  std::vector<torch::Tensor> source_latents, reference_latents;  // z_0..z_T, each [1,4,h,w]
  ReferenceKV cache;
  EditLayerRules rules;
  double seconds = 0;
};
// `on_step` (optional) hears each step of each stage, and may throw to cancel.
JointInversion invert_jointly(Pipeline& pipe, const SpecRefInputs& inputs, const SpecRefConfig& config,
                              bool progress = true, const StepCallback& on_step = {});

// Stage B (M_s derived here when inputs.ms_pixels is undefined and the mode uses it).
SpecRefResult edit_with_reference(Pipeline& pipe, const JointInversion& inversion, const SpecRefInputs& inputs,
                                  const SpecRefConfig& config, bool progress = true, const StepCallback& on_step = {});

// Both stages.
SpecRefResult run_specref(Pipeline& pipe, const SpecRefInputs& inputs, const SpecRefConfig& config,
                          bool progress = true, const StepCallback& on_step = {});

// One SpecRef edit's options as a user gives them (the CLI's flags, the server's fields): the same
// names as P2PEditConfig's for the Prompt-to-Prompt controller and LocalBlend.
struct SpecRefOptions {
  int64_t steps = 50;
  double cfg_scale = 7.5;
  int64_t sr_start = 4, sr_end = 0;  // SR-attention steps [sr_start, sr_end); sr_end 0: every step to the end
  double threshold = 0.5;            // M_s / M_t (>=)
  bool bilinear = false;             // mask resizing (official: nearest)
  std::string masks = "both";        // both, ms, mt, none
  std::string edit = "auto";         // replace, refine, auto
  double cross_replace = 0.8, self_replace = 0.6;
  bool local_blend = true;
  std::string blend_words;  // "SOURCE:TARGET" (empty: the words that differ)
  double blend_threshold = 0.3, blend_start = 0.2;

  // The method's config for `inputs` (prompts, edit words); errors name the field ("sr_end: ...",
  // "edit_words: 'x' is not a word of the target prompt ...").
  SpecRefConfig config(const ClipTokenizer& tokenizer, const SpecRefInputs& inputs) const;
};

}  // namespace sine::specref
