// sine invert / p2p / specref on the bundled model (a few steps), and their bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <nlohmann/json.hpp>

#include "../cli/cli_test_util.h"
#include "io/safetensors.h"

namespace sine {
namespace {

using cli_test::quote;
using cli_test::Scratch;

const std::string kSource = "a red circle in the center on a white background";
const std::string kTarget = "a blue star in the center on a white background";
const std::string kRef = "a blue star in the center on a yellow background";

class SpecRefCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::setenv("SINE_THREADS", "1", 1);  // shared test machine: one thread avoids spin contention
    scratch_ = new Scratch("specref_cli");
    ASSERT_EQ(scratch_->sine("world render --caption " + quote(kSource) + " -o " + quote(src())).code, 0);
    ASSERT_EQ(scratch_->sine("world render --caption " + quote(kRef) + " -o " + quote(ref())).code, 0);
  }
  static void TearDownTestSuite() {
    delete scratch_;
    scratch_ = nullptr;
  }
  static std::string src() { return scratch_->path("src.png"); }
  static std::string ref() { return scratch_->path("ref.png"); }
  static Scratch* scratch_;

  // Exit 1, one stderr line naming `flag`, and no output file.
  void expect_error(const std::string& args, const std::string& flag, const std::string& output) {
    auto r = scratch_->sine(args);
    EXPECT_EQ(r.code, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(flag), std::string::npos) << r.err;
    EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(cli_test::fs::exists(output)) << output;
  }
};
Scratch* SpecRefCli::scratch_ = nullptr;

TEST_F(SpecRefCli, BadInputsGiveOneLineAndNoOutput) {
  const std::string out = scratch_->path("bad.png");
  const std::string head = "specref " + quote(src()) + " " + quote(ref()) + " -p " + quote(kSource) + " --target " +
                           quote(kTarget) + " --steps 3 -o " + quote(out);
  const std::string base = head + " --sr-start 1 --sr-end 3";
  expect_error(base, "--words", out);
  expect_error(base + " --words star --masks half", "--masks", out);
  expect_error(base + " --words dragon", "dragon", out);
  expect_error(base + " --words star --ref-mask " + quote(scratch_->path("missing.png")), "missing.png", out);
  expect_error("specref " + quote(scratch_->path("nope.png")) + " " + quote(ref()) + " -p a --target b --words b -o " +
                   quote(out),
               "nope.png", out);
  expect_error(head + " --words star --sr-start 3 --sr-end 2", "--sr-start", out);
  const std::string inv = scratch_->path("bad.safetensors");
  expect_error("invert " + quote(src()) + " -p " + quote(kSource) + " -o " + quote(scratch_->path("x.png")), "--output",
               scratch_->path("x.png"));
  expect_error("invert " + quote(src()) + " -o " + quote(inv), "--prompt", inv);
  expect_error("invert " + quote(src()) + " -p a --schedule cosine -o " + quote(inv), "--schedule", inv);
  expect_error("p2p " + quote(src()) + " -p " + quote(kSource) + " --target " + quote(kTarget) + " --edit swirl -o " +
                   quote(out),
               "--edit", out);
  expect_error("p2p " + quote(src()) + " -p " + quote(kSource) + " --target " + quote("a blue big star") +
                   " --edit replace --steps 2 -o " + quote(out),
               "same number of words", out);
}

TEST_F(SpecRefCli, InvertP2PAndSpecRefRun) {
  const std::string inv = scratch_->path("inv.safetensors");
  auto r = scratch_->sine("invert " + quote(src()) + " -p " + quote(kSource) + " --steps 4 --null-text --inner-steps 10 -o " +
                          quote(inv));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("guidance 1: PSNR"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("null-text inversion"), std::string::npos) << r.out;
  // The numbers, not only the words: inversion at guidance 1 rebuilds the image near the VAE's own
  // round trip, and null-text inversion repairs most of what guidance 7.5 loses.
  auto psnr_after = [&](const std::string& label) {
    const auto at = r.out.find(label);
    EXPECT_NE(at, std::string::npos) << label << "\n" << r.out;
    return at == std::string::npos ? 0.0 : std::stod(r.out.substr(at + label.size()));
  };
  const double vae = psnr_after("VAE round trip PSNR "), g1 = psnr_after("at guidance 1: PSNR ");
  const double g = psnr_after("at guidance 7.5: PSNR "), nt = psnr_after("steps), reconstruction at guidance 7.5: PSNR ");
  EXPECT_GT(vae, 25.0);
  EXPECT_GT(g1, vae - 6.0);
  EXPECT_LT(g, g1 - 5.0);
  EXPECT_GT(nt, g + 5.0);  // 10 Adam steps per step, as the notebook (2 are too few to gain)
  auto st = SafeTensors::open(inv);
  EXPECT_EQ(st.info("latents").shape, (std::vector<int64_t>{5, 4, 16, 16}));
  EXPECT_EQ(st.info("null_embeddings").shape[0], 4);
  EXPECT_EQ(st.metadata().at("prompt"), kSource);
  EXPECT_EQ(st.metadata().at("schedule"), "null-text");

  const std::string edit = scratch_->path("p2p.png");
  r = scratch_->sine("p2p " + quote(src()) + " -p " + quote(kSource) + " --target " + quote(kTarget) +
                     " --steps 4 --inversion " + quote(inv) + " --blend -o " + quote(edit));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("null-text embeddings"), std::string::npos) << r.out;
  EXPECT_TRUE(cli_test::fs::exists(edit));
  EXPECT_TRUE(cli_test::fs::exists(scratch_->path("p2p_grid.png")));

  const std::string out = scratch_->path("sr.png");
  r = scratch_->sine("specref " + quote(src()) + " " + quote(ref()) + " -p " + quote(kSource) + " --target " +
                     quote(kTarget) + " --words star --steps 4 --sr-start 1 --sr-end 4 -o " + quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("K/V cache"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("derived from the reference's cross-attention"), std::string::npos) << r.out;
  EXPECT_TRUE(cli_test::fs::exists(out));
  EXPECT_TRUE(cli_test::fs::exists(scratch_->path("sr_grid.png")));

  // M_s from a cut-out (the reference's object on black) with the M_t-only ablation switch off.
  const std::string cut_dir = scratch_->path("cut.png");
  ASSERT_EQ(scratch_->sine("world render --caption " + quote("a blue star in the center on a black background") +
                           " -o " + quote(cut_dir)).code, 0);
  const std::string out2 = scratch_->path("sr_cut.png");
  r = scratch_->sine("specref " + quote(src()) + " " + quote(ref()) + " -p " + quote(kSource) + " --target " +
                     quote(kTarget) + " --words star --ref-cutout " + quote(cut_dir) +
                     " --masks ms --steps 3 --sr-start 1 --sr-end 3 -o " + quote(out2));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("derived"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("masks: ms"), std::string::npos) << r.out;
  EXPECT_TRUE(cli_test::fs::exists(out2));
}

