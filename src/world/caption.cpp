#include "world/caption.h"

#include <cctype>
#include <optional>

#include "core/error.h"

namespace sine::world {
namespace {

const char* position_phrase(int cell) {
  static const char* phrases[] = {"at the top left",    "at the top",    "at the top right",
                                  "on the left",        "in the center", "on the right",
                                  "at the bottom left", "at the bottom", "at the bottom right"};
  return phrases[cell];
}

std::string with_article(const std::string& phrase) {
  const bool vowel = std::string("aeiou").find(phrase[0]) != std::string::npos;
  return (vowel ? "an " : "a ") + phrase;
}

std::string object_phrase(const Object& o) {
  std::string words;
  if (o.size == Size::small) words += "small ";
  words += name_of(o.color);
  if (o.pattern != Pattern::plain) words += std::string(" ") + name_of(o.pattern);
  words += std::string(" ") + name_of(o.shape);
  std::string phrase = with_article(words);
  if (o.grid_cell >= 0 && o.grid_cell < kGridCells) phrase += std::string(" ") + position_phrase(o.grid_cell);
  return phrase;
}

std::string background_phrase(const Background& bg) {
  switch (bg.kind) {
    case BackgroundKind::gradient:
      return std::string(name_of(bg.color)) + " to " + name_of(bg.color2) + " gradient";
    case BackgroundKind::split:
      return std::string(name_of(bg.color)) + " and " + name_of(bg.color2);
    case BackgroundKind::checkered:
    case BackgroundKind::striped:
    case BackgroundKind::dotted:
    case BackgroundKind::noisy:
      return std::string(name_of(bg.kind)) + " " + name_of(bg.color);
    case BackgroundKind::solid:
      break;
  }
  return name_of(bg.color);
}

template <typename T>
std::optional<T> lookup(const std::string& word, int count) {
  for (int i = 0; i < count; ++i)
    if (word == name_of(static_cast<T>(i))) return static_cast<T>(i);
  return std::nullopt;
}

std::optional<Color> color_word(const std::string& w) {
  if (w == "grey") return Color::gray;
  return lookup<Color>(w, kColorCount);
}

std::optional<Shape> shape_word(const std::string& w) { return lookup<Shape>(w, kShapeCount); }

std::optional<Pattern> pattern_word(const std::string& w) { return lookup<Pattern>(w, kPatternCount); }

std::optional<Size> size_word(const std::string& w) {
  if (w == "small") return Size::small;
  if (w == "large" || w == "big") return Size::large;
  return std::nullopt;
}

bool is_article(const std::string& w) { return w == "a" || w == "an"; }
// The texture words of a one-color background.
std::optional<BackgroundKind> texture_word(const std::string& w) {
  if (w == "checkered" || w == "checkerboard" || w == "checked") return BackgroundKind::checkered;
  if (w == "striped" || w == "stripy") return BackgroundKind::striped;
  if (w == "dotted" || w == "spotted") return BackgroundKind::dotted;
  if (w == "noisy" || w == "speckled") return BackgroundKind::noisy;
  return std::nullopt;
}

class CaptionParser {
 public:
  explicit CaptionParser(const std::string& text) : text_(text) {
    std::string word;
    auto flush = [&] {
      if (!word.empty()) tokens_.push_back(word);
      word.clear();
    };
    for (char ch : text) {
      if (std::isalpha(static_cast<unsigned char>(ch))) {
        word += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      } else if (ch == ',') {
        flush();
        tokens_.push_back(",");
      } else if (std::isspace(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-') {
        flush();
      } else {
        fail(std::string("unexpected character '") + ch + "'");
      }
    }
    flush();
  }

  Scene parse() {
    Scene scene;
    scene.background_stated = false;
    while (pos_ < tokens_.size()) {
      if (is_separator(peek())) {
        ++pos_;
        continue;
      }
      if (peek() == "on" && pos_ + 1 < tokens_.size() && is_article(tokens_[pos_ + 1]) &&
          !scene.objects.empty()) {
        pos_ += 2;
        scene.background = parse_background();
        scene.background_stated = true;
        if (pos_ < tokens_.size()) fail("words after the background: '" + peek() + "'");
        break;
      }
      scene.objects.push_back(parse_object());
    }
    if (scene.objects.empty()) fail("no object named (e.g. 'a red star')");
    return scene;
  }

 private:
  const std::string& peek() const { return tokens_[pos_]; }
  bool is_separator(const std::string& w) const { return w == "," || w == "and"; }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("caption '" + text_ + "': " + what);
  }

  [[noreturn]] void unknown(const std::string& word) const {
    fail("unknown word '" + word +
         "' (known: a/an, small/large, the colors, plain/striped/dotted, the shapes, positions "
         "like 'at the top left', 'on a blue background', 'on a red to blue gradient "
         "background', 'on a checkered|striped|dotted|noisy gray background', 'on a red and blue background')");
  }

