#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

// AUTOMATIC1111's prompt syntax, as its modules/prompt_parser.py and sd_hijack_clip.py define it:
//   (word) ×1.1, ((word)) ×1.21, (word:1.3) ×1.3, [word] ÷1.1, \( \) \[ \] literal brackets,
//   BREAK starts a new 75-token chunk, <lora:NAME:W> (and other <type:args>) extra networks.
// A prompt becomes chunks of 75 tokens (+ SOT/EOT = 77) with a weight per token; each chunk is
// encoded on its own, the hidden states multiplied by the weights and rescaled to the original
// mean (apply_emphasis), and the chunks concatenated along the token axis.
namespace sine {

// A run of text with its weight; the BREAK marker is {"BREAK", -1}.
struct WeightedText {
  std::string text;
  double weight = 1.0;
  bool operator==(const WeightedText& o) const { return text == o.text && weight == o.weight; }
};
// prompt_parser.parse_prompt_attention: unbalanced brackets close at the end, runs of equal
// weight are merged, an empty prompt is [{"", 1}].
std::vector<WeightedText> parse_prompt_attention(const std::string& text);

// The text alone (weights dropped, BREAK as a space): what a literal-prompt encoder is given until
// the weights reach the text encoding.
std::string plain_text(const std::vector<WeightedText>& parsed);

// <lora:NAME:TE[:UNET]>: text-encoder and UNet multipliers (UNet defaults to TE, TE to 1).
struct LoraReference {
  std::string name;
  double te_multiplier = 1.0, unet_multiplier = 1.0;
};
struct ExtraNetworks {
  std::string prompt;                   // the prompt with every <type:args> tag removed
  std::vector<LoraReference> loras;     // type "lora" (and "lyco", its old alias)
  std::vector<std::string> unsupported;  // tags of other types (hypernet, ...), as written
};
// Throws sine::Error naming the tag when a multiplier is not a number.
ExtraNetworks extract_extra_networks(const std::string& prompt);

// One 77-token window: SOT, 75 prompt tokens (EOT-padded), EOT; multipliers 1 on SOT/EOT/padding.
struct PromptChunk {
  std::vector<int64_t> tokens;
  std::vector<double> multipliers;
};
struct ChunkTokens {
  int64_t start = 49406, end = 49407, comma = 267;  // CLIP's <|startoftext|>, <|endoftext|>, ",</w>"
  int64_t chunk_length = 75;
  int64_t comma_padding_backtrack = 20;  // A1111's default option
};
// Text -> BPE ids without SOT/EOT and without truncation (ClipTokenizer::bpe_ids).
using BpeFunction = std::function<std::vector<int64_t>(const std::string&)>;
// sd_hijack_clip.tokenize_line: fills chunks of 75 tokens; when a chunk is full and a comma lies
// within the last `comma_padding_backtrack` tokens, the words after that comma move to the next
// chunk; BREAK closes the current chunk. At least one chunk.
std::vector<PromptChunk> chunk_prompt(const std::vector<WeightedText>& parsed, const BpeFunction& bpe,
                                      const ChunkTokens& ids = {});

// A1111's emphasis ("Original"): z [B, N, C] × multipliers [B, N], then scaled so that the mean
// of z is what it was before.
torch::Tensor apply_emphasis(const torch::Tensor& z, const torch::Tensor& multipliers);

}  // namespace sine
