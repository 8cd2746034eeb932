#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "methods/attention_layout.h"
#include "methods/p2p/attention_store.h"
#include "tokenizer/clip_tokenizer.h"

// Prompt-to-Prompt's LocalBlend (null-text notebook variant): after each DDIM step, keep the
// source latent outside the region the edited words attend to.
namespace sine::p2p {

struct LocalBlendConfig {
  std::vector<std::string> source_words, target_words;        // words of prompt 0 and prompt 1
  std::vector<std::string> source_substruct, target_substruct;  // optional words to cut out
  double threshold = 0.3;            // th[0] (pooled maps)
  double substruct_threshold = 0.3;  // th[1] (unpooled maps)
  double start = 0.2;                // blend when counter > int(start · steps)

  // The blend over `words` ("SOURCE_WORDS:TARGET_WORDS", comma-separated lists, e.g. "cat:dog") or,
  // when empty, over the words where the two prompts differ (prompts of equal length only); the
  // official notebook's LocalBlend(prompts, (("cat",), ("dog",))). Errors name "blend_words".
  static LocalBlendConfig for_prompts(const std::string& words, const std::string& source, const std::string& target,
                                      double threshold = 0.3, double start = 0.2);
};

class LocalBlend {
 public:
  LocalBlend(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target,
             const LocalBlendConfig& config, const EditLayerRules& rules, int64_t num_steps);

  // z ← z_0 + mask·(z − z_0) once counter > start; x [2,4,h,w].
  torch::Tensor operator()(const torch::Tensor& x, const AttentionStore& store);
  // The mask [2,1,h,w] (bool) for the store's current sums: m = Σ_words maps, mean over layers
  // (and heads), 3×3 max-pool, nearest upsample, / per-image max, > th, OR with image 0's mask.
  torch::Tensor mask(const AttentionStore& store, int64_t h, int64_t w) const;
  // Word weights [2, 77] (alpha_layers).
  const torch::Tensor& word_alpha() const { return alpha_; }
  const torch::Tensor& last_mask() const { return last_mask_; }
  int64_t counter() const { return counter_; }

 private:
  torch::Tensor maps(const AttentionStore& store) const;  // [2, L, hb, wb, 77]
  torch::Tensor get_mask(const torch::Tensor& maps, const torch::Tensor& alpha, bool pool, double th, int64_t h,
                         int64_t w) const;
  LocalBlendConfig config_;
  EditLayerRules rules_;
  torch::Tensor alpha_, substruct_alpha_;
  int64_t start_ = 0, counter_ = 0;
  torch::Tensor last_mask_;
};

}  // namespace sine::p2p
