#include "tokenizer/clip_tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/text_clean.h"
#include "tokenizer/unicode_text.h"

namespace sine {
namespace fs = std::filesystem;

namespace {

const char* const kSot = "<|startoftext|>";
const char* const kEot = "<|endoftext|>";
// OpenAI's file holds far more merge lines than CLIP was trained with; simple_tokenizer.py and
// transformers both use the first 49152 - 256 - 2 = 48894.
constexpr size_t kClipMerges = 49152 - 256 - 2;

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open " + what);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string read_gzip_file(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) throw Error(path + ": cannot open the CLIP BPE vocabulary");
  std::string data;
  char buf[1 << 16];
  int n;
  while ((n = gzread(file, buf, sizeof(buf))) > 0) data.append(buf, n);
  int err = 0;
  std::string message = n < 0 ? gzerror(file, &err) : "";
  gzclose(file);
  if (n < 0) throw Error(path + ": corrupt gzip data (" + message + ")");
  return data;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream ss(text);
  for (std::string line; std::getline(ss, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// Merge lines after the header line, at most kClipMerges of them. Both readers skip the first
// line unseen; OpenAI's reads '"bpe_simple_vocab_16e6.txt#version: 0.2', transformers' '#version: 0.2'.
std::vector<std::pair<std::string, std::string>> parse_merges(const std::string& text, const std::string& path) {
  std::vector<std::string> lines = split_lines(text);
  if (lines.empty() || lines[0].find("#version") == std::string::npos)
    throw Error(path + ": not a BPE merges file (the first line should be a '#version' header)");
  std::vector<std::pair<std::string, std::string>> merges;
  for (size_t i = 1; i < lines.size() && merges.size() < kClipMerges; ++i) {
    if (lines[i].empty()) continue;
    std::istringstream ls(lines[i]);
    std::string first, second, extra;
    if (!(ls >> first >> second) || (ls >> extra))
      throw Error(path + ": line " + std::to_string(i + 1) + " is not a merge of two symbols: '" + lines[i] + "'");
    merges.emplace_back(first, second);
  }
  return merges;
}

}  // namespace

struct ClipTokenizer::Cache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<std::string>> symbols;
};

void ClipTokenizer::set_merges(std::vector<std::pair<std::string, std::string>> merges) {
  merges_ = std::move(merges);
  merge_rank_.clear();
  for (size_t r = 0; r < merges_.size(); ++r) merge_rank_[merges_[r].first + ' ' + merges_[r].second] = r;
  cache_ = std::make_shared<Cache>();
}

void ClipTokenizer::find_specials(const std::string& source) {
  auto sot = token_to_id_.find(kSot), eot = token_to_id_.find(kEot);
  if (sot == token_to_id_.end() || eot == token_to_id_.end())
    throw Error(source + ": the vocabulary lacks " + std::string(sot == token_to_id_.end() ? kSot : kEot));
  sot_id_ = sot->second;
  eot_id_ = eot->second;
}

ClipTokenizer ClipTokenizer::from_merges(const std::vector<std::pair<std::string, std::string>>& merges) {
  ClipTokenizer tok;
  for (char32_t c : byte_unicode_vocab_order()) tok.id_to_token_.push_back(u32_to_utf8(std::u32string(1, c)));
  for (char32_t c : byte_unicode_vocab_order()) tok.id_to_token_.push_back(u32_to_utf8(std::u32string(1, c)) + "</w>");
  for (const auto& [a, b] : merges) tok.id_to_token_.push_back(a + b);
  tok.id_to_token_.push_back(kSot);
  tok.id_to_token_.push_back(kEot);
  // Like simple_tokenizer's dict(zip(vocab, ids)): a string listed twice keeps its last id.
  for (size_t id = 0; id < tok.id_to_token_.size(); ++id) tok.token_to_id_[tok.id_to_token_[id]] = id;
  tok.set_merges(merges);
  tok.find_specials("BPE merges");
  return tok;
}

ClipTokenizer ClipTokenizer::from_bpe_gz(const std::string& path) {
  auto merges = parse_merges(read_gzip_file(path), path);
  if (merges.empty()) throw Error(path + ": holds no BPE merges");
  return from_merges(merges);
}

ClipTokenizer ClipTokenizer::parse_vocab_merges(const std::string& vocab_text, const std::string& vocab_json,
                                                const std::string& merges_text, const std::string& merges_txt) {
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(vocab_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(vocab_json + ": not valid JSON (" + e.what() + ")");
  }
  if (!vocab.is_object() || vocab.empty())
    throw Error(vocab_json + ": expected a JSON object mapping tokens to ids");
  ClipTokenizer tok;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      throw Error(vocab_json + ": the id of token '" + it.key() + "' is not a non-negative integer");
    int64_t id = it.value().get<int64_t>();
    if (id >= static_cast<int64_t>(tok.id_to_token_.size())) tok.id_to_token_.resize(id + 1);
    if (!tok.id_to_token_[id].empty())
      throw Error(vocab_json + ": id " + std::to_string(id) + " is given to both '" + tok.id_to_token_[id] +
                  "' and '" + it.key() + "'");
    tok.id_to_token_[id] = it.key();
    tok.token_to_id_[it.key()] = id;
  }
  auto merges = parse_merges(merges_text, merges_txt);
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string merged = merges[i].first + merges[i].second;
    if (!tok.token_to_id_.count(merged))
      throw Error(merges_txt + ": merge " + std::to_string(i + 1) + " makes '" + merged + "', which " +
                  vocab_json + " lacks");
  }
  tok.set_merges(std::move(merges));
  tok.find_specials(vocab_json);
  return tok;
}

