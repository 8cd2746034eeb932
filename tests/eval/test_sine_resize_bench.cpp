#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/progress.h"
#include "eval/sine_resize_bench.h"

namespace fs = std::filesystem;
using namespace sine;

// A rerun reads finished scenes back instead of recomputing them, and gives the same table; a
// different option recomputes. On the bundled model, one scene, one canvas, a step or two each.
TEST(SineResizeBench, RerunReusesFinishedScenesAndGivesTheSameTable) {
  set_progress_enabled(false);
  const fs::path dir = fs::temp_directory_path() / ("sine_test_resize_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  SineResizeBenchOptions o;
  o.scenes = 1;
  o.whole_steps = 1;
  o.patch_steps = {1, 2};
  o.edit_steps = 2;
  o.canvases = {{2.0, 1.0}};
  o.grid_scenes = 1;
  o.output_dir = dir.string();
  const nlohmann::json first = run_sine_resize_bench(o);
  const fs::path record = dir / "scenes" / "scene_0000.json";
  ASSERT_TRUE(fs::exists(record));
  const auto written = fs::last_write_time(record);
  const nlohmann::json again = run_sine_resize_bench(o);
  EXPECT_EQ(fs::last_write_time(record), written);  // read, not rewritten
  EXPECT_EQ(first["rows"], again["rows"]);
  EXPECT_EQ(first["claims"], again["claims"]);
  EXPECT_EQ(again["rows"].size(), 6u);  // whole x2, patch @1, patch, SINE patch, pre-trained
  o.edit_steps = 3;  // another run: the record no longer matches
  run_sine_resize_bench(o);
  EXPECT_NE(fs::last_write_time(record), written);
  fs::remove_all(dir);
}
