#include "tokenizer/mojibake.h"

#include <array>
#include <bitset>
#include <optional>
#include <unordered_map>
#include <vector>

#include "tokenizer/unicode_text.h"

namespace sine {
namespace {

// ---------------------------------------------------------------------------------------------
// Single-byte encodings, in the order ftfy tries them. Bytes 0x00-0x7F are ASCII in all of them;
// the tables give bytes 0x80-0xFF (Python's codecs; in the "sloppy" ones, bytes the standard
// leaves unassigned pass through as Latin-1, and byte 0x1A stands for U+FFFD).

struct Charmap {
  const char* name;
  bool sloppy;
  std::array<char16_t, 128> high;
};

const Charmap kCharmaps[] = {
    {"sloppy-windows-1252", true, {
      0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
      0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
      0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178, 0x00A0, 0x00A1, 0x00A2, 0x00A3,
      0x00A4, 0x00A5, 0x00A6, 0x00A7, 0x00A8, 0x00A9, 0x00AA, 0x00AB, 0x00AC, 0x00AD, 0x00AE, 0x00AF,
      0x00B0, 0x00B1, 0x00B2, 0x00B3, 0x00B4, 0x00B5, 0x00B6, 0x00B7, 0x00B8, 0x00B9, 0x00BA, 0x00BB,
      0x00BC, 0x00BD, 0x00BE, 0x00BF, 0x00C0, 0x00C1, 0x00C2, 0x00C3, 0x00C4, 0x00C5, 0x00C6, 0x00C7,
      0x00C8, 0x00C9, 0x00CA, 0x00CB, 0x00CC, 0x00CD, 0x00CE, 0x00CF, 0x00D0, 0x00D1, 0x00D2, 0x00D3,
      0x00D4, 0x00D5, 0x00D6, 0x00D7, 0x00D8, 0x00D9, 0x00DA, 0x00DB, 0x00DC, 0x00DD, 0x00DE, 0x00DF,
      0x00E0, 0x00E1, 0x00E2, 0x00E3, 0x00E4, 0x00E5, 0x00E6, 0x00E7, 0x00E8, 0x00E9, 0x00EA, 0x00EB,
      0x00EC, 0x00ED, 0x00EE, 0x00EF, 0x00F0, 0x00F1, 0x00F2, 0x00F3, 0x00F4, 0x00F5, 0x00F6, 0x00F7,
      0x00F8, 0x00F9, 0x00FA, 0x00FB, 0x00FC, 0x00FD, 0x00FE, 0x00FF,
    }},
    {"sloppy-windows-1251", true, {
      0x0402, 0x0403, 0x201A, 0x0453, 0x201E, 0x2026, 0x2020, 0x2021, 0x20AC, 0x2030, 0x0409, 0x2039,
      0x040A, 0x040C, 0x040B, 0x040F, 0x0452, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
      0x0098, 0x2122, 0x0459, 0x203A, 0x045A, 0x045C, 0x045B, 0x045F, 0x00A0, 0x040E, 0x045E, 0x0408,
      0x00A4, 0x0490, 0x00A6, 0x00A7, 0x0401, 0x00A9, 0x0404, 0x00AB, 0x00AC, 0x00AD, 0x00AE, 0x0407,
      0x00B0, 0x00B1, 0x0406, 0x0456, 0x0491, 0x00B5, 0x00B6, 0x00B7, 0x0451, 0x2116, 0x0454, 0x00BB,
      0x0458, 0x0405, 0x0455, 0x0457, 0x0410, 0x0411, 0x0412, 0x0413, 0x0414, 0x0415, 0x0416, 0x0417,
      0x0418, 0x0419, 0x041A, 0x041B, 0x041C, 0x041D, 0x041E, 0x041F, 0x0420, 0x0421, 0x0422, 0x0423,
      0x0424, 0x0425, 0x0426, 0x0427, 0x0428, 0x0429, 0x042A, 0x042B, 0x042C, 0x042D, 0x042E, 0x042F,
      0x0430, 0x0431, 0x0432, 0x0433, 0x0434, 0x0435, 0x0436, 0x0437, 0x0438, 0x0439, 0x043A, 0x043B,
      0x043C, 0x043D, 0x043E, 0x043F, 0x0440, 0x0441, 0x0442, 0x0443, 0x0444, 0x0445, 0x0446, 0x0447,
      0x0448, 0x0449, 0x044A, 0x044B, 0x044C, 0x044D, 0x044E, 0x044F,
    }},
    {"sloppy-windows-1250", true, {
      0x20AC, 0x0081, 0x201A, 0x0083, 0x201E, 0x2026, 0x2020, 0x2021, 0x0088, 0x2030, 0x0160, 0x2039,
      0x015A, 0x0164, 0x017D, 0x0179, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
      0x0098, 0x2122, 0x0161, 0x203A, 0x015B, 0x0165, 0x017E, 0x017A, 0x00A0, 0x02C7, 0x02D8, 0x0141,
      0x00A4, 0x0104, 0x00A6, 0x00A7, 0x00A8, 0x00A9, 0x015E, 0x00AB, 0x00AC, 0x00AD, 0x00AE, 0x017B,
      0x00B0, 0x00B1, 0x02DB, 0x0142, 0x00B4, 0x00B5, 0x00B6, 0x00B7, 0x00B8, 0x0105, 0x015F, 0x00BB,
      0x013D, 0x02DD, 0x013E, 0x017C, 0x0154, 0x00C1, 0x00C2, 0x0102, 0x00C4, 0x0139, 0x0106, 0x00C7,
      0x010C, 0x00C9, 0x0118, 0x00CB, 0x011A, 0x00CD, 0x00CE, 0x010E, 0x0110, 0x0143, 0x0147, 0x00D3,
      0x00D4, 0x0150, 0x00D6, 0x00D7, 0x0158, 0x016E, 0x00DA, 0x0170, 0x00DC, 0x00DD, 0x0162, 0x00DF,
      0x0155, 0x00E1, 0x00E2, 0x0103, 0x00E4, 0x013A, 0x0107, 0x00E7, 0x010D, 0x00E9, 0x0119, 0x00EB,
      0x011B, 0x00ED, 0x00EE, 0x010F, 0x0111, 0x0144, 0x0148, 0x00F3, 0x00F4, 0x0151, 0x00F6, 0x00F7,
      0x0159, 0x016F, 0x00FA, 0x0171, 0x00FC, 0x00FD, 0x0163, 0x02D9,
    }},
    {"sloppy-windows-1253", true, {
      0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x0088, 0x2030, 0x008A, 0x2039,
      0x008C, 0x008D, 0x008E, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
      0x0098, 0x2122, 0x009A, 0x203A, 0x009C, 0x009D, 0x009E, 0x009F, 0x00A0, 0x0385, 0x0386, 0x00A3,
      0x00A4, 0x00A5, 0x00A6, 0x00A7, 0x00A8, 0x00A9, 0x00AA, 0x00AB, 0x00AC, 0x00AD, 0x00AE, 0x2015,
      0x00B0, 0x00B1, 0x00B2, 0x00B3, 0x0384, 0x00B5, 0x00B6, 0x00B7, 0x0388, 0x0389, 0x038A, 0x00BB,
      0x038C, 0x00BD, 0x038E, 0x038F, 0x0390, 0x0391, 0x0392, 0x0393, 0x0394, 0x0395, 0x0396, 0x0397,
      0x0398, 0x0399, 0x039A, 0x039B, 0x039C, 0x039D, 0x039E, 0x039F, 0x03A0, 0x03A1, 0x00D2, 0x03A3,
      0x03A4, 0x03A5, 0x03A6, 0x03A7, 0x03A8, 0x03A9, 0x03AA, 0x03AB, 0x03AC, 0x03AD, 0x03AE, 0x03AF,
      0x03B0, 0x03B1, 0x03B2, 0x03B3, 0x03B4, 0x03B5, 0x03B6, 0x03B7, 0x03B8, 0x03B9, 0x03BA, 0x03BB,
      0x03BC, 0x03BD, 0x03BE, 0x03BF, 0x03C0, 0x03C1, 0x03C2, 0x03C3, 0x03C4, 0x03C5, 0x03C6, 0x03C7,
      0x03C8, 0x03C9, 0x03CA, 0x03CB, 0x03CC, 0x03CD, 0x03CE, 0x00FF,
    }},
    {"sloppy-windows-1254", true, {
      0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
      0x0152, 0x008D, 0x008E, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
      0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x009E, 0x0178, 0x00A0, 0x00A1, 0x00A2, 0x00A3,
      0x00A4, 0x00A5, 0x00A6, 0x00A7, 0x00A8, 0x00A9, 0x00AA, 0x00AB, 0x00AC, 0x00AD, 0x00AE, 0x00AF,
      0x00B0, 0x00B1, 0x00B2, 0x00B3, 0x00B4, 0x00B5, 0x00B6, 0x00B7, 0x00B8, 0x00B9, 0x00BA, 0x00BB,
      0x00BC, 0x00BD, 0x00BE, 0x00BF, 0x00C0, 0x00C1, 0x00C2, 0x00C3, 0x00C4, 0x00C5, 0x00C6, 0x00C7,
      0x00C8, 0x00C9, 0x00CA, 0x00CB, 0x00CC, 0x00CD, 0x00CE, 0x00CF, 0x011E, 0x00D1, 0x00D2, 0x00D3,
      0x00D4, 0x00D5, 0x00D6, 0x00D7, 0x00D8, 0x00D9, 0x00DA, 0x00DB, 0x00DC, 0x0130, 0x015E, 0x00DF,
      0x00E0, 0x00E1, 0x00E2, 0x00E3, 0x00E4, 0x00E5, 0x00E6, 0x00E7, 0x00E8, 0x00E9, 0x00EA, 0x00EB,
      0x00EC, 0x00ED, 0x00EE, 0x00EF, 0x011F, 0x00F1, 0x00F2, 0x00F3, 0x00F4, 0x00F5, 0x00F6, 0x00F7,
      0x00F8, 0x00F9, 0x00FA, 0x00FB, 0x00FC, 0x0131, 0x015F, 0x00FF,
    }},
    {"iso-8859-2", false, {
      0x0080, 0x0081, 0x0082, 0x0083, 0x0084, 0x0085, 0x0086, 0x0087, 0x0088, 0x0089, 0x008A, 0x008B,
      0x008C, 0x008D, 0x008E, 0x008F, 0x0090, 0x0091, 0x0092, 0x0093, 0x0094, 0x0095, 0x0096, 0x0097,
      0x0098, 0x0099, 0x009A, 0x009B, 0x009C, 0x009D, 0x009E, 0x009F, 0x00A0, 0x0104, 0x02D8, 0x0141,
      0x00A4, 0x013D, 0x015A, 0x00A7, 0x00A8, 0x0160, 0x015E, 0x0164, 0x0179, 0x00AD, 0x017D, 0x017B,
      0x00B0, 0x0105, 0x02DB, 0x0142, 0x00B4, 0x013E, 0x015B, 0x02C7, 0x00B8, 0x0161, 0x015F, 0x0165,
      0x017A, 0x02DD, 0x017E, 0x017C, 0x0154, 0x00C1, 0x00C2, 0x0102, 0x00C4, 0x0139, 0x0106, 0x00C7,
      0x010C, 0x00C9, 0x0118, 0x00CB, 0x011A, 0x00CD, 0x00CE, 0x010E, 0x0110, 0x0143, 0x0147, 0x00D3,
      0x00D4, 0x0150, 0x00D6, 0x00D7, 0x0158, 0x016E, 0x00DA, 0x0170, 0x00DC, 0x00DD, 0x0162, 0x00DF,
      0x0155, 0x00E1, 0x00E2, 0x0103, 0x00E4, 0x013A, 0x0107, 0x00E7, 0x010D, 0x00E9, 0x0119, 0x00EB,
      0x011B, 0x00ED, 0x00EE, 0x010F, 0x0111, 0x0144, 0x0148, 0x00F3, 0x00F4, 0x0151, 0x00F6, 0x00F7,
      0x0159, 0x016F, 0x00FA, 0x0171, 0x00FC, 0x00FD, 0x0163, 0x02D9,
    }},
    {"macroman", false, {
      0x00C4, 0x00C5, 0x00C7, 0x00C9, 0x00D1, 0x00D6, 0x00DC, 0x00E1, 0x00E0, 0x00E2, 0x00E4, 0x00E3,
      0x00E5, 0x00E7, 0x00E9, 0x00E8, 0x00EA, 0x00EB, 0x00ED, 0x00EC, 0x00EE, 0x00EF, 0x00F1, 0x00F3,
      0x00F2, 0x00F4, 0x00F6, 0x00F5, 0x00FA, 0x00F9, 0x00FB, 0x00FC, 0x2020, 0x00B0, 0x00A2, 0x00A3,
      0x00A7, 0x2022, 0x00B6, 0x00DF, 0x00AE, 0x00A9, 0x2122, 0x00B4, 0x00A8, 0x2260, 0x00C6, 0x00D8,
      0x221E, 0x00B1, 0x2264, 0x2265, 0x00A5, 0x00B5, 0x2202, 0x2211, 0x220F, 0x03C0, 0x222B, 0x00AA,
      0x00BA, 0x03A9, 0x00E6, 0x00F8, 0x00BF, 0x00A1, 0x00AC, 0x221A, 0x0192, 0x2248, 0x2206, 0x00AB,
      0x00BB, 0x2026, 0x00A0, 0x00C0, 0x00C3, 0x00D5, 0x0152, 0x0153, 0x2013, 0x2014, 0x201C, 0x201D,
      0x2018, 0x2019, 0x00F7, 0x25CA, 0x00FF, 0x0178, 0x2044, 0x20AC, 0x2039, 0x203A, 0xFB01, 0xFB02,
      0x2021, 0x00B7, 0x201A, 0x201E, 0x2030, 0x00C2, 0x00CA, 0x00C1, 0x00CB, 0x00C8, 0x00CD, 0x00CE,
      0x00CF, 0x00CC, 0x00D3, 0x00D4, 0xF8FF, 0x00D2, 0x00DA, 0x00DB, 0x00D9, 0x0131, 0x02C6, 0x02DC,
      0x00AF, 0x02D8, 0x02D9, 0x02DA, 0x00B8, 0x02DD, 0x02DB, 0x02C7,
    }},
    {"cp437", false, {
      0x00C7, 0x00FC, 0x00E9, 0x00E2, 0x00E4, 0x00E0, 0x00E5, 0x00E7, 0x00EA, 0x00EB, 0x00E8, 0x00EF,
      0x00EE, 0x00EC, 0x00C4, 0x00C5, 0x00C9, 0x00E6, 0x00C6, 0x00F4, 0x00F6, 0x00F2, 0x00FB, 0x00F9,
      0x00FF, 0x00D6, 0x00DC, 0x00A2, 0x00A3, 0x00A5, 0x20A7, 0x0192, 0x00E1, 0x00ED, 0x00F3, 0x00FA,
      0x00F1, 0x00D1, 0x00AA, 0x00BA, 0x00BF, 0x2310, 0x00AC, 0x00BD, 0x00BC, 0x00A1, 0x00AB, 0x00BB,
      0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556, 0x2555, 0x2563, 0x2551, 0x2557,
      0x255D, 0x255C, 0x255B, 0x2510, 0x2514, 0x2534, 0x252C, 0x251C, 0x2500, 0x253C, 0x255E, 0x255F,
      0x255A, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256C, 0x2567, 0x2568, 0x2564, 0x2565, 0x2559,
      0x2558, 0x2552, 0x2553, 0x256B, 0x256A, 0x2518, 0x250C, 0x2588, 0x2584, 0x258C, 0x2590, 0x2580,
      0x03B1, 0x00DF, 0x0393, 0x03C0, 0x03A3, 0x03C3, 0x00B5, 0x03C4, 0x03A6, 0x0398, 0x03A9, 0x03B4,
      0x221E, 0x03C6, 0x03B5, 0x2229, 0x2261, 0x00B1, 0x2265, 0x2264, 0x2320, 0x2321, 0x00F7, 0x2248,
      0x00B0, 0x2219, 0x00B7, 0x221A, 0x207F, 0x00B2, 0x25A0, 0x00A0,
    }},
};

struct Codec {
  bool latin1 = false;
  bool sloppy = false;
  std::array<char32_t, 256> decode{};
  std::unordered_map<char32_t, unsigned char> encode;
};

const std::vector<Codec>& codecs() {
  static const std::vector<Codec> all = [] {
    std::vector<Codec> list;
    Codec latin1;
    latin1.latin1 = true;
    for (int b = 0; b < 256; ++b) latin1.decode[b] = static_cast<char32_t>(b);
    list.push_back(latin1);
    for (const Charmap& map : kCharmaps) {
      Codec codec;
      codec.sloppy = map.sloppy;
      for (int b = 0; b < 128; ++b) codec.decode[b] = static_cast<char32_t>(b);
      for (int b = 0; b < 128; ++b) codec.decode[128 + b] = map.high[b];
      if (codec.sloppy) codec.decode[0x1A] = 0xFFFD;
      list.push_back(codec);
    }
    for (Codec& codec : list)
      for (int b = 255; b >= 0; --b) codec.encode[codec.decode[b]] = static_cast<unsigned char>(b);
    return list;
  }();
  return all;
}

std::optional<std::string> encode_single_byte(const std::u32string& text, const Codec& codec) {
  std::string bytes;
  bytes.reserve(text.size());
  for (char32_t c : text) {
    auto it = codec.encode.find(c);
    if (it == codec.encode.end()) return std::nullopt;
    bytes.push_back(static_cast<char>(it->second));
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Byte-level patterns: an alternation of fixed-length sequences of byte sets, matched like a
// Python regex (leftmost, first alternative that matches).

using ByteSet = std::bitset<256>;

ByteSet bytes_in(std::initializer_list<std::pair<int, int>> ranges) {
  ByteSet set;
  for (auto [lo, hi] : ranges)
    for (int b = lo; b <= hi; ++b) set.set(b);
  return set;
}
ByteSet byte(int b) { return bytes_in({{b, b}}); }

using BytePattern = std::vector<std::vector<ByteSet>>;

size_t match_bytes(const std::string& s, size_t at, const BytePattern& pattern) {
  for (const auto& seq : pattern) {
    if (at + seq.size() > s.size()) continue;
    bool ok = true;
    for (size_t k = 0; k < seq.size() && ok; ++k) ok = seq[k].test(static_cast<unsigned char>(s[at + k]));
    if (ok) return seq.size();
  }
  return 0;
}

// UTF-8 sequences that decode if a space is put back to the 0xA0 byte a "that's just a space"
// conversion made of it.
const BytePattern& altered_utf8() {
  static const BytePattern p = [] {
    ByteSet cont = bytes_in({{0x80, 0xBF}}), sp = byte(' '), lead3 = bytes_in({{0xE0, 0xEF}});
    ByteSet lead2 = bytes_in({{0xC2, 0xC3}, {0xC5, 0xC5}, {0xCE, 0xCE}, {0xD0, 0xD0}}), f0 = byte(0xF0);
    return BytePattern{{lead2, sp},          {lead3, sp, cont},       {lead3, cont, sp},
                       {f0, sp, cont, cont}, {f0, cont, sp, cont},    {f0, cont, cont, sp}};
  }();
  return p;
}

// UTF-8 sequences in which a sloppy codec lost bytes (0x1A for U+FFFD, or one '?').
const BytePattern& lossy_utf8() {
  static const BytePattern p = [] {
    ByteSet sub = byte(0x1A), subq = bytes_in({{0x1A, 0x1A}, {'?', '?'}});
    ByteSet subc = bytes_in({{0x1A, 0x1A}, {0x80, 0xBF}}), subqc = bytes_in({{0x1A, 0x1A}, {'?', '?'}, {0x80, 0xBF}});
    ByteSet ed = byte(0xED), hi_sur = bytes_in({{0xA0, 0xAF}}), lo_sur = bytes_in({{0xB0, 0xBF}});
    ByteSet lead2 = bytes_in({{0xC2, 0xDF}}), lead3 = bytes_in({{0xE0, 0xEF}}), lead4 = bytes_in({{0xF0, 0xF4}});
    return BytePattern{{lead2, sub},
                       {bytes_in({{0xC2, 0xC3}}), byte('?')},
                       {ed, hi_sur, subq, ed, lo_sur, subqc},
                       {ed, hi_sur, subqc, ed, lo_sur, subq},
                       {lead3, subq, subc},
                       {lead3, subc, subq},
                       {lead4, subq, subc, subc},
                       {lead4, subc, subq, subc},
                       {lead4, subc, subc, subq},
                       {sub}};
  }();
  return p;
}

bool contains_match(const std::string& s, const BytePattern& pattern) {
  for (size_t i = 0; i < s.size(); ++i)
    if (match_bytes(s, i, pattern)) return true;
  return false;
}

std::string restore_byte_a0(const std::string& in) {
  // " Ã " is nearly always a mangled "à " (French "à la"), so keep the space and add the 0xA0,
  // except before the Portuguese contractions "às", "àquele", "àquela", "àquilo".
  std::string s;
  for (size_t i = 0; i < in.size(); ++i) {
    s.push_back(in[i]);
    if (static_cast<unsigned char>(in[i]) != 0xC3 || i + 1 >= in.size() || in[i + 1] != ' ') continue;
    std::string rest = in.substr(i + 2, 5);
    bool keep = rest.rfind(" ", 0) == 0 || rest.rfind("quele", 0) == 0 || rest.rfind("quela", 0) == 0 ||
                rest.rfind("quilo", 0) == 0 || rest.rfind("s ", 0) == 0;
    if (!keep) s.push_back(static_cast<char>(0xA0));
  }
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t n = match_bytes(s, i, altered_utf8());
    if (!n) {
      out.push_back(s[i++]);
      continue;
    }
    for (size_t k = 0; k < n; ++k, ++i) out.push_back(s[i] == ' ' ? static_cast<char>(0xA0) : s[i]);
  }
  return out;
}

std::string replace_lossy_sequences(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t n = match_bytes(s, i, lossy_utf8());
    if (!n) {
      out.push_back(s[i++]);
      continue;
    }
    out += "\xEF\xBF\xBD";
    i += n;
  }
  return out;
}

// Python's strict UTF-8 decoder; `variants` also accepts what ftfy's "utf-8-variants" does:
// CESU-8 surrogate pairs and Java's 0xC0 0x80 for U+0000.
std::optional<std::u32string> decode_utf8(const std::string& s, bool variants) {
  std::u32string out;
  auto at = [&](size_t i) { return i < s.size() ? static_cast<unsigned char>(s[i]) : 0u; };
  auto cont = [&](size_t i) { return i < s.size() && (at(i) & 0xC0) == 0x80; };
  for (size_t i = 0; i < s.size();) {
    unsigned b = at(i);
    if (b < 0x80) {
      out.push_back(b);
      i += 1;
    } else if (variants && b == 0xC0 && at(i + 1) == 0x80) {
      out.push_back(0);
      i += 2;
    } else if (variants && b == 0xED && at(i + 1) >= 0xA0 && at(i + 1) <= 0xAF && cont(i + 2) &&
               at(i + 3) == 0xED && at(i + 4) >= 0xB0 && at(i + 4) <= 0xBF && cont(i + 5)) {
      char32_t hi = 0xD000 | ((at(i + 1) & 0x3F) << 6) | (at(i + 2) & 0x3F);
      char32_t lo = 0xD000 | ((at(i + 4) & 0x3F) << 6) | (at(i + 5) & 0x3F);
      out.push_back(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
      i += 6;
    } else if (b >= 0xC2 && b <= 0xDF && cont(i + 1)) {
      out.push_back(((b & 0x1F) << 6) | (at(i + 1) & 0x3F));
      i += 2;
    } else if (b >= 0xE0 && b <= 0xEF && cont(i + 1) && cont(i + 2)) {
      char32_t c = ((b & 0x0F) << 12) | ((at(i + 1) & 0x3F) << 6) | (at(i + 2) & 0x3F);
      if (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF)) return std::nullopt;
      out.push_back(c);
      i += 3;
    } else if (b >= 0xF0 && b <= 0xF4 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      char32_t c = ((b & 0x07) << 18) | ((at(i + 1) & 0x3F) << 12) | ((at(i + 2) & 0x3F) << 6) | (at(i + 3) & 0x3F);
      if (c < 0x10000 || c > 0x10FFFF) return std::nullopt;
      out.push_back(c);
      i += 4;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The badness heuristic: ftfy sorts the ~400 characters that show up in UTF-8 mojibake into
// categories and flags juxtapositions that real text rarely has.

enum Category : uint16_t {
  kC1 = 1 << 0,
  kBad = 1 << 1,
  kCurrency = 1 << 2,
  kStartPunct = 1 << 3,
  kEndPunct = 1 << 4,
  kNumeric = 1 << 5,
  kKaomoji = 1 << 6,
  kUpperAccented = 1 << 7,
  kLowerAccented = 1 << 8,
  kUpperCommon = 1 << 9,
  kLowerCommon = 1 << 10,
  kBox = 1 << 11,
};

void add_range(std::unordered_map<char32_t, uint16_t>& m, char32_t lo, char32_t hi, uint16_t cat) {
  for (char32_t c = lo; c <= hi; ++c) m[c] |= cat;
}
void add_chars(std::unordered_map<char32_t, uint16_t>& m, const std::u32string& chars, uint16_t cat) {
  for (char32_t c : chars) m[c] |= cat;
}

uint16_t category(char32_t c) {
  static const std::unordered_map<char32_t, uint16_t> table = [] {
    std::unordered_map<char32_t, uint16_t> m;
    add_range(m, 0x80, 0x9F, kC1);
    add_chars(m, U"¦¤¨¬¯¶§¸ƒˆˇ˘˛˜†‡‰⌐◊\uFFFDªº№", kBad);
    add_chars(m, U"¢£¥₧€", kCurrency);
    add_chars(m, U"¡«¿©΄΅‘‚“„•‹\uF8FF", kStartPunct);
    add_chars(m, U"®»˝”›™", kEndPunct);
    add_chars(m, U"²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥", kNumeric);
    add_range(m, 0xD2, 0xD6, kKaomoji);
    add_range(m, 0xD9, 0xDC, kKaomoji);
    add_range(m, 0xF2, 0xF6, kKaomoji);
    add_range(m, 0xF8, 0xFC, kKaomoji);
    add_chars(m, U"Ő°", kKaomoji);
    add_range(m, 0xC0, 0xD1, kUpperAccented);
    add_chars(m, U"ØÜÝĂĄĆČĎĐĘĚĞİĹĽŁŃŇŒŘŚŞŠŢŤŮŰŸŹŻŽҐ", kUpperAccented);
    add_range(m, 0xE0, 0xF1, kLowerAccented);
    add_chars(m, U"ßăąćčďđęěğĺľłœŕśşšťźżžґﬁﬂ", kLowerAccented);
    add_range(m, 0x391, 0x3A9, kUpperCommon);
    add_range(m, 0x401, 0x42F, kUpperCommon);
    add_chars(m, U"ÞΆΈΉΊΌΎΏΪΫ", kUpperCommon);
    add_range(m, 0x3B1, 0x3C6, kLowerCommon);
    add_range(m, 0x430, 0x45F, kLowerCommon);
    add_chars(m, U"άέήίΰ", kLowerCommon);
    add_chars(m, U"─│┌┐┘├┤┬┼▀▄█▌▐░▒▓", kBox);
    add_range(m, 0x2550, 0x256C, kBox);
    return m;
  }();
  auto it = table.find(c);
  return it == table.end() ? 0 : it->second;
}

bool in(char32_t c, const char32_t* chars) {
  for (; *chars; ++chars)
    if (*chars == c) return true;
  return false;
}
bool ascii_lower(char32_t c) { return c >= 'a' && c <= 'z'; }
bool ascii_letter(char32_t c) { return ascii_lower(c) || (c >= 'A' && c <= 'Z'); }

bool bad_at(const std::u32string& t, size_t i) {
  const size_t n = t.size();
  auto ch = [&](size_t k) -> char32_t { return i + k < n ? t[i + k] : 0; };
  auto cat = [&](size_t k) -> uint16_t { return i + k < n ? category(t[i + k]) : 0; };
  const uint16_t a = cat(0), b = cat(1), c = cat(2);
  const uint16_t letters = kLowerAccented | kUpperAccented;
  const uint16_t symbols = kBox | kStartPunct | kEndPunct | kCurrency | kNumeric;
  if (a & kC1) return true;
  if ((a & (kBad | letters | symbols)) && (b & kBad)) return true;
  if ((a & kBad) && (b & (letters | symbols))) return true;
  if ((a & (kLowerAccented | kLowerCommon | kBox | kEndPunct | kCurrency | kNumeric)) && (b & kUpperAccented)) return true;
  if ((a & (kBox | kEndPunct | kCurrency | kNumeric)) && (b & kLowerAccented)) return true;
  if ((a & (kLowerAccented | kBox | kEndPunct)) && (b & kCurrency)) return true;
  if (i < n && is_python_space(ch(0)) && (b & kUpperAccented) && (c & kCurrency)) return true;
  if ((a & (kUpperAccented | kBox | kEndPunct)) && (b & kNumeric)) return true;
  if ((a & (letters | kCurrency | kNumeric | kBox)) && (b & kEndPunct) && (c & kStartPunct)) return true;
  if ((a & (kCurrency | kNumeric | kBox)) && (b & kStartPunct)) return true;
  if (ascii_lower(ch(0)) && (b & kUpperAccented) && (c & (kStartPunct | kCurrency))) return true;
  if ((a & kBox) && (b & kKaomoji)) return true;
  if ((a & (letters | kCurrency | kNumeric | kStartPunct | kEndPunct)) && (b & kBox)) return true;
  if ((a & kBox) && (b & kEndPunct)) return true;
  // ftfy 6.1 writes this rule in a raw string, so it wants a literal backslash and 'w'.
  if ((a & letters) && (b & kEndPunct) && ch(2) == '\\' && ch(3) == 'w') return true;
  if (in(ch(0), U"Œœ") && i + 1 < n && !ascii_letter(ch(1))) return true;
  if (in(ch(0), U"ÂÃÎÐ") && (in(ch(1), U"€Šš¢£Ÿž\u00A0\u00AD®©°·»–—´") || (b & kEndPunct))) return true;
  if (ch(0) == U'×' && in(ch(1), U"²³")) return true;
  if (ch(0) == U'à' && in(ch(1), U"²µ¹¼½¾")) return true;
  if (ch(0) == U'√' && in(ch(1), U"±∂†≠®™´≤≥¥µø")) return true;
  if (ch(0) == U'≈' && in(ch(1), U"°¢")) return true;
  if (ch(0) == U'‚' && ch(1) == U'Ä' && in(ch(2), U"ìîïòôúùû†°¢π")) return true;
  if (ch(0) == U'‚' && in(ch(1), U"âó") && in(ch(2), U"àä°ê")) return true;
  if (ch(0) == U'в' && ch(1) == U'Ђ') return true;
  const uint16_t latin1_mojibake = kC1 | kBad | kStartPunct | kEndPunct | kCurrency;
  if (in(ch(0), U"ВГРС") && ((b & latin1_mojibake) || in(ch(1), U"°µ")) && in(ch(2), U"ВГРС")) return true;
  if (ch(0) == U'Ã' && in(ch(1), U"\u00A0¡")) return true;
  if (ascii_lower(ch(0))) {
    if (ch(1) == U'Ã' && ch(2) == ' ') return true;
    if (i + 1 < n && is_python_space(ch(1)) && ch(2) == U'Ã' && ch(3) == ' ') return true;
  }
  if (i == 0 && ch(0) == U'Ã' && ch(1) == ' ') return true;
  if (ch(0) == U'β' && ch(1) == U'€' && in(ch(2), U"™\u00A0Ά\u00AD®°")) return true;
  if (in(ch(0), U"ΒΓΞΟ") && ((b & latin1_mojibake) || ch(1) == U'°') && in(ch(2), U"ΒΓΞΟ")) return true;
  return false;
}

// Characters that start or continue a UTF-8 sequence once misread in a Latin-1-like encoding:
// used to find mojibake embedded in text that as a whole does not re-decode.
enum Utf8Clue { kNotClue, kFirstOf2, kFirstOf3, kFirstOf4, kContinuation };

Utf8Clue utf8_clue(char32_t c) {
  static const std::unordered_map<char32_t, Utf8Clue> table = [] {
    std::unordered_map<char32_t, Utf8Clue> m;
    for (char32_t x : std::u32string(U"ÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßĂĆČĎĐĘĚĞİĹŃŇŐŘŞŢŮŰ"
                                     U"ΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩΪΫάέήίВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"))
      m[x] = kFirstOf2;
    for (char32_t x : std::u32string(U"àáâãäåæçèéêëìíîïăćčďęěĺŕΰαβγδεζηθικλμνξοабвгдежзийклмноп")) m[x] = kFirstOf3;
    for (char32_t x : std::u32string(U"ðóđğπσру")) m[x] = kFirstOf4;
    for (char32_t x = 0x80; x <= 0xBF; ++x) m[x] = kContinuation;
    for (char32_t x : std::u32string(U"ĄąĽľŁłŒœŚśŞşŠšŤťŸŹźŻżŽžƒˆˇ˘˛˜˝΄΅ΆΈΉΊΌΎΏЁЂЃЄЅІЇЈЉЊЋЌЎЏёђѓєѕіїјљњћќўџҐґ"
                                     U"–—―‘’‚“”„†‡•…‰‹›€№™ "))
      m[x] = kContinuation;
    return m;
  }();
  auto it = table.find(c);
  return it == table.end() ? kNotClue : it->second;
}

// Length of the run of UTF-8-looking sequences starting at `i` (0 if none).
size_t utf8_mojibake_run(const std::u32string& t, size_t i) {
  size_t end = i;
  while (end < t.size()) {
    Utf8Clue lead = utf8_clue(t[end]);
    size_t need = lead == kFirstOf2 ? 1 : lead == kFirstOf3 ? 2 : lead == kFirstOf4 ? 3 : 0;
    if (!need || end + need >= t.size()) break;
    bool ok = true;
    for (size_t k = 1; k <= need && ok; ++k) ok = utf8_clue(t[end + k]) == kContinuation;
    if (!ok) break;
    end += need + 1;
  }
  return end - i;
}

std::u32string fix_encoding_once(const std::u32string& text);

std::u32string decode_inconsistent_utf8(const std::u32string& text) {
  std::u32string out;
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8_mojibake_run(text, i);
    if (!n) {
      out.push_back(text[i++]);
      continue;
    }
    std::u32string piece = text.substr(i, n);
    out += (piece.size() < text.size() && looks_like_mojibake(piece)) ? fix_mojibake(piece) : piece;
    i += n;
  }
  return out;
}

bool is_ascii(const std::u32string& text) {
  for (char32_t c : text)
    if (c >= 0x80) return false;
  return true;
}

std::u32string fix_encoding_once(const std::u32string& text) {
  if (text.empty() || is_ascii(text) || !looks_like_mojibake(text)) return text;
  bool latin1_possible = false;
  for (const Codec& codec : codecs()) {
    std::optional<std::string> bytes = encode_single_byte(text, codec);
    if (!bytes) continue;
    if (codec.latin1) latin1_possible = true;
    if (contains_match(*bytes, altered_utf8())) bytes = restore_byte_a0(*bytes);
    if (codec.sloppy) bytes = replace_lossy_sequences(*bytes);
    bool variants = bytes->find('\xED') != std::string::npos || bytes->find('\xC0') != std::string::npos;
    if (auto fixed = decode_utf8(*bytes, variants)) return *fixed;
  }
  for (size_t i = 0; i < text.size(); ++i) {
    if (utf8_mojibake_run(text, i)) {
      std::u32string fixed = decode_inconsistent_utf8(text);
      if (fixed != text) return fixed;
      break;
    }
  }
  if (latin1_possible) {
    // Latin-1 text holding C1 controls was most likely Windows-1252 (a strict decode: the five
    // bytes Windows-1252 leaves unassigned make this step give up).
    const Codec& cp1252 = codecs()[1];
    std::u32string fixed;
    bool ok = true;
    for (char32_t c : text) {
      if (c == 0x81 || c == 0x8D || c == 0x8F || c == 0x90 || c == 0x9D) ok = false;
      fixed.push_back(cp1252.decode[c]);
    }
    if (ok && fixed != text) return fixed;
  }
  return fix_c1_controls(text);
}

}  // namespace

bool looks_like_mojibake(const std::u32string& text) {
  for (size_t i = 0; i < text.size(); ++i)
    if (bad_at(text, i)) return true;
  return false;
}

std::u32string fix_c1_controls(const std::u32string& text) {
  std::u32string out = text;
  for (char32_t& c : out)
    if (c >= 0x80 && c <= 0x9F) c = codecs()[1].decode[c];
  return out;
}

std::u32string fix_mojibake(const std::u32string& text) {
  std::u32string current = text;
  while (true) {
    std::u32string next = fix_encoding_once(current);
    if (next == current) return current;
    current = std::move(next);
  }
}

}  // namespace sine