ClipTokenizer ClipTokenizer::from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt) {
  return parse_vocab_merges(read_text_file(vocab_json, "the tokenizer vocabulary"), vocab_json,
                            read_text_file(merges_txt, "the BPE merges"), merges_txt);
}

ClipTokenizer ClipTokenizer::from_strings(const std::string& vocab_json_text, const std::string& merges_txt_text,
                                          const std::string& source) {
  return parse_vocab_merges(vocab_json_text, source + " (vocab.json)", merges_txt_text, source + " (merges.txt)");
}

ClipTokenizer ClipTokenizer::from_dir(const std::string& dir) {
  for (const fs::path& base : {fs::path(dir), fs::path(dir) / "tokenizer"}) {
    if (fs::exists(base / "vocab.json") && fs::exists(base / "merges.txt")) {
      ClipTokenizer tok = from_vocab_merges((base / "vocab.json").string(), (base / "merges.txt").string());
      const fs::path added = base / "added_tokens.json";
      if (fs::exists(added)) {
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(read_text_file(added.string(), "the added tokens"));
        } catch (const nlohmann::json::exception& e) {
          throw Error(added.string() + ": not valid JSON (" + e.what() + ")");
        }
        std::vector<std::pair<int64_t, std::string>> by_id;
        for (auto it = j.begin(); j.is_object() && it != j.end(); ++it)
          if (it.value().is_number_integer()) by_id.emplace_back(it.value().get<int64_t>(), it.key());
        if (!j.is_object() || by_id.size() != j.size())
          throw Error(added.string() + ": expected a JSON object mapping tokens to integer ids");
        std::sort(by_id.begin(), by_id.end());
        for (const auto& [id, word] : by_id) {
          if (id != tok.vocab_size())
            throw Error(added.string() + ": token '" + word + "' has id " + std::to_string(id) + ", expected " +
                        std::to_string(tok.vocab_size()) + " (added tokens follow the vocabulary)");
          tok.add_token(word);
        }
      }
      return tok;
    }
    if (fs::exists(base / "bpe_simple_vocab_16e6.txt.gz"))
      return from_bpe_gz((base / "bpe_simple_vocab_16e6.txt.gz").string());
  }
  throw Error(dir + ": no tokenizer files (expected vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz)");
}

