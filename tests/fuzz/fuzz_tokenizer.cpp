// libFuzzer: CLIP's text clean-up (ftfy, HTML unescape, whitespace) and BPE on arbitrary bytes,
// including invalid UTF-8; ids always lie in the vocabulary and SOT/EOT frame 77 tokens.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/clip_tokenizer.h"
#include "tokenizer/text_clean.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sine::ClipTokenizer tokenizer = sine::train_bpe(
      {"a red circle in the center on a white background", "photo of a sks dog", "a cat sitting on a car",
       "a purple striped heart at the top on a gray background, (masterpiece:1.2)"},
      300);
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    sine::clip_clean_text(text);
    auto ids = tokenizer.encode(text);
    if (ids.size() != 77 || ids.front() != tokenizer.sot_id()) std::abort();
    for (auto id : ids)
      if (id < 0 || id >= tokenizer.vocab_size()) std::abort();
    tokenizer.decode(ids);
    for (auto id : tokenizer.bpe_ids(text))
      if (id < 0 || id >= tokenizer.vocab_size()) std::abort();
  } catch (const sine::Error&) {
  }
  return 0;
}
