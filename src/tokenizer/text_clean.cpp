#include "tokenizer/text_clean.h"

#include <unordered_map>

#include "tokenizer/html_entities.h"
#include "tokenizer/mojibake.h"
#include "tokenizer/unicode_text.h"

namespace sine {
namespace {

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_ascii_alnum(char32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex_digit(char32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// What HTML5 (and Python) make of a numeric character reference.
std::u32string numeric_reference(uint64_t num) {
  // C1 numbers mean their Windows-1252 characters; 0x81, 0x8D, 0x8F, 0x90, 0x9D stay as they are.
  if (num >= 0x80 && num <= 0x9F) return fix_c1_controls(std::u32string(1, static_cast<char32_t>(num)));
  if (num == 0x00) return U"\uFFFD";
  if (num == 0x0D) return U"\r";
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return U"\uFFFD";
  bool invalid = (num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) || num == 0x7F ||
                 (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE;
  if (invalid) return U"";
  return std::u32string(1, static_cast<char32_t>(num));
}

// Parses the digits of `s` in `base`, saturating far above U+10FFFF.
uint64_t parse_reference_number(const std::u32string& digits, int base) {
  uint64_t v = 0;
  for (char32_t c : digits) {
    int d = is_ascii_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : c - 'A' + 10;
    v = std::min<uint64_t>(v * base + d, 0xFFFFFFFFull);
  }
  return v;
}

bool is_reference_name_char(char32_t c) {
  return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' && c != ';';
}

// ftfy's entity table: the HTML5 names that end in ';', plus all-caps spellings of the lowercase
// ones (&EACUTE; -> É) where the all-caps name means nothing to html.unescape.
const std::unordered_map<std::u32string, std::u32string>& ftfy_entities() {
  static const std::unordered_map<std::u32string, std::u32string> table = [] {
    std::unordered_map<std::u32string, std::u32string> t;
    for_each_html5_named_reference([&](const std::u32string& name, const std::u32string& value) {
      if (name.empty() || name.back() != ';') return;
      t[U"&" + name] = value;
    });
    for_each_html5_named_reference([&](const std::u32string& name, const std::u32string& value) {
      if (name.empty() || name.back() != ';' || to_lower(name) != name) return;
      std::u32string upper = U"&" + to_upper(name);
      if (html_unescape(upper) == upper) t[upper] = to_upper(value);
    });
    return t;
  }();
  return table;
}

// ftfy.fixes.unescape_html: only complete references `&name;` / `&#...;` of at most 24 characters.
std::u32string ftfy_unescape_html(const std::u32string& text) {
  std::u32string out;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '&') {
      size_t j = i + 1;
      if (j < text.size() && text[j] == '#') ++j;
      size_t k = j;
      while (k < text.size() && is_ascii_alnum(text[k])) ++k;
      if (k > j && k - j <= 24 && k < text.size() && text[k] == ';') {
        std::u32string entity = text.substr(i, k + 1 - i);
        auto it = ftfy_entities().find(entity);
        if (it != ftfy_entities().end()) {
          out += it->second;
        } else if (j > i + 1) {
          std::u32string decoded = html_unescape(entity);
          out += decoded.find(';') == std::u32string::npos ? decoded : entity;
        } else {
          out += entity;
        }
        i = k + 1;
        continue;
      }
    }
    out.push_back(text[i++]);
  }
  return out;
}

const std::unordered_map<char32_t, std::u32string>& latin_ligatures() {
  static const std::unordered_map<char32_t, std::u32string> table = {
      {U'Ĳ', U"IJ"}, {U'ĳ', U"ij"}, {U'ŉ', U"ʼn"}, {U'Ǳ', U"DZ"}, {U'ǲ', U"Dz"}, {U'ǳ', U"dz"},
      {U'Ǆ', U"DŽ"}, {U'ǅ', U"Dž"}, {U'ǆ', U"dž"}, {U'Ǉ', U"LJ"}, {U'ǈ', U"Lj"}, {U'ǉ', U"lj"},
      {U'Ǌ', U"NJ"}, {U'ǋ', U"Nj"}, {U'ǌ', U"nj"}, {U'ﬀ', U"ff"}, {U'ﬁ', U"fi"}, {U'ﬂ', U"fl"},
      {U'ﬃ', U"ffi"}, {U'ﬄ', U"ffl"}, {U'ﬅ', U"ſt"}, {U'ﬆ', U"st"}};
  return table;
}

// Full-width ASCII and half-width Katakana/Hangul to their usual forms (their NFKC), and the
// ideographic space to a plain space.
const std::unordered_map<char32_t, std::u32string>& width_map() {
  static const std::unordered_map<char32_t, std::u32string> table = [] {
    std::unordered_map<char32_t, std::u32string> t{{0x3000, U" "}};
    for (char32_t c = 0xFF01; c < 0xFFF0; ++c) {
      std::u32string alt = nfkc(std::u32string(1, c));
      if (alt != std::u32string(1, c)) t[c] = alt;
    }
    return t;
  }();
  return table;
}

std::u32string translate(const std::u32string& text, const std::unordered_map<char32_t, std::u32string>& map) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    auto it = map.find(c);
    if (it == map.end()) out.push_back(c);
    else out += it->second;
  }
  return out;
}

std::u32string uncurl_quotes(std::u32string text) {
  for (char32_t& c : text) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
    else if (c >= 0x201C && c <= 0x201F) c = '"';
  }
  return text;
}

