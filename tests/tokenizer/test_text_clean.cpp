#include <gtest/gtest.h>

#include "tokenizer/mojibake.h"
#include "tokenizer/text_clean.h"
#include "tokenizer/unicode_text.h"

using sine::clip_clean_text;

namespace {

std::string ftfy(const std::string& text) { return sine::u32_to_utf8(sine::ftfy_fix_text(sine::utf8_to_u32(text))); }
std::string unescape(const std::string& text) { return sine::u32_to_utf8(sine::html_unescape(sine::utf8_to_u32(text))); }
std::string mojibake(const std::string& text) { return sine::u32_to_utf8(sine::fix_mojibake(sine::utf8_to_u32(text))); }

}  // namespace

// Expected values are Python 3.11's html.unescape.
TEST(TextClean, HtmlUnescapeFollowsPython) {
  EXPECT_EQ(unescape("&notit;"), "¬it;");  // longest legacy prefix
  EXPECT_EQ(unescape("&amp;amp;"), "&amp;");
  EXPECT_EQ(unescape("&#128;"), "€");  // C1 numbers are Windows-1252
  EXPECT_EQ(unescape("&#0;"), "\uFFFD");
  EXPECT_EQ(unescape("&#x110000;"), "\uFFFD");
  EXPECT_EQ(unescape("&#65"), "A");
  EXPECT_EQ(unescape("&#x41;x"), "Ax");
  EXPECT_EQ(unescape("&#xZ"), "&#xZ");
  EXPECT_EQ(unescape("&ampfoo"), "&foo");
  EXPECT_EQ(unescape("&AMP"), "&");
  EXPECT_EQ(unescape("&unknown;"), "&unknown;");
  EXPECT_EQ(unescape("&#1;"), "");
  EXPECT_EQ(unescape("&#xFFFF;"), "");
  EXPECT_EQ(unescape("&lt3"), "<3");
  EXPECT_EQ(unescape("&Eacute"), "É");
  EXPECT_EQ(unescape("&eacute;&#39;"), "é'");
  EXPECT_EQ(unescape("&Jscr;ohn &HilbertSpace;ancock"), "𝒥ohn ℋancock");
}

// Expected values are ftfy's own documented examples.
TEST(TextClean, FtfyFixesMojibake) {
  EXPECT_EQ(mojibake("sÃ³"), "só");
  EXPECT_EQ(mojibake("Ã³"), "ó");
  EXPECT_EQ(mojibake("voilÃ le travail"), "voilà le travail");  // space put back to 0xA0
  EXPECT_EQ(mojibake("This â€” should be an em dash"), "This — should be an em dash");
  EXPECT_EQ(mojibake("\xc3\x83\xc2\xa0\xc3\x82\xc2\xb2\xc3\x82\xc2\xa0_\xc3\x83\xc2\xa0\xc3\x82\xc2\xb2\xc3\x82\xc2\xa0"),
            "ಠ_ಠ");  // two layers
  EXPECT_EQ(mojibake("This text was never UTF-8 at all\xc2\x85"), "This text was never UTF-8 at all…");
  EXPECT_EQ(mojibake("not such a fan of Charlotte Brontë…”"), "not such a fan of Charlotte Brontë…”");
  EXPECT_EQ(mojibake("&ATILDE;&SUP3;"), "&ATILDE;&SUP3;");
  EXPECT_EQ(ftfy("uÌˆnicode"), "ünicode");
  EXPECT_EQ(ftfy("&macr;\\_(ã\xc2\x83\xc2\x84)_/&macr;"), "¯\\_(ツ)_/¯");
  EXPECT_FALSE(sine::looks_like_mojibake(sine::utf8_to_u32("café crème brûlée, naïve Ångström")));
}

TEST(TextClean, FtfyOtherFixes) {
  EXPECT_EQ(ftfy("Broken text&hellip; it&#x2019;s ﬂubberiﬁc!"), "Broken text… it's flubberific!");
  EXPECT_EQ(ftfy("HTML entities &lt;3"), "HTML entities <3");
  EXPECT_EQ(ftfy("<em>HTML entities &lt;3</em>"), "<em>HTML entities &lt;3</em>");
  // After a line with '<', entities stay escaped in the following lines too.
  EXPECT_EQ(ftfy("a &lt; b\n<p>\n&lt;"), "a < b\n<p>\n&lt;");
  EXPECT_EQ(ftfy("\ufeffParty like\nit&rsquo;s 1999!"), "Party like\nit's 1999!");
  EXPECT_EQ(ftfy("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
  EXPECT_EQ(ftfy("\x01\x1b[36;44mI&#x92;m blue, da ba dee da ba doo&#133;\x1b[0m"), "I'm blue, da ba dee da ba doo…");
  EXPECT_EQ(ftfy("P&EACUTE;REZ in BUNDESSTRA&SZLIG;E"), "PÉREZ in BUNDESSTRASSE");
  EXPECT_EQ(ftfy("&ntilde; &Ntilde; &NTILDE; &nTILDE;"), "ñ Ñ Ñ &nTILDE;");
  EXPECT_EQ(ftfy("a\r\nb\rc\u2028d"), "a\nb\nc\nd");
  EXPECT_EQ(ftfy("e\u0301"), "é");  // NFC
}

TEST(TextClean, ClipCleanUp) {
  EXPECT_EQ(clip_clean_text("  A  Photo\tOF\n\na CAT  "), "a photo of a cat");
  EXPECT_EQ(clip_clean_text("İstanbul"), "i̇stanbul");
  EXPECT_EQ(clip_clean_text("ΟΔΟΣ ΣΑ"), "οδος σα");  // final sigma
  EXPECT_EQ(clip_clean_text("a\u00a0b\u202fc\u2028d\x1f" "e"), "a b c de");  // ftfy drops the control
  EXPECT_EQ(clip_clean_text("d\u0085e"), "d…e");  // ftfy reads a C1 control as Windows-1252 before line breaks
  EXPECT_EQ(clip_clean_text("zero\u200bwidth"), "zero\u200bwidth");  // not whitespace for Python
  EXPECT_EQ(clip_clean_text("fish &amp;amp; chips"), "fish & chips");
  EXPECT_EQ(clip_clean_text("<b>bold</b> &amp;amp;"), "<b>bold</b> &");  // ftfy skips, html.unescape x2 does not
  EXPECT_EQ(clip_clean_text("a &notit; b"), "a ¬it; b");
  EXPECT_EQ(clip_clean_text("cafÃ© “QUOTED”"), "café \"quoted\"");
  EXPECT_EQ(clip_clean_text(""), "");
  EXPECT_EQ(clip_clean_text("bad \xff utf8"), "bad \uFFFD utf8");
}
