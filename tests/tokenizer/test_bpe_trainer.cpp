#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "core/error.h"
#include "tokenizer/bpe_trainer.h"

namespace fs = std::filesystem;

namespace {

// Captions in the style of the shapes world.
std::vector<std::string> shape_captions(int n) {
  const std::vector<std::string> colors = {"red", "green", "blue", "yellow", "purple", "orange", "white", "black"};
  const std::vector<std::string> shapes = {"circle", "square", "triangle", "star", "heart", "ring", "cross"};
  const std::vector<std::string> patterns = {"plain", "striped", "dotted"};
  const std::vector<std::string> sizes = {"small", "large", ""};
  std::mt19937 rng(7);
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    std::string caption = "a " + pick(sizes) + " " + pick(colors) + " " + pick(patterns) + " " + pick(shapes);
    if (rng() % 2) caption += " and a " + pick(colors) + " " + pick(shapes);
    out.push_back(caption + " on a " + pick(colors) + " background");
  }
  return out;
}

}  // namespace

TEST(BpeTrainer, CommonWordsBecomeSingleTokensInClipLayout) {
  auto corpus = shape_captions(400);
  sine::ClipTokenizer tok = sine::train_bpe(corpus, 150);
  const int64_t merges = static_cast<int64_t>(tok.merges().size());
  EXPECT_GT(merges, 30);
  EXPECT_LE(merges, 150);
  EXPECT_EQ(tok.vocab_size(), 512 + merges + 2);
  EXPECT_EQ(tok.sot_id(), 512 + merges);
  EXPECT_EQ(tok.eot_id(), 512 + merges + 1);
  EXPECT_EQ(tok.token_id("a</w>"), 256 + ('a' - '!'));  // byte symbols keep CLIP's ids
  for (const char* word : {"circle", "triangle", "background", "striped", "yellow", "and", "on"}) {
    auto ids = tok.bpe_ids(word);
    EXPECT_EQ(ids.size(), 1u) << word;
    EXPECT_EQ(tok.token_id(std::string(word) + "</w>"), ids[0]) << word;
  }
  EXPECT_GT(tok.bpe_ids("zebra").size(), 1u);  // unseen words fall back to smaller pieces
  auto ids = tok.encode("A red striped star and a small blue circle on a yellow background");
  EXPECT_EQ(ids[0], tok.sot_id());
  EXPECT_EQ(tok.decode(tok.bpe_ids("a red star")), "a red star ");
}

TEST(BpeTrainer, IsDeterministicAndRoundTripsThroughFiles) {
  auto corpus = shape_captions(200);
  sine::ClipTokenizer a = sine::train_bpe(corpus, 80), b = sine::train_bpe(corpus, 80);
  EXPECT_EQ(a.merges(), b.merges());

  fs::path dir = fs::temp_directory_path() / ("sine_bpe_train_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  a.save_vocab_merges(dir.string());
  sine::ClipTokenizer loaded = sine::ClipTokenizer::from_dir(dir.string());
  sine::ClipTokenizer from_text = sine::ClipTokenizer::from_strings(a.vocab_json_text(), a.merges_txt_text());
  EXPECT_EQ(loaded.vocab_size(), a.vocab_size());
  EXPECT_EQ(loaded.merges(), a.merges());
  for (const auto& caption : shape_captions(50)) {
    EXPECT_EQ(loaded.encode(caption), a.encode(caption)) << caption;
    EXPECT_EQ(from_text.encode(caption), a.encode(caption)) << caption;
  }
  fs::remove_all(dir);
}

TEST(BpeTrainer, EdgeCases) {
  EXPECT_EQ(sine::train_bpe({}, 10).vocab_size(), 514);
  // "a a", then "a a</w>", then "aa aa</w>": the word is one token and nothing is left to merge.
  auto aaaa = sine::train_bpe({"aaaa aaaa"}, 100);
  EXPECT_EQ(aaaa.merges().size(), 3u);
  EXPECT_EQ(aaaa.bpe_ids("aaaa"), (std::vector<int64_t>{512 + 2}));
  EXPECT_THROW(sine::train_bpe({"x"}, -1), sine::Error);
}
