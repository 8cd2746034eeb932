#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sine {

// CLIP's byte-level BPE tokenizer (OpenAI simple_tokenizer.py, equivalently transformers'
// CLIPTokenizer), with Stable Diffusion's conventions for encode().
class ClipTokenizer {
 public:
  // OpenAI's bpe_simple_vocab_16e6.txt.gz: merge lines 1..48894 after the "#version" header;
  // vocab = 256 byte symbols, the same with "</w>", one per merge, <|startoftext|>, <|endoftext|>.
  static ClipTokenizer from_bpe_gz(const std::string& path);
  // The diffusers/transformers `tokenizer/` files.
  static ClipTokenizer from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt);
  // The same from the files' contents (e.g. kept in a model's metadata); `source` names them in errors.
  static ClipTokenizer from_strings(const std::string& vocab_json_text, const std::string& merges_txt_text,
                                    const std::string& source = "tokenizer metadata");
  // A folder (or its `tokenizer/` subfolder) holding vocab.json + merges.txt (+ added_tokens.json)
  // or bpe_simple_vocab_16e6.txt.gz.
  static ClipTokenizer from_dir(const std::string& dir);
  // The standard CLIP layout built from merges in rank order (what train_bpe produces).
  static ClipTokenizer from_merges(const std::vector<std::pair<std::string, std::string>>& merges);

  std::vector<int64_t> bpe_ids(const std::string& text) const;  // cleaned + BPE, no SOT/EOT, untruncated
  // SD convention: [SOT] + bpe[:context_length-2] + [EOT], padded to context_length with EOT.
  std::vector<int64_t> encode(const std::string& text, int64_t context_length = 77) const;
  torch::Tensor encode_batch(const std::vector<std::string>& texts, int64_t context_length = 77) const;  // I64 [B, L]
  // simple_tokenizer's decode: specials stay as text, every "</w>" becomes a space.
  std::string decode(const std::vector<int64_t>& ids) const;

  // Positions in encode(prompt) (SOT is 0) of the tokens of every occurrence of `word` (one or
  // more words, matched as whole pieces after cleaning); empty if it does not occur or lies past
  // the truncation.
  std::vector<int64_t> word_token_indices(const std::string& prompt, const std::string& word,
                                          int64_t context_length = 77) const;

  int64_t sot_id() const { return sot_id_; }
  int64_t eot_id() const { return eot_id_; }
  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }
  std::optional<int64_t> token_id(const std::string& token) const;  // e.g. "sks</w>"
  const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }

  // Registers `word` (cleaned like prompt text; no whitespace) as one new token matched as a
  // whole word before BPE, like transformers' added tokens; returns its id (the existing one if
  // it was added before).
  int64_t add_token(const std::string& word);
  // vocab.json + merges.txt (+ added_tokens.json when tokens were added), diffusers' format.
  void save_vocab_merges(const std::string& dir) const;
  // The contents of vocab.json and merges.txt (added tokens are not part of them).
  std::string vocab_json_text() const;
  std::string merges_txt_text() const;

 private:
  ClipTokenizer() = default;
  void set_merges(std::vector<std::pair<std::string, std::string>> merges);
  void find_specials(const std::string& source);
  static ClipTokenizer parse_vocab_merges(const std::string& vocab_text, const std::string& vocab_source,
                                          const std::string& merges_text, const std::string& merges_source);
  std::vector<std::string> bpe(const std::u32string& piece) const;
  // Each piece of the cleaned text with its token ids.
  std::vector<std::pair<std::u32string, std::vector<int64_t>>> tokenize_pieces(const std::string& text) const;

  std::unordered_map<std::string, int64_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<std::pair<std::string, std::string>> merges_;
  std::unordered_map<std::string, int64_t> merge_rank_;  // key: first + ' ' + second
  std::vector<std::u32string> added_tokens_;
  int64_t sot_id_ = -1;
  int64_t eot_id_ = -1;

  struct Cache;  // piece -> BPE symbols, shared by copies (it only depends on the merges)
  std::shared_ptr<Cache> cache_;
};

}  // namespace sine
