// sine finetune / sine edit on the bundled shapes-world model: outputs, resume, metadata, bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "io/generation_parameters.h"
#include "io/image.h"
#include "io/safetensors.h"

using namespace sine::cli_test;

namespace {

const std::string kModel = std::string(SINE_SOURCE_DIR) + "/models/shapes-v3.safetensors";

class SineCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scratch_ = new Scratch("sine_cli");
    image_ = scratch_->path("scene.png");
    auto r = scratch_->sine("world render --caption 'a red circle on the left and a small blue square on the right on a "
                            "yellow background' -o " + quote(image_));
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete scratch_;
    scratch_ = nullptr;
  }
  static std::string model() { return "-m " + quote(kModel) + " "; }
  // One line on stderr, a non-zero exit, and no output file.
  static void expect_clean_failure(const std::string& args, const std::string& output, const std::string& needle) {
    auto r = scratch_->sine(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
    EXPECT_FALSE(fs::exists(output)) << output;
  }
  static Scratch* scratch_;
  static std::string image_;
};
Scratch* SineCli::scratch_ = nullptr;
std::string SineCli::image_;

// A bf16 model fine-tuned through fp32 masters with bf16 AdamW moments: the checkpoint keeps the
// masters in fp32 (what a resume continues from) and the moments in bf16.
TEST_F(SineCli, Bf16FinetuneKeepsFp32MastersAndBf16Moments) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no bundled model";
  const std::string out = scratch_->path("bf16.safetensors");
  auto r = scratch_->sine("finetune " + model() + "--dtype bf16 --optimizer-state bf16 -i " + quote(image_) +
                          " --class picture --steps 2 -o " + quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(fs::exists(out));
  sine::SafeTensors ckpt = sine::SafeTensors::open(out + ".ckpt");
  int64_t masters = 0, moments = 0;
  for (const auto& key : ckpt.keys()) {
    if (key.rfind("param.", 0) == 0) masters += ckpt.get(key).scalar_type() == torch::kFloat32;
    if (key.rfind("adamw.exp_avg", 0) == 0) moments += ckpt.get(key).scalar_type() == torch::kBFloat16;
  }
  EXPECT_GT(masters, 100);
  EXPECT_GT(moments, 200);
  EXPECT_NE(sine::SafeTensors::open(out + ".ckpt").metadata().at("sine.trainer.config").find("\"optimizer_state\":\"bf16\""),
            std::string::npos);
}

