#pragma once
#include <string>

namespace sine {

// Text cleaning works on code points (std::u32string) so that rules written for Python `str`
// (indexing, regexes, str.isspace, str.lower) carry over one to one. Character properties,
// normalization and case mapping come from ICU.

// Invalid UTF-8 becomes U+FFFD (one per maximal ill-formed subsequence, as ICU decodes).
std::u32string utf8_to_u32(const std::string& text);
std::string u32_to_utf8(const std::u32string& text);
void append_utf8(std::string& out, char32_t c);

std::u32string nfc(const std::u32string& text);
std::u32string nfkc(const std::u32string& text);
// Full (SpecialCasing) mappings in the root locale, as Python's str.lower/str.upper:
// "İ" lowers to "i̇", "ß" uppers to "SS", and a final "Σ" lowers to "ς".
std::u32string to_lower(const std::u32string& text);
std::u32string to_upper(const std::u32string& text);

// Python's str.isspace / `\s`: general category Zs or bidirectional class WS, B or S.
bool is_python_space(char32_t c);
bool is_letter(char32_t c);         // \p{L}
bool is_number(char32_t c);         // \p{N}
bool is_decimal_digit(char32_t c);  // \p{Nd}, Python's `\d`
char32_t simple_case_fold(char32_t c);

}  // namespace sine
