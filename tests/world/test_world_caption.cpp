#include <gtest/gtest.h>

#include "core/error.h"
#include "world/caption.h"
#include "world/scene.h"

using namespace sine::world;

namespace {

Object make(Shape shape, Color color, Pattern pattern, Size size, int cell) {
  Object o;
  o.shape = shape, o.color = color, o.pattern = pattern, o.size = size, o.grid_cell = cell;
  o.cx = kGridCenters[cell % 3], o.cy = kGridCenters[cell / 3];
  return o;
}

void expect_same(const Scene& a, const Scene& b) {
  ASSERT_EQ(a.objects.size(), b.objects.size());
  for (size_t i = 0; i < a.objects.size(); ++i) {
    EXPECT_EQ(a.objects[i].shape, b.objects[i].shape);
    EXPECT_EQ(a.objects[i].color, b.objects[i].color);
    EXPECT_EQ(a.objects[i].pattern, b.objects[i].pattern);
    EXPECT_EQ(a.objects[i].size, b.objects[i].size);
    EXPECT_EQ(a.objects[i].grid_cell, b.objects[i].grid_cell);
  }
  EXPECT_EQ(a.background_stated, b.background_stated);
  EXPECT_EQ(a.background.kind, b.background.kind);
  EXPECT_EQ(a.background.color, b.background.color);
  if (has_second_color(a.background.kind)) {
    EXPECT_EQ(a.background.color2, b.background.color2);
  }
}

}  // namespace

TEST(WorldCaption, FollowsTheConvention) {
  Scene s;
  s.objects = {make(Shape::star, Color::red, Pattern::striped, Size::small, 0),
               make(Shape::circle, Color::blue, Pattern::plain, Size::large, 4)};
  s.background = {BackgroundKind::solid, Color::yellow, Color::yellow};
  EXPECT_EQ(caption(s),
            "a small red striped star at the top left and a blue circle in the center on a yellow background");

  s.objects = {make(Shape::heart, Color::orange, Pattern::dotted, Size::large, 3),
               make(Shape::ring, Color::white, Pattern::plain, Size::small, 5),
               make(Shape::cross, Color::black, Pattern::striped, Size::large, 7)};
  s.background = {BackgroundKind::gradient, Color::blue, Color::green};
  EXPECT_EQ(caption(s),
            "an orange dotted heart on the left, a small white ring on the right and a black striped cross "
            "at the bottom on a blue to green gradient background");

  s.objects = {make(Shape::triangle, Color::pink, Pattern::plain, Size::large, 8)};
  s.background = {BackgroundKind::checkered, Color::gray, Color::gray};
  EXPECT_EQ(caption(s), "a pink triangle at the bottom right on a checkered gray background");
  s.background = {BackgroundKind::solid, Color::orange, Color::orange};
  EXPECT_EQ(caption(s), "a pink triangle at the bottom right on an orange background");

  const char* cells[] = {"at the top left", "at the top",         "at the top right",
                         "on the left",     "in the center",      "on the right",
                         "at the bottom left", "at the bottom", "at the bottom right"};
  for (int cell = 0; cell < kGridCells; ++cell) {
    s.objects = {make(Shape::square, Color::green, Pattern::plain, Size::large, cell)};
    EXPECT_EQ(caption(s), std::string("a green square ") + cells[cell] + " on an orange background");
  }
}

TEST(WorldCaption, TexturedAndSplitBackgrounds) {
  Scene s;
  s.objects = {make(Shape::heart, Color::red, Pattern::plain, Size::large, 4)};
  const std::pair<Background, const char*> cases[] = {
      {{BackgroundKind::striped, Color::blue, Color::blue}, "a red heart in the center on a striped blue background"},
      {{BackgroundKind::dotted, Color::gray, Color::gray}, "a red heart in the center on a dotted gray background"},
      {{BackgroundKind::noisy, Color::yellow, Color::yellow, 7}, "a red heart in the center on a noisy yellow background"},
      {{BackgroundKind::split, Color::orange, Color::blue}, "a red heart in the center on an orange and blue background"},
  };
  for (const auto& [bg, text] : cases) {
    s.background = bg;
    EXPECT_EQ(caption(s), text);
    expect_same(parse_caption(text), s);
  }
  EXPECT_EQ(parse_caption("a red star on a spotted blue background").background.kind, BackgroundKind::dotted);
  EXPECT_EQ(parse_caption("a red star on a blue and white split background").background.kind, BackgroundKind::split);
  EXPECT_THROW(parse_caption("a red star on a striped blue and white background"), sine::Error);
  EXPECT_THROW(parse_caption("a red star on a striped dotted blue background"), sine::Error);
  EXPECT_THROW(parse_caption("a red star on a blue and white and green background"), sine::Error);
}

