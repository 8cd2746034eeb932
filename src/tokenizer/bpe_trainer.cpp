#include "tokenizer/bpe_trainer.h"

#include <map>
#include <set>

#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/text_clean.h"
#include "tokenizer/unicode_text.h"

namespace sine {

ClipTokenizer train_bpe(const std::vector<std::string>& corpus, int64_t num_merges) {
  if (num_merges < 0) throw Error("train_bpe: the number of merges must be >= 0, got " + std::to_string(num_merges));
  static const std::u32string sot = U"<|startoftext|>", eot = U"<|endoftext|>";
  std::map<std::u32string, int64_t> piece_counts;
  for (const std::string& caption : corpus)
    for (const std::u32string& piece : split_clip_pieces(utf8_to_u32(clip_clean_text(caption))))
      if (piece != sot && piece != eot) ++piece_counts[piece];

  struct Word {
    std::vector<std::string> symbols;
    int64_t count;
  };
  std::vector<Word> words;
  for (const auto& [piece, count] : piece_counts) words.push_back({byte_level_symbols(piece), count});

  std::set<std::string> vocab;
  for (char32_t c : byte_unicode_vocab_order()) {
    vocab.insert(u32_to_utf8(std::u32string(1, c)));
    vocab.insert(u32_to_utf8(std::u32string(1, c)) + "</w>");
  }
  // A pair whose concatenation is already a token ("a"+"bc" after "ab"+"c") would give one
  // string two ids; such pairs are never merged.
  std::set<std::pair<std::string, std::string>> excluded;
  std::vector<std::pair<std::string, std::string>> merges;
  while (static_cast<int64_t>(merges.size()) < num_merges) {
    std::map<std::pair<std::string, std::string>, int64_t> pair_counts;
    for (const Word& w : words)
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) pair_counts[{w.symbols[i], w.symbols[i + 1]}] += w.count;
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_count = 0;
    for (const auto& [pair, count] : pair_counts)
      if (count > best_count && !excluded.count(pair)) {
        best = &pair;
        best_count = count;
      }
    if (!best) break;
    const auto [first, second] = *best;
    if (!vocab.insert(first + second).second) {
      excluded.insert({first, second});
      continue;
    }
    merges.emplace_back(first, second);
    for (Word& w : words) {
      std::vector<std::string> merged;
      for (size_t i = 0; i < w.symbols.size();) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == first && w.symbols[i + 1] == second) {
          merged.push_back(first + second);
          i += 2;
        } else {
          merged.push_back(w.symbols[i++]);
        }
      }
      w.symbols = std::move(merged);
    }
  }
  return ClipTokenizer::from_merges(merges);
}

}  // namespace sine
