#include "methods/p2p/word_alignment.h"

#include <algorithm>

#include "core/error.h"

namespace sine::p2p {

namespace {

std::vector<std::string> split_spaces(const std::string& text) {
  // Python's str.split(" "): consecutive spaces give empty words.
  std::vector<std::string> words;
  std::string cur;
  for (char c : text) {
    if (c == ' ') {
      words.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  words.push_back(cur);
  return words;
}

std::string specref_clean(std::string text) {
  for (char& c : text)
    if (c == ',' || c == '.') c = ' ';
  return text;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\n"), b = s.find_last_not_of(" \t\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

std::vector<int64_t> indices_of_places(const ClipTokenizer& tokenizer, const std::string& text,
                                       const std::vector<int64_t>& places) {
  std::vector<int64_t> out;
  if (places.empty()) return out;
  const auto words = split_spaces(text);
  const auto ids = tokenizer.bpe_ids(text);
  size_t cur_len = 0, ptr = 0;
  for (size_t i = 0; i < ids.size() && ptr < words.size(); ++i) {
    std::string piece = trim(tokenizer.decode({ids[i]}));
    piece.erase(std::remove(piece.begin(), piece.end(), '#'), piece.end());
    cur_len += piece.size();
    if (std::find(places.begin(), places.end(), static_cast<int64_t>(ptr)) != places.end())
      out.push_back(static_cast<int64_t>(i) + 1);
    if (cur_len >= words[ptr].size()) {
      ++ptr;
      cur_len = 0;
    }
  }
  return out;
}

}  // namespace

std::vector<int64_t> word_indices(const ClipTokenizer& tokenizer, const std::string& text, const std::string& word) {
  const std::string clean = specref_clean(text);
  const auto words = split_spaces(clean);
  std::vector<int64_t> places;
  for (size_t i = 0; i < words.size(); ++i)
    if (words[i] == word) places.push_back(static_cast<int64_t>(i));
  return indices_of_places(tokenizer, clean, places);
}

std::vector<int64_t> word_indices_at(const ClipTokenizer& tokenizer, const std::string& text, int64_t word_place) {
  return indices_of_places(tokenizer, specref_clean(text), {word_place});
}

torch::Tensor replacement_mapper(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target) {
  const auto wx = split_spaces(source), wy = split_spaces(target);
  if (wx.size() != wy.size())
    throw Error("word swap needs prompts with the same number of words ('" + source + "' has " +
                std::to_string(wx.size()) + ", '" + target + "' has " + std::to_string(wy.size()) +
                "); use refine instead");
  std::vector<std::vector<int64_t>> src_inds, tgt_inds;
  for (size_t i = 0; i < wy.size(); ++i)
    if (wx[i] != wy[i]) {
      src_inds.push_back(word_indices_at(tokenizer, source, static_cast<int64_t>(i)));
      tgt_inds.push_back(word_indices_at(tokenizer, target, static_cast<int64_t>(i)));
      if (src_inds.back().empty() || tgt_inds.back().empty())
        throw Error("word swap: word " + std::to_string(i) + " of the prompts has no tokens");
    }
  auto mapper = torch::zeros({kMaxWords, kMaxWords});
  auto m = mapper.accessor<float, 2>();
  int64_t i = 0, j = 0;
  size_t cur = 0;
  while (i < kMaxWords && j < kMaxWords) {
    if (cur < src_inds.size() && src_inds[cur][0] == i) {
      const auto& s = src_inds[cur];
      const auto& t = tgt_inds[cur];
      if (s.size() == t.size()) {
        for (size_t k = 0; k < s.size(); ++k)
          if (s[k] < kMaxWords && t[k] < kMaxWords) m[s[k]][t[k]] = 1;
      } else {
        const float ratio = 1.0f / static_cast<float>(t.size());
        for (int64_t it : t)
          for (int64_t is : s)
            if (is < kMaxWords && it < kMaxWords) m[is][it] = ratio;
      }
      ++cur;
      i += static_cast<int64_t>(s.size());
      j += static_cast<int64_t>(t.size());
    } else if (cur < src_inds.size()) {
      m[i][j] = 1;
      ++i;
      ++j;
    } else {
      m[j][j] = 1;
      ++i;
      ++j;
    }
  }
  return mapper;
}

std::vector<std::string> split_words(const std::string& text) { return split_spaces(text); }

std::pair<std::vector<std::string>, std::vector<std::string>> differing_words(const std::string& source,
                                                                              const std::string& target) {
  const auto a = split_spaces(specref_clean(source)), b = split_spaces(specref_clean(target));
  std::pair<std::vector<std::string>, std::vector<std::string>> out;
  if (a.size() != b.size()) return out;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) {
      out.first.push_back(a[i]);
      out.second.push_back(b[i]);
    }
  return out;
}

std::vector<int64_t> align_sequences(const std::vector<int64_t>& x, const std::vector<int64_t>& y) {
  const size_t nx = x.size(), ny = y.size();
  const int gap = 0, match = 1, mismatch = -1;
  std::vector<std::vector<int>> score(nx + 1, std::vector<int>(ny + 1, 0));
  std::vector<std::vector<int>> trace(nx + 1, std::vector<int>(ny + 1, 0));
  for (size_t j = 1; j <= ny; ++j) score[0][j] = static_cast<int>(j) * gap, trace[0][j] = 1;
  for (size_t i = 1; i <= nx; ++i) score[i][0] = static_cast<int>(i) * gap, trace[i][0] = 2;
  trace[0][0] = 4;
  for (size_t i = 1; i <= nx; ++i)
    for (size_t j = 1; j <= ny; ++j) {
      const int left = score[i][j - 1] + gap;
      const int up = score[i - 1][j] + gap;
      const int diag = score[i - 1][j - 1] + (x[i - 1] == y[j - 1] ? match : mismatch);
      const int best = std::max({left, up, diag});
      score[i][j] = best;
      trace[i][j] = best == left ? 1 : best == up ? 2 : 3;
    }
  std::vector<int64_t> y_to_x;
  size_t i = nx, j = ny;
  while (i > 0 || j > 0) {
    const int tb = trace[i][j];
    if (tb == 3) {
      --i;
      --j;
      y_to_x.push_back(static_cast<int64_t>(i));
    } else if (tb == 1) {
      --j;
      y_to_x.push_back(-1);
    } else if (tb == 2) {
      --i;
    } else {
      break;
    }
  }
  std::reverse(y_to_x.begin(), y_to_x.end());
  return y_to_x;
}

RefineMapper refine_mapper(const ClipTokenizer& tokenizer, const std::string& source, const std::string& target) {
  auto encode_unpadded = [&](const std::string& text) {
    std::vector<int64_t> ids{tokenizer.sot_id()};
    auto bpe = tokenizer.bpe_ids(text);
    if (static_cast<int64_t>(bpe.size()) > kMaxWords - 2) bpe.resize(kMaxWords - 2);
    ids.insert(ids.end(), bpe.begin(), bpe.end());
    ids.push_back(tokenizer.eot_id());
    return ids;
  };
  const auto x = encode_unpadded(source), y = encode_unpadded(target);
  const auto base = align_sequences(x, y);
  RefineMapper r;
  r.mapper = torch::zeros({kMaxWords}, torch::kLong);
  r.alphas = torch::ones({kMaxWords});
  for (size_t j = 0; j < base.size(); ++j) {
    r.mapper[j] = base[j];
    r.alphas[j] = base[j] == -1 ? 0.0f : 1.0f;
  }
  for (int64_t k = static_cast<int64_t>(y.size()); k < kMaxWords; ++k) r.mapper[k] = k;
  return r;
}

}  // namespace sine::p2p