// `sine world bench-specref`: every edit judged on the same pairs, one table in the console and in
// summary.json (rates with intervals), and the paired M_s claim.
TEST_F(SpecRefCli, BenchJudgesEveryEditOnTheSamePairs) {
  const std::string dir = scratch_->path("bench");
  auto r = scratch_->sine("world bench-specref --pairs 2 --steps 4 --null-text-pairs 1 --inner-steps 2 -o " + quote(dir));
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream f(dir + "/summary.json");
  auto j = nlohmann::json::parse(f);
  const std::vector<std::string> rows{"p2p swap", "specref", "ms_only", "mt_only", "neither", "derived_ms"};
  EXPECT_EQ(j["edits"]["order"].get<std::vector<std::string>>(), rows);
  for (const auto& name : rows) {
    const auto& row = j["edits"]["rows"][name];
    EXPECT_EQ(row["success"]["n"], 2) << name;
    EXPECT_LE(row["success"]["low"].get<double>(), row["success"]["rate"].get<double>()) << name;
    EXPECT_NE(r.out.find("  " + name + " "), std::string::npos) << name << "\n" << r.out;
  }
  EXPECT_EQ(j["per_pair"].size(), 2u);
  EXPECT_TRUE(j["per_pair"][0].contains("psnr_null_text_cfg"));
  EXPECT_FALSE(j["per_pair"][1].contains("psnr_null_text_cfg"));
  EXPECT_EQ(j["inversion"]["null_text_pairs"], 1);
  EXPECT_TRUE(j.contains("claim_ms_leak") && j.contains("claim_ms_success") && j.contains("claim_ms_leak_named"));
  for (const auto& name : {"p2p", "specref", "mt_only"}) {
    const double named = j["per_pair"][0][name]["named_bg_leak"].get<double>();
    EXPECT_TRUE(named >= 0 && named <= 1) << name << " " << named;
  }
  EXPECT_TRUE(cli_test::fs::exists(dir + "/pair_01.png"));
}

// --unnamed-appearance: the target prompt names the reference object's shape only (its color and
// pattern must come from the reference), so it is the source caption less the object's color word.
TEST_F(SpecRefCli, BenchUnnamedAppearanceDropsTheColorAndPatternWords) {
  const std::string dir = scratch_->path("bench-unnamed");
  auto r = scratch_->sine("world bench-specref --pairs 2 --steps 2 --null-text-pairs 0 --no-ablations "
                          "--textured-references --unnamed-appearance -o " + quote(dir));
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream f(dir + "/summary.json");
  auto j = nlohmann::json::parse(f);
  EXPECT_TRUE(j["unnamed_appearance"].get<bool>());
  auto words = [](const std::string& text) {
    std::istringstream in(text);
    return std::vector<std::string>(std::istream_iterator<std::string>(in), std::istream_iterator<std::string>());
  };
  for (const auto& pair : j["per_pair"]) {
    const auto source = words(pair["source"].get<std::string>()), target = words(pair["target"].get<std::string>());
    EXPECT_EQ(target.size() + 1, source.size()) << pair["source"] << " -> " << pair["target"];
    EXPECT_TRUE(target[0] == "a" || target[0] == "an") << pair["target"];
  }
}

// --size: the pairs on another square canvas (here 1.5x the model's 64 px): every attention layer
// then has 2.25x the tokens, so the reference K/V cache grows by exactly that; a bad size is refused.
TEST_F(SpecRefCli, BenchSizeSetsTheCanvasOfThePairs) {
  auto cache_bytes = [&](const std::string& size_flag, const std::string& name) {
    const std::string dir = scratch_->path(name);
    auto r = scratch_->sine("world bench-specref --pairs 1 --steps 2 --null-text-pairs 0 --no-ablations " + size_flag +
                            " -o " + quote(dir));
    EXPECT_EQ(r.code, 0) << r.err;
    std::ifstream f(dir + "/summary.json");
    return nlohmann::json::parse(f)["kv_cache_bytes"].get<double>();
  };
  const double native = cache_bytes("", "bench-native"), large = cache_bytes("--size 96", "bench-96");
  EXPECT_DOUBLE_EQ(large / native, 2.25);
  auto bad = scratch_->sine("world bench-specref --pairs 1 --size 100");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("--size: 100 is not a multiple of 8"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace sine
