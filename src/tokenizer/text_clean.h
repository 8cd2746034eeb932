#pragma once
#include <string>

namespace sine {

// The text clean-up of OpenAI CLIP's simple_tokenizer.py, which every SD 1.x pipeline uses:
// ftfy.fix_text (ftfy 6.1 defaults), html.unescape twice, strip, whitespace runs to one space,
// Python str.lower(). The result is what the tokenizer's split pattern sees.
std::string clip_clean_text(const std::string& text);

// ftfy.fix_text with its default configuration: mojibake repair, HTML entities (unless the line
// has a '<'), C1 controls, Latin ligatures, full/half-width forms, curly quotes, line breaks,
// terminal escapes, control characters, NFC; repeated until nothing changes.
std::u32string ftfy_fix_text(const std::u32string& text);

// Python's html.unescape: named references (HTML5 table, including the legacy ones without ';'
// and their longest-prefix rule) and numeric references with HTML5's replacements.
std::u32string html_unescape(const std::u32string& text);

}  // namespace sine
