#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "tokenizer/clip_tokenizer.h"

// Token bookkeeping of Prompt-to-Prompt (google/prompt-to-prompt ptp_utils.get_word_inds and
// seq_aligner.py), on the project's CLIP tokenizer. Positions count BOS as 0.
namespace sine::p2p {

constexpr int64_t kMaxWords = 77;

// get_word_inds: split `text` on spaces (SpecRef's variant first turns ',' and '.' into spaces);
// walk the decoded BPE tokens adding up their lengths, advancing the word pointer when the sum
// reaches the current word's length; return the token positions (+1 for BOS) of every word equal
// to `word`.
std::vector<int64_t> word_indices(const ClipTokenizer& tokenizer, const std::string& text, const std::string& word);
// The same for the word at position `word_place` of the space-split text.
std::vector<int64_t> word_indices_at(const ClipTokenizer& tokenizer, const std::string& text, int64_t word_place);

// seq_aligner.get_replacement_mapper_ (word swap): float [77, 77], M[i, j] = weight of source
// token i in target token j. Both prompts must have as many space-separated words (sine::Error).
torch::Tensor replacement_mapper(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target);

// seq_aligner.get_mapper (refine): Needleman-Wunsch (gap 0, match 1, mismatch -1; ties: left >
// up > diagonal) over the full token ids. mapper I64 [77]: for each target position the aligned
// source position, -1 where the target token is new; alphas float [77]: 0 there, 1 elsewhere.
struct RefineMapper {
  torch::Tensor mapper;
  torch::Tensor alphas;
};
RefineMapper refine_mapper(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target);

// Words that differ between two prompts of equal word count, as (source words, target words);
// both empty when the counts differ.
std::pair<std::vector<std::string>, std::vector<std::string>> differing_words(const std::string& source,
                                                                              const std::string& target);
// Python's text.split(" ").
std::vector<std::string> split_words(const std::string& text);

// The alignment itself, for tests: for every element of y, the aligned index into x or -1.
std::vector<int64_t> align_sequences(const std::vector<int64_t>& x, const std::vector<int64_t>& y);

}  // namespace sine::p2p
