#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "io/image.h"

namespace fs = std::filesystem;

namespace {

// Exit status of `sine <args>`, output discarded.
int run_sine(const std::string& args) {
  const std::string command = std::string("\"") + SINE_BINARY + "\" " + args + " >/dev/null 2>&1";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class WorldCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sine_world_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

constexpr const char* kCaption = "a small red striped star at the top left and a blue circle in the center on a yellow background";

TEST_F(WorldCli, RenderedCaptionPassesItsOwnJudge) {
  const std::string image = (dir_ / "scene.png").string();
  ASSERT_EQ(run_sine("world render --caption \"" + std::string(kCaption) + "\" -W 128 -H 128 -o " + image), 0);
  ASSERT_TRUE(fs::exists(image));
  EXPECT_EQ(run_sine("world judge " + image + " --expect \"" + kCaption + "\""), 0);
  EXPECT_EQ(run_sine("world judge " + image + " --json --expect \"" + kCaption + "\""), 0);
}

TEST_F(WorldCli, JudgeFailsOnAWrongCaption) {
  const std::string image = (dir_ / "scene.png").string();
  ASSERT_EQ(run_sine("world render --caption \"" + std::string(kCaption) + "\" -o " + image), 0);
  EXPECT_EQ(run_sine("world judge " + image +
                     " --expect \"a green square in the center on a yellow background\""),
            1);
  EXPECT_EQ(run_sine("world judge " + image + " --expect \"" + kCaption + "\" --bogus-flag"), 2);
}

TEST_F(WorldCli, UnstatedPositionsArePlacedWithoutOverlap) {
  const std::string caption = "a red star and a blue circle and a small green square on a white background";
  const std::string image = (dir_ / "loose.png").string();
  ASSERT_EQ(run_sine("world render --caption \"" + caption + "\" -o " + image), 0);
  EXPECT_EQ(run_sine("world judge " + image + " --expect \"" + caption + "\""), 0);
}

TEST_F(WorldCli, RenderWritesCaptionsInPngTextAndJsonl) {
  const std::string image = (dir_ / "one.png").string();
  ASSERT_EQ(run_sine("world render --caption \"" + std::string(kCaption) + "\" -o " + image), 0);
  EXPECT_EQ(sine::read_png_text(image).at("caption"), kCaption);

  const fs::path out = dir_ / "many";
  ASSERT_EQ(run_sine("world render --count 3 --seed 7 -W 96 -H 64 --masks -o " + out.string()), 0);
  for (int i = 0; i < 3; ++i) {
    const std::string path = (out / ("scene_000" + std::to_string(i) + ".png")).string();
    ASSERT_TRUE(fs::exists(path)) << path;
    const std::string text = sine::read_png_text(path).at("caption");
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(sine::read_image_rgb(path).sizes(), (std::vector<int64_t>{64, 96, 3}));
    EXPECT_EQ(run_sine("world judge " + path + " --expect \"" + text + "\""), 0) << text;
  }
  EXPECT_TRUE(fs::exists(out / "scene_0000_mask0.png"));
  EXPECT_TRUE(fs::exists(out / "captions.jsonl"));
}

}  // namespace