std::vector<std::string> ClipTokenizer::bpe(const std::u32string& piece) const {
  const std::string key = u32_to_utf8(piece);
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->symbols.find(key);
    if (it != cache_->symbols.end()) return it->second;
  }
  std::vector<std::string> word = byte_level_symbols(piece);
  while (word.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merge_rank_.find(word[i] + ' ' + word[i + 1]);
      if (it != merge_rank_.end() && it->second < best) {
        best = it->second;
        best_at = i;
      }
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    const std::string first = word[best_at], second = word[best_at + 1];
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word = std::move(merged);
  }
  std::lock_guard<std::mutex> lock(cache_->mutex);
  cache_->symbols.emplace(key, word);
  return word;
}

std::vector<std::pair<std::u32string, std::vector<int64_t>>> ClipTokenizer::tokenize_pieces(
    const std::string& text) const {
  static const std::u32string sot = utf8_to_u32(kSot), eot = utf8_to_u32(kEot);
  std::vector<std::pair<std::u32string, std::vector<int64_t>>> out;
  for (std::u32string& piece : split_clip_pieces(utf8_to_u32(clip_clean_text(text)), added_tokens_)) {
    std::vector<int64_t> ids;
    auto added = std::find(added_tokens_.begin(), added_tokens_.end(), piece);
    if (added != added_tokens_.end()) {
      ids.push_back(vocab_size() - static_cast<int64_t>(added_tokens_.size()) + (added - added_tokens_.begin()));
    } else if (piece == sot || piece == eot) {
      ids.push_back(piece == sot ? sot_id_ : eot_id_);
    } else {
      for (const std::string& symbol : bpe(piece)) {
        auto it = token_to_id_.find(symbol);
        if (it == token_to_id_.end())
          throw Error("tokenizer: BPE symbol '" + symbol + "' of '" + u32_to_utf8(piece) + "' is not in the vocabulary");
        ids.push_back(it->second);
      }
    }
    out.emplace_back(std::move(piece), std::move(ids));
  }
  return out;
}

std::vector<int64_t> ClipTokenizer::bpe_ids(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& [piece, piece_ids] : tokenize_pieces(text)) ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text, int64_t context_length) const {
  if (context_length < 2) throw Error("tokenizer: context length must be at least 2, got " + std::to_string(context_length));
  std::vector<int64_t> bpe = bpe_ids(text);
  std::vector<int64_t> ids{sot_id_};
  ids.insert(ids.end(), bpe.begin(), bpe.begin() + std::min<int64_t>(bpe.size(), context_length - 2));
  ids.resize(context_length, eot_id_);
  return ids;
}

