#include "pipeline/prompt_syntax.h"

#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace sine {

namespace {

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// re.split(r"\s*\bBREAK\b\s*", text)
std::vector<std::string> split_on_break(const std::string& text) {
  std::vector<std::string> parts;
  size_t part_start = 0, i = 0;
  while ((i = text.find("BREAK", i)) != std::string::npos) {
    const size_t end = i + 5;
    const bool boundary_before = i == 0 || !is_word_char(text[i - 1]);
    const bool boundary_after = end == text.size() || !is_word_char(text[end]);
    if (!boundary_before || !boundary_after) {
      ++i;
      continue;
    }
    size_t cut = i;
    while (cut > part_start && is_space(text[cut - 1])) --cut;
    size_t next = end;
    while (next < text.size() && is_space(text[next])) ++next;
    parts.push_back(text.substr(part_start, cut - part_start));
    part_start = i = next;
  }
  parts.push_back(text.substr(part_start));
  return parts;
}

// Matches ":\s*([+-]?[.\d]+)\s*\)" at `i`; on success sets the weight and the match length.
bool match_weight_close(const std::string& s, size_t i, double& weight, size_t& length) {
  if (s[i] != ':') return false;
  size_t j = i + 1;
  while (j < s.size() && is_space(s[j])) ++j;
  const size_t number_start = j;
  if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
  const size_t digits_start = j;
  while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
  if (j == digits_start) return false;
  const std::string number = s.substr(number_start, j - number_start);
  while (j < s.size() && is_space(s[j])) ++j;
  if (j >= s.size() || s[j] != ')') return false;
  char* end = nullptr;
  weight = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size()) return false;  // "1.2.3": Python's float() would refuse it too
  length = j + 1 - i;
  return true;
}

double parse_multiplier(const std::string& text, const std::string& tag) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    throw Error("prompt: " + tag + ": '" + text + "' is not a number");
  return v;
}

}  // namespace

std::vector<WeightedText> parse_prompt_attention(const std::string& text) {
  std::vector<WeightedText> res;
  std::vector<size_t> round_brackets, square_brackets;
  const double round_multiplier = 1.1, square_multiplier = 1 / 1.1;
  auto multiply_range = [&](size_t start, double m) {
    for (size_t p = start; p < res.size(); ++p) res[p].weight *= m;
  };
  auto add_text = [&](const std::string& piece) {
    const auto parts = split_on_break(piece);
    for (size_t k = 0; k < parts.size(); ++k) {
      if (k > 0) res.push_back({"BREAK", -1});
      res.push_back({parts[k], 1.0});
    }
  };

  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    double weight = 0;
    size_t length = 0;
    if (c == '\\') {
      const bool escape = i + 1 < text.size() && std::string("()[]\\").find(text[i + 1]) != std::string::npos;
      res.push_back({escape ? std::string(1, text[i + 1]) : std::string(), 1.0});
      i += escape ? 2 : 1;
    } else if (c == '(') {
      round_brackets.push_back(res.size());
      ++i;
    } else if (c == '[') {
      square_brackets.push_back(res.size());
      ++i;
    } else if (match_weight_close(text, i, weight, length)) {
      if (!round_brackets.empty()) {
        multiply_range(round_brackets.back(), weight);
        round_brackets.pop_back();
      } else {
        add_text(text.substr(i, length));
      }
      i += length;
    } else if (c == ')' && !round_brackets.empty()) {
      multiply_range(round_brackets.back(), round_multiplier);
      round_brackets.pop_back();
      ++i;
    } else if (c == ']' && !square_brackets.empty()) {
      multiply_range(square_brackets.back(), square_multiplier);
      square_brackets.pop_back();
      ++i;
    } else if (c == ')' || c == ']' || c == ':') {
      add_text(std::string(1, c));
      ++i;
    } else {
      size_t j = i;
      while (j < text.size() && std::string("\\()[]:").find(text[j]) == std::string::npos) ++j;
      add_text(text.substr(i, j - i));
      i = j;
    }
  }
  for (size_t pos : round_brackets) multiply_range(pos, round_multiplier);
  for (size_t pos : square_brackets) multiply_range(pos, square_multiplier);
  if (res.empty()) res.push_back({"", 1.0});

  for (size_t k = 0; k + 1 < res.size();) {
    if (res[k].weight == res[k + 1].weight) {
      res[k].text += res[k + 1].text;
      res.erase(res.begin() + static_cast<std::ptrdiff_t>(k) + 1);
    } else {
      ++k;
    }
  }
  return res;
}