std::u32string fix_line_breaks(const std::u32string& text) {
  std::u32string out;
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t c = text[i];
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    out.push_back(c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85 ? U'\n' : c);
  }
  return out;
}

// "ANSI" terminal escapes: ESC '[' (digits or ';')* letter.
std::u32string remove_terminal_escapes(const std::u32string& text) {
  std::u32string out;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == 0x1B && i + 1 < text.size() && text[i + 1] == '[') {
      size_t j = i + 2;
      while (j < text.size() && (is_decimal_digit(text[j]) || text[j] == ';')) ++j;
      if (j < text.size() && ((text[j] >= 'a' && text[j] <= 'z') || (text[j] >= 'A' && text[j] <= 'Z'))) {
        i = j + 1;
        continue;
      }
    }
    out.push_back(text[i++]);
  }
  return out;
}

// Controls with no visible effect; tab, line breaks, form feed, joiners and bidi marks stay.
bool is_removable_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

std::u32string remove_control_chars(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text)
    if (!is_removable_control(c)) out.push_back(c);
  return out;
}

std::u32string fix_segment(std::u32string text, bool unescape) {
  while (true) {
    const std::u32string original = text;
    if (unescape) text = ftfy_unescape_html(text);
    text = fix_mojibake(text);
    text = fix_c1_controls(text);
    text = translate(text, latin_ligatures());
    text = translate(text, width_map());
    text = uncurl_quotes(std::move(text));
    text = fix_line_breaks(text);
    // ftfy's fix_surrogates has nothing to do: decoded UTF-8 never holds surrogate code points.
    text = remove_terminal_escapes(text);
    text = remove_control_chars(text);
    text = nfc(text);
    if (text == original) return text;
  }
}

std::u32string strip_python_space(const std::u32string& text) {
  size_t b = 0, e = text.size();
  while (b < e && is_python_space(text[b])) ++b;
  while (e > b && is_python_space(text[e - 1])) --e;
  return text.substr(b, e - b);
}

}  // namespace

std::u32string html_unescape(const std::u32string& text) {
  if (text.find('&') == std::u32string::npos) return text;
  std::u32string out;
  for (size_t i = 0; i < text.size();) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    size_t j = i + 1;
    if (j < text.size() && text[j] == '#') {
      bool hex = j + 1 < text.size() && (text[j + 1] == 'x' || text[j + 1] == 'X');
      size_t d = j + (hex ? 2 : 1), k = d;
      while (k < text.size() && (hex ? is_hex_digit(text[k]) : is_ascii_digit(text[k]))) ++k;
      if (k == d && hex) {  // "&#x" without hex digits: try "&#" followed by decimal digits instead
        hex = false;
        d = k = j + 1;
      }
      if (k == d) {
        out.push_back(text[i++]);
        continue;
      }
      out += numeric_reference(parse_reference_number(text.substr(d, k - d), hex ? 16 : 10));
      i = k + (k < text.size() && text[k] == ';' ? 1 : 0);
      continue;
    }
    size_t k = j;
    while (k < text.size() && k - j < 32 && is_reference_name_char(text[k])) ++k;
    if (k == j) {
      out.push_back(text[i++]);
      continue;
    }
    if (k < text.size() && text[k] == ';') ++k;
    const std::u32string name = text.substr(j, k - j);
    if (const std::u32string* value = html5_named_reference(name)) {
      out += *value;
    } else {
      bool found = false;
      for (size_t x = name.size() - 1; x >= 2 && x < name.size(); --x) {
        if (const std::u32string* value = html5_named_reference(name.substr(0, x))) {
          out += *value + name.substr(x);
          found = true;
          break;
        }
      }
      if (!found) out += U"&" + name;
    }
    i = k;
  }
  return out;
}

std::u32string ftfy_fix_text(const std::u32string& text) {
  constexpr size_t kMaxDecodeLength = 1000000;
  bool unescape = true;
  std::u32string out;
  for (size_t pos = 0; pos < text.size();) {
    size_t newline = text.find('\n', pos);
    size_t end = newline == std::u32string::npos ? text.size() : newline + 1;
    end = std::min(end, pos + kMaxDecodeLength);
    std::u32string segment = text.substr(pos, end - pos);
    // ftfy leaves entities alone from the first line that looks like HTML on.
    if (unescape && segment.find('<') != std::u32string::npos) unescape = false;
    out += fix_segment(std::move(segment), unescape);
    pos = end;
  }
  return out;
}

std::string clip_clean_text(const std::string& text) {
  std::u32string t = ftfy_fix_text(utf8_to_u32(text));
  t = strip_python_space(html_unescape(html_unescape(t)));
  std::u32string collapsed;
  for (size_t i = 0; i < t.size();) {
    if (is_python_space(t[i])) {
      while (i < t.size() && is_python_space(t[i])) ++i;
      collapsed.push_back(' ');
    } else {
      collapsed.push_back(t[i++]);
    }
  }
  return u32_to_utf8(to_lower(strip_python_space(collapsed)));
}

}  // namespace sine
