#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/clip_tokenizer.h"

namespace sine {

// Learns up to `num_merges` BPE merges from a caption corpus with CLIP's own pre-tokenization
// (clean-up, split pattern, byte-level symbols, "</w>" on each word's last symbol): repeatedly
// the most frequent adjacent pair (ties broken by the smaller pair, so training is
// deterministic). The result has CLIP's layout (256 bytes, 256 bytes + "</w>", merges, then
// <|startoftext|> and <|endoftext|>), so the same tokenizer code and file formats serve it.
ClipTokenizer train_bpe(const std::vector<std::string>& corpus, int64_t num_merges);

}  // namespace sine
