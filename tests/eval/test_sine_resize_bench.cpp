#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/progress.h"
#include "eval/sine_resize_bench.h"
#include "io/json_file.h"

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
  ASSERT_EQ(again["patch_steps_tests"].size(), 1u);  // 1 vs 2 steps, on the same case
  EXPECT_EQ(again["patch_steps_tests"][0]["a"], "fine-tuned alone, patch (grid) @1");
  o.edit_steps = 3;  // another run: the record no longer matches
  run_sine_resize_bench(o);
  EXPECT_NE(fs::last_write_time(record), written);
  fs::remove_all(dir);
}

// A finished scene is keyed by the model's content (its short hash), not by the path it was given:
// the same file under another name reuses the record, a record naming the model by a path that
// holds the same file (written before keys held the hash) is reused too.
TEST(SineResizeBench, TheSameModelUnderAnotherPathReusesFinishedScenes) {
  set_progress_enabled(false);
  const fs::path dir = fs::temp_directory_path() / ("sine_test_resize_path_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path shipped = fs::path(SINE_SOURCE_DIR) / "models" / "shapes-v3.safetensors";
  fs::copy_file(shipped, dir / "a.safetensors");
  SineResizeBenchOptions o;
  o.model.model = (dir / "a.safetensors").string();
  o.scenes = 1;
  o.whole_steps = 1;
  o.patch_steps = {1};
  o.edit_steps = 1;
  o.canvases = {{2.0, 1.0}};
  o.grid_scenes = 0;
  o.output_dir = (dir / "out").string();
  run_sine_resize_bench(o);
  const fs::path record = dir / "out" / "scenes" / "scene_0000.json";
  const auto written = fs::last_write_time(record);
  fs::rename(dir / "a.safetensors", dir / "b.safetensors");
  o.model.model = (dir / "b.safetensors").string();
  run_sine_resize_bench(o);
  EXPECT_EQ(fs::last_write_time(record), written);
  // A record from before: the key names the model by its path.
  nlohmann::json legacy = read_json_file(record.string());
  legacy["key"]["model"] = o.model.model;
  write_json_file(record.string(), legacy);
  const auto legacy_written = fs::last_write_time(record);
  run_sine_resize_bench(o);
  EXPECT_EQ(fs::last_write_time(record), legacy_written);
  fs::remove_all(dir);
}