std::string plain_text(const std::vector<WeightedText>& parsed) {
  std::string out;
  for (const auto& piece : parsed) out += piece.weight == -1 && piece.text == "BREAK" ? " " : piece.text;
  return out;
}

ExtraNetworks extract_extra_networks(const std::string& prompt) {
  // re.sub(r"<(\w+):([^>]+)>", ...)
  ExtraNetworks out;
  size_t i = 0;
  while (i < prompt.size()) {
    if (prompt[i] == '<') {
      size_t j = i + 1;
      while (j < prompt.size() && is_word_char(prompt[j])) ++j;
      const size_t colon = j;
      if (j > i + 1 && j < prompt.size() && prompt[j] == ':') {
        size_t k = colon + 1;
        while (k < prompt.size() && prompt[k] != '>') ++k;
        if (k < prompt.size() && k > colon + 1) {
          const std::string tag = prompt.substr(i, k + 1 - i);
          const std::string type = prompt.substr(i + 1, colon - i - 1);
          std::vector<std::string> args;
          size_t a = colon + 1;
          while (true) {
            const size_t b = prompt.find(':', a);
            if (b == std::string::npos || b > k) {
              args.push_back(prompt.substr(a, k - a));
              break;
            }
            args.push_back(prompt.substr(a, b - a));
            a = b + 1;
          }
          if (type == "lora" || type == "lyco") {
            LoraReference ref;
            ref.name = args[0];
            if (args.size() > 1) ref.te_multiplier = parse_multiplier(args[1], tag);
            ref.unet_multiplier = args.size() > 2 ? parse_multiplier(args[2], tag) : ref.te_multiplier;
            out.loras.push_back(ref);
          } else {
            out.unsupported.push_back(tag);
          }
          i = k + 1;
          continue;
        }
      }
    }
    out.prompt += prompt[i++];
  }
  return out;
}

std::vector<PromptChunk> chunk_prompt(const std::vector<WeightedText>& parsed, const BpeFunction& bpe,
                                      const ChunkTokens& ids) {
  std::vector<PromptChunk> chunks;
  PromptChunk chunk;
  int64_t last_comma = -1;
  const auto length = static_cast<size_t>(ids.chunk_length);

  auto next_chunk = [&] {
    const size_t to_add = length > chunk.tokens.size() ? length - chunk.tokens.size() : 0;
    chunk.tokens.insert(chunk.tokens.end(), to_add, ids.end);
    chunk.multipliers.insert(chunk.multipliers.end(), to_add, 1.0);
    chunk.tokens.insert(chunk.tokens.begin(), ids.start);
    chunk.tokens.push_back(ids.end);
    chunk.multipliers.insert(chunk.multipliers.begin(), 1.0);
    chunk.multipliers.push_back(1.0);
    last_comma = -1;
    chunks.push_back(std::move(chunk));
    chunk = PromptChunk();
  };

  for (const auto& piece : parsed) {
    if (piece.text == "BREAK" && piece.weight == -1) {
      next_chunk();
      continue;
    }
    for (int64_t token : bpe(piece.text)) {
      if (token == ids.comma) {
        last_comma = static_cast<int64_t>(chunk.tokens.size());
      } else if (ids.comma_padding_backtrack != 0 && chunk.tokens.size() == length && last_comma != -1 &&
                 static_cast<int64_t>(chunk.tokens.size()) - last_comma <= ids.comma_padding_backtrack) {
        // The words after the last comma move to the next chunk.
        const auto cut = static_cast<std::ptrdiff_t>(last_comma + 1);
        std::vector<int64_t> moved_tokens(chunk.tokens.begin() + cut, chunk.tokens.end());
        std::vector<double> moved_multipliers(chunk.multipliers.begin() + cut, chunk.multipliers.end());
        chunk.tokens.resize(static_cast<size_t>(cut));
        chunk.multipliers.resize(static_cast<size_t>(cut));
        next_chunk();
        chunk.tokens = std::move(moved_tokens);
        chunk.multipliers = std::move(moved_multipliers);
      }
      if (chunk.tokens.size() == length) next_chunk();
      chunk.tokens.push_back(token);
      chunk.multipliers.push_back(piece.weight);
    }
  }
  if (!chunk.tokens.empty() || chunks.empty()) next_chunk();
  return chunks;
}

torch::Tensor apply_emphasis(const torch::Tensor& z, const torch::Tensor& multipliers) {
  const auto original_mean = z.mean();
  auto weighted = z * multipliers.to(z.device(), z.scalar_type()).unsqueeze(-1).expand(z.sizes());
  const auto new_mean = weighted.mean();
  return weighted * (original_mean / new_mean);
}

}  // namespace sine
