#pragma once
#include <string>

namespace sine {

// ftfy 6.1's mojibake repair (`ftfy.fix_encoding`): text that was UTF-8 but got decoded as
// Latin-1, Windows-125x, ISO-8859-2, MacRoman or CP437 ("cafÃ©") is re-encoded and decoded as
// UTF-8 ("café") when ftfy's badness heuristic flags it and the whole text decodes cleanly; also
// embedded UTF-8 mojibake in otherwise fine text, and stray C1 controls read as Windows-1252.
std::u32string fix_mojibake(const std::u32string& text);

// ftfy's `is_bad`: whether the text contains a character sequence typical of mojibake.
bool looks_like_mojibake(const std::u32string& text);

// ftfy's `fix_c1_controls`: U+0080..U+009F become their Windows-1252 characters.
std::u32string fix_c1_controls(const std::u32string& text);

}  // namespace sine
