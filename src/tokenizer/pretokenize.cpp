#include "tokenizer/pretokenize.h"

#include <algorithm>
#include <array>

#include "tokenizer/unicode_text.h"

namespace sine {
namespace {

bool matches_folded(const std::u32string& text, size_t at, const std::u32string& literal) {
  if (at + literal.size() > text.size()) return false;
  for (size_t k = 0; k < literal.size(); ++k)
    if (simple_case_fold(text[at + k]) != simple_case_fold(literal[k])) return false;
  return true;
}

bool is_word_char(char32_t c) { return is_letter(c) || is_number(c); }

struct ByteTable {
  std::vector<char32_t> vocab_order;
  std::array<char32_t, 256> to_unicode{};
};

const ByteTable& byte_table() {
  static const ByteTable table = [] {
    ByteTable t;
    std::array<bool, 256> printable{};
    for (int b = 0; b < 256; ++b)
      printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    for (int b = 0; b < 256; ++b)
      if (printable[b]) {
        t.to_unicode[b] = static_cast<char32_t>(b);
        t.vocab_order.push_back(static_cast<char32_t>(b));
      }
    char32_t next = 256;
    for (int b = 0; b < 256; ++b)
      if (!printable[b]) {
        t.to_unicode[b] = next;
        t.vocab_order.push_back(next++);
      }
    return t;
  }();
  return table;
}

}  // namespace

const std::vector<char32_t>& byte_unicode_vocab_order() { return byte_table().vocab_order; }
char32_t byte_to_unicode(unsigned char b) { return byte_table().to_unicode[b]; }

int unicode_to_byte(char32_t c) {
  static const std::array<int, 512> inverse = [] {
    std::array<int, 512> inv;
    inv.fill(-1);
    for (int b = 0; b < 256; ++b) inv[byte_table().to_unicode[b]] = b;
    return inv;
  }();
  return c < inverse.size() ? inverse[c] : -1;
}

std::vector<std::u32string> split_clip_pieces(const std::u32string& text,
                                              const std::vector<std::u32string>& literals) {
  static const std::u32string kSpecials[] = {U"<|startoftext|>", U"<|endoftext|>"};
  static const std::u32string kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  std::vector<std::u32string> sorted_literals = literals;  // longest first, so "**" wins over "*"
  std::stable_sort(sorted_literals.begin(), sorted_literals.end(),
                   [](const auto& a, const auto& b) { return a.size() > b.size(); });

  std::vector<std::u32string> pieces;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    auto take = [&](size_t len) {
      pieces.push_back(text.substr(i, len));
      i += len;
    };
    const std::u32string* literal = nullptr;
    for (const auto& lit : sorted_literals) {
      if (lit.empty() || text.compare(i, lit.size(), lit) != 0) continue;
      bool glued_before = i > 0 && is_word_char(text[i - 1]) && is_word_char(lit.front());
      bool glued_after = i + lit.size() < n && is_word_char(text[i + lit.size()]) && is_word_char(lit.back());
      if (!glued_before && !glued_after) {
        literal = &lit;
        break;
      }
    }
    if (literal) {
      take(literal->size());
      continue;
    }
    const std::u32string* fixed = nullptr;
    for (const auto& s : kSpecials)
      if (!fixed && matches_folded(text, i, s)) fixed = &s;
    for (const auto& s : kContractions)
      if (!fixed && matches_folded(text, i, s)) fixed = &s;
    if (fixed) {
      take(fixed->size());
      continue;
    }
    const char32_t c = text[i];
    size_t j = i + 1;
    if (is_letter(c)) {
      while (j < n && is_letter(text[j])) ++j;
    } else if (is_number(c)) {
      // one digit per piece
    } else if (!is_python_space(c)) {
      while (j < n && !is_python_space(text[j]) && !is_word_char(text[j])) ++j;
    } else {
      ++i;
      continue;
    }
    take(j - i);
  }
  return pieces;
}

std::vector<std::string> byte_level_symbols(const std::u32string& piece) {
  std::vector<std::string> symbols;
  for (unsigned char b : u32_to_utf8(piece)) {
    std::string s;
    append_utf8(s, byte_to_unicode(b));
    symbols.push_back(std::move(s));
  }
  if (!symbols.empty()) symbols.back() += "</w>";
  return symbols;
}

}  // namespace sine