TEST_F(SineCli, FinetuneResumeEditAndSweep) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no bundled model";
  const std::string out = scratch_->path("patch.safetensors");
  auto r = scratch_->sine("finetune " + model() + "-i " + quote(image_) + " --class picture --patch --steps 3 -o " +
                          quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(fs::exists(out));
  auto meta = sine::SafeTensors::open(out).metadata();
  EXPECT_EQ(meta.at("sine.prompt"), "photo of a sks picture");
  EXPECT_EQ(meta.at("sine.mode"), "patch");
  EXPECT_EQ(meta.at("sine.steps"), "3");
  EXPECT_NE(meta.at("sine.grid").find("\"size\":32"), std::string::npos) << meta.at("sine.grid");
  EXPECT_EQ(meta.at("sine.base_size"), std::to_string(fs::file_size(kModel)));
  // Rerunning with more steps resumes the checkpoint instead of starting over.
  r = scratch_->sine("finetune " + model() + "-i " + quote(image_) + " --class picture --patch --steps 5 -o " +
                     quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming"), std::string::npos) << r.err;
  EXPECT_EQ(sine::SafeTensors::open(out).metadata().at("sine.steps"), "5");
  // Same checkpoint, another class: refused.
  expect_clean_failure("finetune " + model() + "-i " + quote(image_) + " --class dog --patch --steps 6 -o " +
                           quote(scratch_->path("other.safetensors")) + " --checkpoint " + quote(out + ".ckpt"),
                       scratch_->path("other.safetensors"), "another fine-tuning run");

  // Edit at 2x width (the grid stretched), parameters in the PNG.
  const std::string edit = scratch_->path("edit.png");
  r = scratch_->sine("edit --finetuned " + quote(out) + " -p 'a green circle on a yellow background' --steps 3 -W 128 -o " +
                     quote(edit));
  ASSERT_EQ(r.code, 0) << r.err;
  auto img = sine::read_image_rgb(edit);
  EXPECT_EQ(img.size(0), 64);
  EXPECT_EQ(img.size(1), 128);
  auto text = sine::read_png_text(edit);
  ASSERT_TRUE(text.count("parameters"));
  auto params = sine::GenerationParameters::parse(text.at("parameters"));  // A1111's format
  EXPECT_EQ(params.prompt, "a green circle on a yellow background");
  EXPECT_EQ(params.get("SINE v"), "0.7") << text.at("parameters");
  EXPECT_EQ(params.get("SINE K"), "400");
  EXPECT_EQ(params.get("SINE desc"), "photo of a sks picture");
  EXPECT_EQ(params.get("SINE finetune"), fs::path(out).filename().string());  // a name, not a path
  EXPECT_EQ(params.get("Size"), "128x64");
  EXPECT_EQ(text.at("parameters").find(scratch_->dir().string()), std::string::npos) << "a local path leaked";

  const std::string sweep = scratch_->path("sweep.png");
  r = scratch_->sine("edit --finetuned " + quote(out) + " -p 'a green circle' --steps 2 --sweep K=200,800 -o " +
                     quote(sweep));
  ASSERT_EQ(r.code, 0) << r.err;
  auto grid = sine::read_image_rgb(sweep);
  EXPECT_GT(grid.size(1), 2 * 64);  // two labelled cells side by side
  const auto swept = sine::GenerationParameters::parse(sine::read_png_text(sweep).at("parameters"));
  EXPECT_EQ(swept.get("SINE sweep"), "K=200,800");
  EXPECT_EQ(swept.get("SINE K"), "200,800");

  // Bad edit inputs.
  expect_clean_failure("edit --finetuned " + quote(out) + " -p x --v 1.5 -o " + quote(scratch_->path("a.png")),
                       scratch_->path("a.png"), "--v");
  expect_clean_failure("edit --finetuned " + quote(out) + " -p x --sweep z=1 -o " + quote(scratch_->path("b.png")),
                       scratch_->path("b.png"), "--sweep");
  expect_clean_failure("edit --finetuned " + quote(out) + " -p x -W 30 --steps 1 -o " + quote(scratch_->path("c.png")),
                       scratch_->path("c.png"), "--width: must be a multiple");
  expect_clean_failure("edit --finetuned " + quote(out) + " --beta 0.1,0.2 -p x -o " + quote(scratch_->path("d.png")),
                       scratch_->path("d.png"), "--beta");
}

TEST_F(SineCli, BadFinetuneAndEditInputs) {
  const std::string out = scratch_->path("bad.safetensors");
  expect_clean_failure("finetune " + model() + "-i " + quote(scratch_->path("missing.png")) + " --class x -o " + quote(out),
                       out, "missing.png");
  expect_clean_failure("finetune " + model() + "-i " + quote(image_) + " -o " + quote(out), out, "--class");
  expect_clean_failure("finetune " + model() + "-i " + quote(image_) + " --class x --template 'a sks' -o " + quote(out),
                       out, "{class}");
  expect_clean_failure("finetune " + model() + "-i " + quote(image_) + " --class x --grid-interp cubic -o " + quote(out),
                       out, "--grid-interp");
  expect_clean_failure("finetune " + model() + "-i " + quote(image_) + " --class x -o " + quote(scratch_->path("m.bin")),
                       scratch_->path("m.bin"), ".safetensors");
  const std::string png = scratch_->path("e.png");
  expect_clean_failure("edit -p x --finetuned " + quote(scratch_->path("nope.safetensors")) + " -o " + quote(png), png,
                       "does not exist");
  expect_clean_failure("edit -p x -o " + quote(png), png, "--finetuned");
  // A file that is not a SINE fine-tune (the base model itself).
  expect_clean_failure("edit -p x --finetuned " + quote(kModel) + " -o " + quote(png), png, "not a SINE fine-tune");
}

// bench-sine edits and judges the ★ LoRA fine-tune beside the full ones; --lora-rank 0 leaves it out.
TEST_F(SineCli, BenchSineJudgesTheLoRAVariant) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no bundled model";
  const std::string common = "--threads 1 world bench-sine " + model() +
                             "--scenes 1 --whole-steps 2 --patch-steps 2 --edit-steps 2 --no-sweeps --no-resize "
                             "--timing-steps 0 --grid-scenes 1 ";
  auto r = scratch_->sine(common + "--lora-rank 2 -o " + quote(scratch_->path("bs-lora")));
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(std::ifstream(scratch_->path("bs-lora/results.json")));
  const auto& rows = j["methods"]["rows"];
  ASSERT_TRUE(rows.contains("SINE (LoRA whole)")) << j["methods"].dump();
  ASSERT_TRUE(rows.contains("no guidance (LoRA whole)"));
  EXPECT_EQ(rows["SINE (LoRA whole)"]["edits"], rows["SINE (whole)"]["edits"]);
  EXPECT_EQ(rows["SINE (whole)"]["both"]["n"], rows["SINE (whole)"]["edits"]);  // rates carry their intervals
  EXPECT_EQ(j["methods"]["order"].size(), 7u);
  EXPECT_GT(j["finetune_seconds_per_step"]["lora_whole"].get<double>(), 0.0);
  EXPECT_EQ(j["options"]["lora_rank"], 2);
  EXPECT_NE(r.out.find("SINE (LoRA whole)"), std::string::npos);

  r = scratch_->sine(common + "--lora-rank 0 -o " + quote(scratch_->path("bs-full")));
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(std::ifstream(scratch_->path("bs-full/results.json")));
  EXPECT_FALSE(j["methods"]["rows"].contains("SINE (LoRA whole)"));
  EXPECT_EQ(j["methods"]["order"].size(), 5u);

  r = scratch_->sine(common + "--lora-rank -1 -o " + quote(scratch_->path("bs-bad")));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--lora-rank"), std::string::npos) << r.err;
}

}  // namespace
