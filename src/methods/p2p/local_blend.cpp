#include "methods/p2p/local_blend.h"

#include <algorithm>

#include "core/error.h"
#include "methods/p2p/word_alignment.h"

namespace sine::p2p {

namespace {

std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

torch::Tensor word_weights(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target,
                           const std::vector<std::string>& source_words, const std::vector<std::string>& target_words,
                           const char* what) {
  auto alpha = torch::zeros({2, kMaxWords});
  const std::string prompts[2] = {source, target};
  const std::vector<std::string>* words[2] = {&source_words, &target_words};
  for (int p = 0; p < 2; ++p)
    for (const auto& word : *words[p]) {
      auto inds = word_indices(tokenizer, prompts[p], word);
      if (inds.empty()) throw Error(std::string(what) + ": word '" + word + "' is not in the prompt '" + prompts[p] + "'");
      for (int64_t i : inds)
        if (i < kMaxWords) alpha[p][i] = 1.0f;
    }
  return alpha;
}

}  // namespace

LocalBlend::LocalBlend(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target,
                       const LocalBlendConfig& config, const EditLayerRules& rules, int64_t num_steps)
    : config_(config), rules_(rules) {
  alpha_ = word_weights(tokenizer, source, target, config.source_words, config.target_words, "blend_words");
  if (!config.source_substruct.empty() || !config.target_substruct.empty())
    substruct_alpha_ = word_weights(tokenizer, source, target, config.source_substruct, config.target_substruct,
                                    "blend_substruct");
  start_ = static_cast<int64_t>(config.start * static_cast<double>(num_steps));
}

torch::Tensor LocalBlend::maps(const AttentionStore& store) const {
  std::vector<torch::Tensor> parts;
  for (int layer : rules_.blend_layers) {
    auto s = store.sum(true, layer);
    if (!s.defined()) throw Error("local blend: no stored cross-attention for layer " + std::to_string(layer));
    parts.push_back(s.reshape({s.size(0), 1, rules_.blend_h, rules_.blend_w, s.size(-1)}));
  }
  return torch::cat(parts, 1);
}

torch::Tensor LocalBlend::get_mask(const torch::Tensor& maps, const torch::Tensor& alpha, bool pool, double th,
                                   int64_t h, int64_t w) const {
  namespace F = torch::nn::functional;
  auto m = (maps * alpha.to(maps.options()).view({2, 1, 1, 1, -1})).sum(-1).mean(1).unsqueeze(1);  // [2,1,hb,wb]
  if (pool) m = F::max_pool2d(m, F::MaxPool2dFuncOptions(3).stride(1).padding(1));
  m = F::interpolate(m, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest));
  m = m / std::get<0>(std::get<0>(m.max(2, true)).max(3, true));
  auto mask = m.gt(th);
  return mask.logical_or(mask.narrow(0, 0, 1));
}

torch::Tensor LocalBlend::mask(const AttentionStore& store, int64_t h, int64_t w) const {
  auto all = maps(store);
  auto mask = get_mask(all, alpha_, true, config_.threshold, h, w);
  if (substruct_alpha_.defined())
    mask = mask.logical_and(get_mask(all, substruct_alpha_, false, config_.substruct_threshold, h, w).logical_not());
  return mask;
}

torch::Tensor LocalBlend::operator()(const torch::Tensor& x, const AttentionStore& store) {
  ++counter_;
  if (counter_ <= start_) return x;
  last_mask_ = mask(store, x.size(2), x.size(3));
  auto m = last_mask_.to(x.options());
  auto x0 = x.narrow(0, 0, 1);
  return x0 + m * (x - x0);
}

LocalBlendConfig LocalBlendConfig::for_prompts(const std::string& words, const std::string& source,
                                               const std::string& target, double threshold, double start) {
  LocalBlendConfig c;
  c.threshold = c.substruct_threshold = threshold;
  c.start = start;
  if (!words.empty()) {
    const auto colon = words.find(':');
    if (colon == std::string::npos) throw Error("blend_words: expected SOURCE_WORDS:TARGET_WORDS (e.g. cat:dog)");
    c.source_words = comma_list(words.substr(0, colon));
    c.target_words = comma_list(words.substr(colon + 1));
  } else {
    auto [a, b] = differing_words(source, target);
    if (a.empty()) throw Error("blend_words: the prompts differ in length; name the words as SOURCE:TARGET");
    c.source_words = a;
    c.target_words = b;
  }
  return c;
}

}  // namespace sine::p2p
