// A1111's prompt syntax: the examples of modules/prompt_parser.parse_prompt_attention's docstring,
// the chunking of sd_hijack_clip (75 tokens, BREAK, comma backtrack) and the emphasis rescale.
#include <gtest/gtest.h>

#include "core/error.h"
#include "pipeline/pipeline.h"
#include "pipeline/prompt_syntax.h"

namespace sine {
namespace {

void expect_parsed(const std::string& prompt, const std::vector<WeightedText>& expected) {
  const auto got = parse_prompt_attention(prompt);
  ASSERT_EQ(got.size(), expected.size()) << prompt;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].text, expected[i].text) << prompt << " #" << i;
    EXPECT_NEAR(got[i].weight, expected[i].weight, 1e-12) << prompt << " #" << i;
  }
}

TEST(PromptSyntax, A1111DocstringExamples) {
  expect_parsed("normal text", {{"normal text", 1.0}});
  expect_parsed("an (important) word", {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}});
  expect_parsed("(unbalanced", {{"unbalanced", 1.1}});
  expect_parsed("\\(literal\\]", {{"(literal]", 1.0}});
  expect_parsed("(unnecessary)(parens)", {{"unnecessaryparens", 1.1}});
  expect_parsed("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
                {{"a ", 1.0},
                 {"house", 1.5730000000000004},
                 {" ", 1.1},
                 {"on", 1.0},
                 {" a ", 1.1},
                 {"hill", 0.55},
                 {", sun, ", 1.1},
                 {"sky", 1.4641000000000006},
                 {".", 1.1}});
}

TEST(PromptSyntax, BreakSplitsAndEmptyPromptIsOneEmptyRun) {
  expect_parsed("", {{"", 1.0}});
  expect_parsed("a cat BREAK a dog", {{"a cat", 1.0}, {"BREAK", -1}, {"a dog", 1.0}});
  expect_parsed("BREAKFAST", {{"BREAKFAST", 1.0}});
}

TEST(PromptSyntax, ExtraNetworksAreTakenOutOfThePrompt) {
  auto e = extract_extra_networks("a cat <lora:detail:0.6> on a mat <lora:style:0.8:0.5> <hypernet:x:1>");
  EXPECT_EQ(e.prompt, "a cat  on a mat  ");
  ASSERT_EQ(e.loras.size(), 2u);
  EXPECT_EQ(e.loras[0].name, "detail");
  EXPECT_DOUBLE_EQ(e.loras[0].te_multiplier, 0.6);
  EXPECT_DOUBLE_EQ(e.loras[0].unet_multiplier, 0.6);
  EXPECT_DOUBLE_EQ(e.loras[1].te_multiplier, 0.8);
  EXPECT_DOUBLE_EQ(e.loras[1].unet_multiplier, 0.5);
  ASSERT_EQ(e.unsupported.size(), 1u);
  EXPECT_THROW(extract_extra_networks("<lora:x:abc>"), Error);
}

// One BPE token per character, so the chunk arithmetic is visible.
std::vector<int64_t> char_tokens(const std::string& s) {
  std::vector<int64_t> out;
  for (char c : s)
    if (c != ' ') out.push_back(c == ',' ? 267 : 1000 + c);
  return out;
}

TEST(PromptSyntax, ChunksOf75TokensWithSotEotAndWeights) {
  auto chunks = chunk_prompt(parse_prompt_attention("ab (c:1.5)"), char_tokens);
  ASSERT_EQ(chunks.size(), 1u);
  ASSERT_EQ(chunks[0].tokens.size(), 77u);
  EXPECT_EQ(chunks[0].tokens[0], 49406);
  EXPECT_EQ(chunks[0].tokens[1], 1000 + 'a');
  EXPECT_EQ(chunks[0].tokens[3], 1000 + 'c');
  EXPECT_EQ(chunks[0].tokens[4], 49407);
  EXPECT_EQ(chunks[0].tokens[76], 49407);
  EXPECT_DOUBLE_EQ(chunks[0].multipliers[3], 1.5);
  EXPECT_DOUBLE_EQ(chunks[0].multipliers[0], 1.0);
  // 80 tokens: two chunks; BREAK: a new chunk at once.
  EXPECT_EQ(chunk_prompt(parse_prompt_attention(std::string(80, 'x')), char_tokens).size(), 2u);
  EXPECT_EQ(chunk_prompt(parse_prompt_attention("a BREAK b"), char_tokens).size(), 2u);
}

