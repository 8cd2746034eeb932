// A1111's "parameters" text: written as AUTOMATIC1111 writes it, read back by a parser that follows
// its modules/infotext_utils.parse_generation_parameters.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "io/generation_parameters.h"
#include "io/model_hash.h"

namespace sine {
namespace {

// Written by AUTOMATIC1111 1.10 (txt2img, DPM++ 2M Karras), copied from its PNG Info.
const char* kA1111 =
    "a photo of an astronaut riding a horse, (masterpiece:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: \"detail: 62c6e3d3b0ee, style: a1b2c3\", "
    "Version: v1.10.1";

TEST(GenerationParameters, ParsesWhatA1111Writes) {
  auto p = GenerationParameters::parse(kA1111);
  EXPECT_EQ(p.prompt, "a photo of an astronaut riding a horse, (masterpiece:1.2)");
  EXPECT_EQ(p.negative_prompt, "blurry, lowres");
  EXPECT_EQ(p.get("Steps"), "20");
  EXPECT_EQ(p.get("Sampler"), "DPM++ 2M");
  EXPECT_EQ(p.get("Schedule type"), "Karras");
  EXPECT_EQ(p.get("CFG scale"), "7");
  EXPECT_EQ(p.get("Seed"), "1234567890");
  EXPECT_EQ(p.get("Size"), "512x768");
  EXPECT_EQ(p.get("Model hash"), "6ce0161689");
  EXPECT_EQ(p.get("Model"), "v1-5-pruned-emaonly");
  EXPECT_EQ(p.get("Lora hashes"), "detail: 62c6e3d3b0ee, style: a1b2c3");  // unquoted
  EXPECT_EQ(p.get("Version"), "v1.10.1");
  EXPECT_EQ(p.fields.size(), 10u);
}

TEST(GenerationParameters, FormatsInA1111sLayoutAndRoundTrips) {
  GenerationParameters p;
  p.prompt = "a red circle\non two lines";
  p.negative_prompt = "blue";
  p.set("Steps", 20).set("Sampler", "Euler a").set("CFG scale", 7.5).set("Seed", int64_t(42));
  p.set("Size", "64x64").set("SINE K", 400).set("SINE v", 0.7).set("Words", "cat: dog, red");
  p.set("CFG scale", 7.0);  // replaced in place
  EXPECT_EQ(p.format(),
            "a red circle\non two lines\nNegative prompt: blue\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 42, Size: 64x64, SINE K: 400, SINE v: 0.7, "
            "Words: \"cat: dog, red\"");
  auto back = GenerationParameters::parse(p.format());
  EXPECT_EQ(back.prompt, p.prompt);
  EXPECT_EQ(back.negative_prompt, p.negative_prompt);
  EXPECT_EQ(back.fields, p.fields);
}

TEST(GenerationParameters, NoNegativePromptAndTooFewFields) {
  GenerationParameters p;
  p.prompt = "cat";
  p.set("Steps", 2).set("Seed", 1).set("Size", "8x8");
  EXPECT_EQ(p.format(), "cat\nSteps: 2, Seed: 1, Size: 8x8");
  // A1111 needs three pairs on the last line to call it the fields line; otherwise it is prompt.
  auto q = GenerationParameters::parse("just a prompt\nSteps: 2");
  EXPECT_EQ(q.prompt, "just a prompt\nSteps: 2");
  EXPECT_TRUE(q.fields.empty());
}

TEST(GenerationParameters, PngTextHasTheA1111ChunkAndAJsonCopy) {
  GenerationParameters p;
  p.prompt = "cat";
  p.set("Steps", 2).set("Seed", 1).set("Size", "8x8");
  auto text = p.png_text();
  EXPECT_EQ(text.at("parameters"), p.format());
  auto j = nlohmann::json::parse(text.at("sine"));
  EXPECT_EQ(j["prompt"], "cat");
  EXPECT_EQ(j["Steps"], "2");
}

TEST(GenerationParameters, QuotesOnlyWhatA1111Quotes) {
  EXPECT_EQ(quote_parameter("Euler a"), "Euler a");
  EXPECT_EQ(quote_parameter("a, b"), "\"a, b\"");
  EXPECT_EQ(quote_parameter("k: v"), "\"k: v\"");
  EXPECT_EQ(quote_parameter("say \"hi\", ok"), "\"say \\\"hi\\\", ok\"");
}

TEST(ModelHash, DisplayNameDropsFolderAndExtension) {
  EXPECT_EQ(model_display_name("/models/v1-5-pruned-emaonly.safetensors"), "v1-5-pruned-emaonly");
  EXPECT_EQ(model_display_name("relative/shapes-v3.safetensors"), "shapes-v3");
}

TEST(ModelHash, Sha256OfAKnownFile) {
  const std::string path = testing::TempDir() + "/sine_hash_abc.txt";
  { std::ofstream(path) << "abc"; }
  EXPECT_EQ(sha256_file(path), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");  // FIPS 180-2 B.1
  setenv("XDG_CACHE_HOME", (testing::TempDir() + "/sine_hash_cache").c_str(), 1);
  EXPECT_EQ(model_short_hash(path), "ba7816bf8f");
  EXPECT_EQ(model_short_hash(path), "ba7816bf8f");  // from the cache
  std::remove(path.c_str());
}

}  // namespace
}  // namespace sine