  Object parse_object() {
    Object o;
    std::optional<Color> color;
    std::optional<Shape> shape;
    std::optional<Pattern> pattern;
    std::optional<Size> size;
    if (is_article(peek())) ++pos_;
    while (pos_ < tokens_.size() && !shape) {
      const std::string& w = peek();
      if (auto c = color_word(w)) {
        set_once(color, *c, "colors");
      } else if (auto p = pattern_word(w)) {
        set_once(pattern, *p, "patterns");
      } else if (auto s = size_word(w)) {
        set_once(size, *s, "sizes");
      } else if (auto sh = shape_word(w)) {
        shape = sh;
      } else {
        unknown(w);
      }
      ++pos_;
    }
    if (!shape) fail("an object without a shape (circle, square, triangle, star, heart, ring, cross)");
    if (!color) fail(std::string("the ") + name_of(*shape) + " has no color");
    o.shape = *shape;
    o.color = *color;
    o.pattern = pattern.value_or(Pattern::plain);
    o.size = size.value_or(Size::large);
    o.grid_cell = parse_position();
    if (o.grid_cell >= 0) {
      o.cx = kGridCenters[o.grid_cell % 3];
      o.cy = kGridCenters[o.grid_cell / 3];
    }
    return o;
  }

  template <typename T>
  void set_once(std::optional<T>& slot, T value, const char* what) {
    if (slot && *slot != value) fail(std::string("one object with two ") + what + ": '" + peek() + "'");
    slot = value;
  }

  // "at|in|on|to the <words>"; returns -1 where no position follows.
  int parse_position() {
    if (pos_ + 1 >= tokens_.size()) return -1;
    const std::string& prep = peek();
    if (!(prep == "at" || prep == "in" || prep == "on" || prep == "to") || tokens_[pos_ + 1] != "the")
      return -1;
    pos_ += 2;
    int row = -1, col = -1;
    bool any = false;
    auto set = [&](int& slot, int value) {
      if (slot >= 0 && slot != value) fail("contradictory position near '" + peek() + "'");
      slot = value;
    };
    while (pos_ < tokens_.size()) {
      const std::string& w = peek();
      if (w == "top" || w == "upper") {
        set(row, 0);
      } else if (w == "bottom" || w == "lower") {
        set(row, 2);
      } else if (w == "left") {
        set(col, 0);
      } else if (w == "right") {
        set(col, 2);
      } else if (w == "center" || w == "centre" || w == "middle") {
      } else if (w == "corner" || w == "side") {
      } else {
        break;
      }
      any = true;
      ++pos_;
    }
    if (!any) fail("'" + prep + " the' without a position (top, bottom, left, right, center)");
    return (row < 0 ? 1 : row) * 3 + (col < 0 ? 1 : col);
  }

  Background parse_background() {
    Background bg;
    std::vector<std::string> words;
    while (pos_ < tokens_.size() && peek() != "background") words.push_back(tokens_[pos_++]);
    if (pos_ >= tokens_.size()) fail("a background phrase must end with 'background'");
    ++pos_;
    std::vector<Color> colors;
    std::optional<BackgroundKind> texture;
    bool gradient = false, to = false, split = false;
    for (const std::string& w : words) {
      if (auto c = color_word(w)) {
        colors.push_back(*c);
      } else if (w == "gradient") {
        gradient = true;
      } else if (auto t = texture_word(w)) {
        if (texture && *texture != *t) fail(std::string("a background both ") + name_of(*texture) + " and " + name_of(*t));
        texture = t;
      } else if (w == "to") {
        to = true;
      } else if (w == "and" || w == "split") {
        split = true;
      } else if (w != "solid" && w != "plain") {
        unknown(w);
      }
    }
    if (texture && (gradient || split))
      fail(std::string("a ") + name_of(*texture) + " background has one color ('on a " + name_of(*texture) +
           " gray background')");
    if (gradient) {
      if (colors.size() != 2 || !to || split) fail("a gradient background needs 'COLOR to COLOR gradient'");
      bg.kind = BackgroundKind::gradient;
      bg.color = colors[0];
      bg.color2 = colors[1];
      return bg;
    }
    if (to) fail("'to' in a background that is not a gradient");
    if (split) {
      if (colors.size() != 2) fail("a split background needs 'COLOR and COLOR' (left half, right half)");
      bg.kind = BackgroundKind::split;
      bg.color = colors[0];
      bg.color2 = colors[1];
      return bg;
    }
    if (colors.size() != 1) fail("a solid or textured background needs exactly one color");
    bg.kind = texture.value_or(BackgroundKind::solid);
    bg.color = bg.color2 = colors[0];
    return bg;
  }

  std::string text_;
  std::vector<std::string> tokens_;
  size_t pos_ = 0;
};

}  // namespace

std::string caption(const Scene& scene) {
  std::string text;
  for (size_t i = 0; i < scene.objects.size(); ++i) {
    if (i > 0) text += i + 1 == scene.objects.size() ? " and " : ", ";
    text += object_phrase(scene.objects[i]);
  }
  if (scene.background_stated) text += " on " + with_article(background_phrase(scene.background)) + " background";
  return text;
}

Scene parse_caption(const std::string& text) { return CaptionParser(text).parse(); }

}  // namespace sine::world