TEST(PromptSyntax, EmphasisScalesThenRestoresTheMean) {
  auto z = torch::rand({1, 4, 3}) + 0.5;
  auto m = torch::tensor({{1.0, 1.5, 1.0, 0.5}});
  auto out = apply_emphasis(z, m);
  EXPECT_NEAR(out.mean().item<double>(), z.mean().item<double>(), 1e-6);
  auto expected = z * m.unsqueeze(-1).to(z.dtype());
  expected = expected * (z.mean() / expected.mean());
  EXPECT_TRUE(torch::allclose(out, expected, 1e-6, 1e-6));
}

const std::string kShared = SINE_SHARED_DIR;

Pipeline& tiny() {
  static Pipeline pipe = [] {
    LoadOptions o;
    o.model = kShared + "/reference/tiny/tiny_sd15_original.safetensors";
    o.config_json = kShared + "/reference/tiny/tiny_config.json";
    o.tokenizer = kShared + "/data/clip/bpe_simple_vocab_16e6.txt.gz";
    return Pipeline::load(o);
  }();
  return pipe;
}

TEST(WeightedPrompt, WithoutSyntaxItEncodesAsTheLiteralPrompt) {
  auto& pipe = tiny();
  EXPECT_TRUE(torch::equal(pipe.encode_weighted_prompt("a red circle, big"), pipe.encode_prompt("a red circle, big")));
  EXPECT_TRUE(torch::equal(pipe.encode_weighted_prompt(""), pipe.encode_prompt("")));
}

// "(circle:1.5)" by hand, as A1111's sd_hijack_clip does it: encode the tokens of "a circle",
// multiply the hidden state of "circle" by 1.5, rescale everything to the original mean.
TEST(WeightedPrompt, EmphasisIsA1111sScaleThenRestoreTheMean) {
  auto& pipe = tiny();
  torch::NoGradGuard no_grad;
  auto z = pipe.encode_prompt("a circle");  // [SOT, a, circle, EOT, ...]
  auto m = torch::ones({1, 77, 1});
  m[0][2][0] = 1.5;
  auto weighted = z * m;
  auto expected = weighted * (z.mean() / weighted.mean());
  auto got = pipe.encode_weighted_prompt("a (circle:1.5)");
  EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5);
  EXPECT_GT((got - z).abs().max().item<double>(), 1e-3);
}

TEST(WeightedPrompt, LongPromptsAndBreakMakeMoreChunksAndGenerate) {
  auto& pipe = tiny();
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "red circle ";
  EXPECT_EQ(pipe.encode_weighted_prompt(long_prompt).size(1), 154);
  EXPECT_EQ(pipe.encode_weighted_prompt("a cat BREAK a dog").size(1), 154);
  GenerateOptions g;
  g.prompt = long_prompt;  // two chunks against a one-chunk negative prompt: padded for CFG
  g.prompt_syntax = true;
  g.steps = 2;
  g.width = g.height = 64;
  auto image = pipe.generate(g);
  EXPECT_EQ(image.size(0), 64);
  g.prompt = "<lora:style:0.8> a cat";
  try {
    pipe.generate(g);
    ADD_FAILURE() << "a <lora:> tag without a LoRA folder was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<lora:style>"), std::string::npos) << e.what();
  }
  // The tags are handed over and withdrawn after sampling.
  std::vector<std::vector<LoraReference>> calls;
  g.apply_loras = [&](const std::vector<LoraReference>& tags) { calls.push_back(tags); };
  pipe.generate(g);
  ASSERT_EQ(calls.size(), 2u);
  ASSERT_EQ(calls[0].size(), 1u);
  EXPECT_EQ(calls[0][0].name, "style");
  EXPECT_DOUBLE_EQ(calls[0][0].te_multiplier, 0.8);
  EXPECT_TRUE(calls[1].empty());
}

}  // namespace
}  // namespace sine
