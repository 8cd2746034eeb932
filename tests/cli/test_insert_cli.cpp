// `sine insert train|generate|export|import` end to end on the tiny reference model, and bad inputs.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "io/image.h"
#include "io/safetensors.h"

namespace sine::cli_test {
namespace {

std::string tiny_model() {
  return "-m " + quote(kTinyFile) + " --model-config " + quote(kTinyConfig) + " --tokenizer " + quote(kVocab);
}

// A 128 px image (the tiny model's size) and a mask of its center square.
void write_inputs(const Scratch& s) {
  torch::Tensor img = torch::full({128, 128, 3}, 30, torch::kUInt8);
  img.slice(0, 32, 96).slice(1, 32, 96).select(2, 0).fill_(250);
  write_png(s.path("img.png"), img);
  torch::Tensor mask = torch::zeros({128, 128, 3}, torch::kUInt8);
  mask.slice(0, 32, 96).slice(1, 32, 96).fill_(255);
  write_png(s.path("mask.png"), mask);
}

TEST(InsertCli, TrainGenerateExportImport) {
  Scratch s("sine_insert_cli");
  write_inputs(s);
  auto r = s.sine("--threads 1 insert train " + tiny_model() + " -i " + quote(s.path("img.png")) + " --mask " +
                  quote(s.path("mask.png")) + " --class cube --stage1-steps 2 --stage2-steps 2 --batch 1 -o " +
                  quote(s.path("c.safetensors")));
  ASSERT_EQ(r.code, 0) << r.err;
  auto concept = SafeTensors::open(s.path("c.safetensors"));
  EXPECT_TRUE(concept.contains("token_vector"));
  EXPECT_TRUE(concept.metadata().count("sine.concept"));

  r = s.sine("--threads 1 insert generate " + tiny_model() + " -c " + quote(s.path("c.safetensors")) +
             " -p '* cube, left side' --steps 2 -o " + quote(s.path("out.png")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_png_text(s.path("out.png")).count("parameters"), 1u);
  // Two concepts at once (the same file twice: tokens *1 and *2, LoRA deltas summed).
  r = s.sine("--threads 1 insert generate " + tiny_model() + " -c " + quote(s.path("c.safetensors")) + " -c " +
             quote(s.path("c.safetensors")) + " --scale 0.5 --scale 0.5 -p '*1 cube and *2 cube' --steps 2 -o " +
             quote(s.path("two.png")));
  ASSERT_EQ(r.code, 0) << r.err;

  for (const std::string format : {"kohya", "diffusers"}) {
    r = s.sine("--threads 1 insert export " + tiny_model() + " -c " + quote(s.path("c.safetensors")) + " --embedding " +
               quote(s.path("emb.safetensors")) + " --lora " + quote(s.path("lora.safetensors")) +
               " --lora-format " + format);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(SafeTensors::open(s.path("emb.safetensors")).contains("emb_params"));
    r = s.sine("--threads 1 insert import " + tiny_model() + " --embedding " + quote(s.path("emb.safetensors")) + " --lora " +
               quote(s.path("lora.safetensors")) + " --class cube -o " + quote(s.path("back.safetensors")));
    ASSERT_EQ(r.code, 0) << r.err;
    auto a = load_safetensors(s.path("c.safetensors")), b = load_safetensors(s.path("back.safetensors"));
    EXPECT_EQ(a.size(), b.size()) << format;
    EXPECT_TRUE(torch::equal(a.at("token_vector"), b.at("token_vector")));
    // Every LoRA tensor comes back under its own name with its values (stage II trained them).
    int64_t nonzero = 0;
    for (const auto& [key, value] : a) {
      ASSERT_TRUE(b.count(key)) << format << ": " << key << " lost";
      EXPECT_TRUE(torch::allclose(value.to(torch::kFloat32), b.at(key).to(torch::kFloat32), 0.0, 1e-6))
          << format << ": " << key;
      nonzero += key != "token_vector" && value.abs().max().item<double>() > 0;
    }
    EXPECT_GT(nonzero, 0) << format;
  }
}

TEST(InsertCli, BadInputsFailWithOneClearLine) {
  Scratch s("sine_insert_cli_bad");
  write_inputs(s);
  auto r = s.sine("--threads 1 insert train " + tiny_model() + " -i " + quote(s.path("missing.png")) + " --class cube");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("-i/--image"), std::string::npos) << r.err;
  r = s.sine("--threads 1 insert train " + tiny_model() + " -i " + quote(s.path("img.png")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--class"), std::string::npos) << r.err;
  r = s.sine("--threads 1 insert train " + tiny_model() + " -i " + quote(s.path("img.png")) + " --class cube --objective nope");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--objective"), std::string::npos) << r.err;
  r = s.sine("--threads 1 insert generate " + tiny_model() + " -c " + quote(s.path("img.png")) + " -p '* cube'");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("img.png"), std::string::npos) << r.err;
  r = s.sine("--threads 1 insert generate " + tiny_model() + " -p '* cube'");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--concept"), std::string::npos) << r.err;
  r = s.sine("--threads 1 insert export -c " + quote(s.path("nope.safetensors")) + " --embedding x.safetensors");
  EXPECT_EQ(r.code, 1);
  r = s.sine("--threads 1 insert import " + tiny_model() + " --embedding " + quote(s.path("img.png")) + " --class cube");
  EXPECT_EQ(r.code, 1);
  EXPECT_FALSE(fs::exists(s.path("concept.safetensors")));
  r = s.sine("world bench-insert --concepts 1");
  EXPECT_EQ(r.code, 1);
}

// bench-insert's oracle row alone (nothing trained) on 2 concepts, 1 seed, 2 steps, into s/bi.
CommandResult oracle_bench(const Scratch& s, const std::string& extra = "") {
  return s.sine("--threads 1 world bench-insert --concepts 2 --seeds 1 --steps 2 --variants oracle " + extra +
                " -o " + quote(s.path("bi")));
}

// The oracle row of bench-insert learns nothing: the concept is spelled out in words ("a pink dotted
// heart"), so its ESR is the ceiling the base model allows; every fidelity part is reported.
TEST(InsertCli, BenchInsertOracleNeedsNoTraining) {
  Scratch s("sine_insert_bench");
  auto r = oracle_bench(s);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(std::ifstream(s.path("bi/bench.json")));
  const auto& row = j["variants"]["oracle"];
  EXPECT_EQ(row["images"], 14);  // 2 concepts x 7 prompts (5 edits, 2 without a background) x 1 seed
  EXPECT_TRUE(row.contains("esr_interval") && row.contains("bg_distance"));
  EXPECT_EQ(row["seconds_per_concept"].get<double>(), 0.0);
  for (const char* k : {"fg_fidelity", "fg_color", "fg_shape", "fg_pattern"}) {
    ASSERT_TRUE(row.contains(k)) << k;
    EXPECT_GE(row[k].get<double>(), 0.0);
    EXPECT_LE(row[k].get<double>(), 1.0);
  }
  // Fidelity needs color, shape and pattern at once: it is at most each part alone.
  EXPECT_LE(row["fg_fidelity"].get<double>(), row["fg_color"].get<double>());
  EXPECT_LE(row["fg_fidelity"].get<double>(), row["fg_pattern"].get<double>());
  EXPECT_NE(r.out.find("| oracle |"), std::string::npos) << r.out;
  r = s.sine("world bench-insert --variants oracle,bogus");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("oracle"), std::string::npos) << r.err;
}

// --size: sources and samples on another square canvas; a size that is not a multiple of 8 is refused.
TEST(InsertCli, BenchInsertSizeSetsTheCanvas) {
  Scratch s("sine_insert_bench_size");
  auto r = oracle_bench(s, "--size 96");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(s.path("bi/bench.json")))["config"]["size"], 96);
  const torch::Tensor source = read_image_rgb(s.path("bi/source_0.png"));
  EXPECT_EQ(source.size(0), 96);
  EXPECT_EQ(source.size(1), 96);
  r = s.sine("world bench-insert --size 100");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--size: 100 is not a multiple of 8"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace sine::cli_test