torch::Tensor ClipTokenizer::encode_batch(const std::vector<std::string>& texts, int64_t context_length) const {
  torch::Tensor out = torch::empty({static_cast<int64_t>(texts.size()), context_length}, torch::kLong);
  for (size_t b = 0; b < texts.size(); ++b) {
    std::vector<int64_t> ids = encode(texts[b], context_length);
    std::copy(ids.begin(), ids.end(), out[b].data_ptr<int64_t>());
  }
  return out;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  const int64_t first_added = vocab_size() - static_cast<int64_t>(added_tokens_.size());
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size())
      throw Error("tokenizer: token id " + std::to_string(id) + " is outside the vocabulary (size " +
                  std::to_string(vocab_size()) + ")");
    if (id >= first_added) {
      bytes += u32_to_utf8(added_tokens_[id - first_added]) + "</w>";
      continue;
    }
    for (char32_t c : utf8_to_u32(id_to_token_[id])) {
      int b = unicode_to_byte(c);
      if (b >= 0) bytes.push_back(static_cast<char>(b));
      else append_utf8(bytes, c);
    }
  }
  std::string text = u32_to_utf8(utf8_to_u32(bytes));
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "</w>") == 0) {
      out.push_back(' ');
      i += 4;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

std::vector<int64_t> ClipTokenizer::word_token_indices(const std::string& prompt, const std::string& word,
                                                       int64_t context_length) const {
  const auto pieces = tokenize_pieces(prompt);
  std::vector<std::u32string> target = split_clip_pieces(utf8_to_u32(clip_clean_text(word)), added_tokens_);
  std::vector<int64_t> indices;
  if (target.empty()) return indices;
  std::vector<int64_t> first_position(pieces.size() + 1, 1);  // SOT is position 0
  for (size_t p = 0; p < pieces.size(); ++p)
    first_position[p + 1] = first_position[p] + static_cast<int64_t>(pieces[p].second.size());
  for (size_t p = 0; p + target.size() <= pieces.size(); ++p) {
    bool match = true;
    for (size_t k = 0; k < target.size() && match; ++k) match = pieces[p + k].first == target[k];
    if (!match) continue;
    for (int64_t pos = first_position[p]; pos < first_position[p + target.size()]; ++pos)
      if (pos < context_length - 1) indices.push_back(pos);
  }
  return indices;
}

std::optional<int64_t> ClipTokenizer::token_id(const std::string& token) const {
  // Added tokens first, as in transformers: "*" added as a word shadows the byte symbol "*".
  auto added = std::find(added_tokens_.begin(), added_tokens_.end(), utf8_to_u32(token));
  if (added != added_tokens_.end())
    return vocab_size() - static_cast<int64_t>(added_tokens_.size()) + (added - added_tokens_.begin());
  auto it = token_to_id_.find(token);
  if (it != token_to_id_.end()) return it->second;
  return std::nullopt;
}

int64_t ClipTokenizer::add_token(const std::string& word) {
  const std::u32string cleaned = utf8_to_u32(clip_clean_text(word));
  if (cleaned.empty() || std::any_of(cleaned.begin(), cleaned.end(), is_python_space))
    throw Error("tokenizer: cannot add token '" + word + "': it must be one non-empty word without spaces");
  auto existing = std::find(added_tokens_.begin(), added_tokens_.end(), cleaned);
  if (existing != added_tokens_.end())
    return vocab_size() - static_cast<int64_t>(added_tokens_.size()) + (existing - added_tokens_.begin());
  added_tokens_.push_back(cleaned);
  id_to_token_.push_back(u32_to_utf8(cleaned));
  return vocab_size() - 1;
}

void ClipTokenizer::save_vocab_merges(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the tokenizer folder (" + ec.message() + ")");
  const int64_t base_size = vocab_size() - static_cast<int64_t>(added_tokens_.size());
  auto write_text = [](const std::string& path, const std::string& text) {
    write_atomically(path, [&](const std::string& tmp) {
      std::ofstream out(tmp, std::ios::binary);
      out << text;
      if (!out.flush()) throw Error(path + ": cannot write");
    });
  };
  write_text((fs::path(dir) / "vocab.json").string(), vocab_json_text());
  write_text((fs::path(dir) / "merges.txt").string(), merges_txt_text());
  const fs::path added_path = fs::path(dir) / "added_tokens.json";
  if (!added_tokens_.empty()) {
    nlohmann::ordered_json added = nlohmann::ordered_json::object();
    for (size_t i = 0; i < added_tokens_.size(); ++i) added[u32_to_utf8(added_tokens_[i])] = base_size + int64_t(i);
    write_text(added_path.string(), added.dump());
  } else {
    fs::remove(added_path, ec);
  }
}

std::string ClipTokenizer::vocab_json_text() const {
  const int64_t base_size = vocab_size() - static_cast<int64_t>(added_tokens_.size());
  // Written by hand in id order (nlohmann's ordered_json inserts in linear time per key).
  std::string text = "{";
  for (int64_t id = 0; id < base_size; ++id) {
    // A string listed twice in the layout keeps only the id that encoding uses.
    auto it = token_to_id_.find(id_to_token_[id]);
    if (it == token_to_id_.end() || it->second != id) continue;
    if (text.size() > 1) text += ", ";
    text += nlohmann::json(id_to_token_[id]).dump() + ": " + std::to_string(id);
  }
  return text + "}";
}

std::string ClipTokenizer::merges_txt_text() const {
  std::string text = "#version: 0.2\n";
  for (const auto& [a, b] : merges_) text += a + ' ' + b + '\n';
  return text;
}

}  // namespace sine