TEST(WorldCaption, ParsesEveryGeneratedCaption) {
  std::mt19937_64 rng(99);
  SceneSampling free;
  free.grid_positions = false;
  for (int k = 0; k < 1000; ++k) {
    Scene s = sample_scene(rng, k % 3 == 2 ? with_textured_backgrounds() : k % 3 ? free : SceneSampling{});
    const std::string text = caption(s);
    Scene parsed = parse_caption(text);
    expect_same(parsed, s);
    EXPECT_EQ(caption(parsed), text);
    if (HasFailure()) {
      ADD_FAILURE() << text;
      return;
    }
  }
}

TEST(WorldCaption, ParsesLooserEditPrompts) {
  Scene a = parse_caption("a red star on a blue background");
  ASSERT_EQ(a.objects.size(), 1u);
  EXPECT_EQ(a.objects[0].color, Color::red);
  EXPECT_EQ(a.objects[0].shape, Shape::star);
  EXPECT_EQ(a.objects[0].pattern, Pattern::plain);
  EXPECT_EQ(a.objects[0].size, Size::large);
  EXPECT_EQ(a.objects[0].grid_cell, -1);  // unstated
  EXPECT_TRUE(a.background_stated);
  EXPECT_EQ(a.background.kind, BackgroundKind::solid);
  EXPECT_EQ(a.background.color, Color::blue);

  Scene b = parse_caption("A big Blue dotted heart in the upper left corner.");
  EXPECT_EQ(b.objects[0].grid_cell, 0);
  EXPECT_EQ(b.objects[0].pattern, Pattern::dotted);
  EXPECT_FALSE(b.background_stated);

  Scene c = parse_caption("grey ring in the middle, small striped yellow square to the right and a white cross");
  ASSERT_EQ(c.objects.size(), 3u);
  EXPECT_EQ(c.objects[0].color, Color::gray);
  EXPECT_EQ(c.objects[0].grid_cell, 4);
  EXPECT_EQ(c.objects[1].grid_cell, 5);
  EXPECT_EQ(c.objects[1].size, Size::small);
  EXPECT_EQ(c.objects[1].pattern, Pattern::striped);

  Scene d = parse_caption("a green circle at the lower right side on a solid black background");
  EXPECT_EQ(d.objects[0].grid_cell, 8);
  EXPECT_EQ(d.background.color, Color::black);
  Scene e = parse_caption("a pink heart on a checkerboard white background");
  EXPECT_EQ(e.background.kind, BackgroundKind::checkered);
  Scene f = parse_caption("a pink heart on a white checkered background");
  EXPECT_EQ(f.background.kind, BackgroundKind::checkered);
  EXPECT_EQ(f.background.color, Color::white);
}

TEST(WorldCaption, RejectsWhatItCannotCheck) {
  const char* bad[] = {
      "a red dragon",                                  // unknown shape
      "a photo of a red star",                         // unknown word
      "a star",                                        // no color
      "a red",                                         // no shape
      "a red blue star",                               // two colors
      "a small large red star",                        // two sizes
      "a red star on a red to blue background",        // 'to' without gradient
      "a red star on a red gradient background",       // gradient with one color
      "a red star on a blue background please",        // words after the background
      "a red star on a blue",                          // no 'background'
      "a red star at the top bottom",                  // contradiction
      "a red star at the",                             // no position words
      "a red star; a blue ring",                       // unexpected character
      "on a blue background",                          // no object
      "",
  };
  for (const char* text : bad) {
    try {
      parse_caption(text);
      ADD_FAILURE() << "accepted: '" << text << "'";
    } catch (const sine::Error& e) {
      EXPECT_NE(std::string(e.what()).find("caption '"), std::string::npos) << e.what();
    }
  }
}
