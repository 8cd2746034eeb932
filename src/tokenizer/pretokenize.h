#pragma once
#include <string>
#include <vector>

namespace sine {

// CLIP's split of cleaned text into pieces, the pattern
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (case-insensitive). `literals` are matched first at every position, as whole words (not glued
// to a letter or digit on either side): the tokenizer's added tokens.
std::vector<std::u32string> split_clip_pieces(const std::u32string& cleaned,
                                              const std::vector<std::u32string>& literals = {});

// GPT-2's reversible byte -> printable character table: the 256 characters in CLIP's vocab order
// (printable Latin-1 bytes first, then the rest shifted to U+0100...).
const std::vector<char32_t>& byte_unicode_vocab_order();
char32_t byte_to_unicode(unsigned char b);
// The byte a table character stands for, or -1 for a character outside the table.
int unicode_to_byte(char32_t c);

// A piece's BPE start symbols: one per UTF-8 byte (as its table character, UTF-8 encoded), with
// "</w>" appended to the last one.
std::vector<std::string> byte_level_symbols(const std::u32string& piece);

}  // namespace sine
