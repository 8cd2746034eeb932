#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "tokenizer/clip_tokenizer.h"
#include "tokenizer/text_clean.h"

namespace fs = std::filesystem;
using sine::ClipTokenizer;

namespace {

const std::string kShared = SINE_SHARED_DIR;
const std::string kVocabGz = kShared + "/data/clip/bpe_simple_vocab_16e6.txt.gz";

const ClipTokenizer& clip() {
  static const ClipTokenizer tok = ClipTokenizer::from_bpe_gz(kVocabGz);
  return tok;
}

struct Case {
  std::string prompt, normalized, category;
  std::vector<int64_t> ids, bpe;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = [] {
    std::vector<Case> out;
    std::ifstream in(kShared + "/reference/clip_tokenizer_cases.jsonl");
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line);
      out.push_back({j["prompt"], j["normalized"], j["category"], j["ids"], j["bpe"]});
    }
    return out;
  }();
  return all;
}

fs::path fresh_temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("sine_tok_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const sine::Error& e) {
    return e.what();
  }
  return "(no sine::Error)";
}

}  // namespace

TEST(ClipTokenizer, VocabularyLayout) {
  EXPECT_EQ(clip().vocab_size(), 49408);
  EXPECT_EQ(clip().sot_id(), 49406);
  EXPECT_EQ(clip().eot_id(), 49407);
  EXPECT_EQ(clip().token_id("!"), 0);
  EXPECT_EQ(clip().token_id("!</w>"), 256);
  EXPECT_TRUE(clip().token_id("sks</w>").has_value());
  EXPECT_FALSE(clip().token_id("notatoken</w>").has_value());
}

TEST(ClipTokenizer, MatchesAllReferenceCases) {
  ASSERT_EQ(cases().size(), 201u);
  std::map<std::string, std::pair<int, int>> per_category;  // passed, total
  std::vector<std::string> failures;
  for (const Case& c : cases()) {
    std::string normalized = sine::clip_clean_text(c.prompt);
    std::vector<int64_t> ids = clip().encode(c.prompt);
    std::vector<int64_t> bpe = clip().bpe_ids(c.prompt);
    bool ok = normalized == c.normalized && ids == c.ids && bpe == c.bpe;
    auto& [passed, total] = per_category[c.category];
    passed += ok;
    ++total;
    if (!ok) failures.push_back(c.category + ": " + nlohmann::json(c.prompt).dump() + " normalized to " +
                                nlohmann::json(normalized).dump() + ", expected " + nlohmann::json(c.normalized).dump());
  }
  int passed_all = 0;
  for (const auto& [category, counts] : per_category) {
    std::printf("  %-14s %3d / %3d\n", category.c_str(), counts.first, counts.second);
    passed_all += counts.first;
  }
  std::printf("  %-14s %3d / %3zu\n", "all", passed_all, cases().size());
  for (const auto& f : failures) ADD_FAILURE() << f;
}

TEST(ClipTokenizer, SdConventionTruncatesAndPadsWithEot) {
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "cat ";
  auto ids = clip().encode(long_prompt);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), 49406);
  EXPECT_EQ(ids.back(), 49407);
  EXPECT_EQ(ids[75], *clip().token_id("cat</w>"));
  auto empty = clip().encode("");
  EXPECT_EQ(empty[0], 49406);
  for (size_t i = 1; i < empty.size(); ++i) EXPECT_EQ(empty[i], 49407);
  auto short_ids = clip().encode("a cat", 8);
  EXPECT_EQ(short_ids.size(), 8u);
  EXPECT_THROW(clip().encode("a cat", 1), sine::Error);
}

TEST(ClipTokenizer, EncodeBatchIsInt64Rows) {
  auto t = clip().encode_batch({"a photograph of an astronaut riding a horse", ""});
  EXPECT_EQ(t.scalar_type(), torch::kLong);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 77}));
  auto row0 = clip().encode("a photograph of an astronaut riding a horse");
  for (int i = 0; i < 77; ++i) EXPECT_EQ(t[0][i].item<int64_t>(), row0[i]);
}

TEST(ClipTokenizer, BothFileFormatsGiveIdenticalIds) {
  fs::path dir = fresh_temp_dir("formats");
  clip().save_vocab_merges(dir.string());
  ClipTokenizer from_files = ClipTokenizer::from_vocab_merges((dir / "vocab.json").string(), (dir / "merges.txt").string());
  ClipTokenizer from_folder = ClipTokenizer::from_dir(dir.string());
  EXPECT_EQ(from_files.vocab_size(), 49408);
  EXPECT_EQ(from_files.merges(), clip().merges());
  for (const Case& c : cases()) {
    EXPECT_EQ(from_files.encode(c.prompt), c.ids) << c.prompt;
    EXPECT_EQ(from_folder.bpe_ids(c.prompt), c.bpe) << c.prompt;
  }
  fs::path gz_dir = fresh_temp_dir("gzdir");
  fs::copy_file(kVocabGz, gz_dir / "bpe_simple_vocab_16e6.txt.gz");
  EXPECT_EQ(ClipTokenizer::from_dir(gz_dir.string()).encode("a red cube"), clip().encode("a red cube"));
  fs::path model_dir = fresh_temp_dir("model");
  clip().save_vocab_merges((model_dir / "tokenizer").string());
  EXPECT_EQ(ClipTokenizer::from_dir(model_dir.string()).encode("a red cube"), clip().encode("a red cube"));
  fs::remove_all(dir);
  fs::remove_all(gz_dir);
  fs::remove_all(model_dir);
}

TEST(ClipTokenizer, WordTokenIndices) {
  // "a photo of a cat": SOT a photo of a cat -> cat is position 5.
  EXPECT_EQ(clip().word_token_indices("a photo of a cat", "cat"), (std::vector<int64_t>{5}));
  EXPECT_EQ(clip().word_token_indices("A cat and a CAT.", "Cat"), (std::vector<int64_t>{2, 5}));
  // A word of several BPE tokens gives all of them.
  std::string prompt = "a supercalifragilisticexpialidocious dog";
  size_t n = clip().bpe_ids("supercalifragilisticexpialidocious").size();
  ASSERT_GT(n, 1u);
  auto idx = clip().word_token_indices(prompt, "supercalifragilisticexpialidocious");
  ASSERT_EQ(idx.size(), n);
  for (size_t k = 0; k < n; ++k) EXPECT_EQ(idx[k], int64_t(2 + k));
  EXPECT_EQ(clip().word_token_indices(prompt, "dog"), (std::vector<int64_t>{int64_t(2 + n)}));
  // Several words, and words that are not whole pieces of the prompt.
  EXPECT_EQ(clip().word_token_indices("a teddy bear on a bed", "teddy bear"), (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(clip().word_token_indices("a category", "cat").empty());
  EXPECT_TRUE(clip().word_token_indices("a dog", "cat").empty());
  std::string long_prompt;
  for (int i = 0; i < 80; ++i) long_prompt += "dog ";
  EXPECT_TRUE(clip().word_token_indices(long_prompt + "cat", "cat").empty());
}

TEST(ClipTokenizer, DecodeInvertsEncode) {
  EXPECT_EQ(clip().decode(clip().bpe_ids("a photo of a café, 🐱!")), "a photo of a café , 🐱! ");
  EXPECT_EQ(clip().decode({49406, 320, 49407}), "<|startoftext|>a <|endoftext|>");
  EXPECT_THROW(clip().decode({49408}), sine::Error);
}

TEST(ClipTokenizer, AddedTokenIsOneWholeWord) {
  ClipTokenizer tok = clip();
  int64_t star = tok.add_token("*");
  EXPECT_EQ(star, 49408);
  EXPECT_EQ(tok.add_token("*"), star);
  EXPECT_EQ(tok.vocab_size(), 49409);
  EXPECT_EQ(tok.token_id("*"), star);
  auto ids = tok.bpe_ids("a photo of *, on the beach");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), star), 1);
  EXPECT_EQ(tok.word_token_indices("a photo of * on the beach", "*"), (std::vector<int64_t>{4}));
  EXPECT_EQ(tok.decode({star}), "* ");
  int64_t sks = tok.add_token("Sks");
  EXPECT_EQ(tok.bpe_ids("a sks dog")[1], sks);
  EXPECT_NE(tok.bpe_ids("asks")[0], sks);  // not inside another word
  EXPECT_EQ(clip().vocab_size(), 49408);    // the original is unchanged
  EXPECT_THROW(tok.add_token("two words"), sine::Error);

  fs::path dir = fresh_temp_dir("added");
  tok.save_vocab_merges(dir.string());
  ClipTokenizer reloaded = ClipTokenizer::from_dir(dir.string());
  EXPECT_EQ(reloaded.vocab_size(), 49410);
  EXPECT_EQ(reloaded.encode("a photo of * with a sks dog"), tok.encode("a photo of * with a sks dog"));
  fs::remove_all(dir);
}

TEST(ClipTokenizer, BadFilesNameTheFile) {
  fs::path dir = fresh_temp_dir("bad");
  std::string missing = (dir / "missing.txt.gz").string();
  EXPECT_NE(error_of([&] { ClipTokenizer::from_bpe_gz(missing); }).find(missing), std::string::npos);

  std::string junk = (dir / "junk.txt.gz").string();
  std::ofstream(junk) << "hello world\nthis is not a vocabulary\n";
  std::string message = error_of([&] { ClipTokenizer::from_bpe_gz(junk); });
  EXPECT_NE(message.find(junk), std::string::npos) << message;

  std::string vocab = (dir / "vocab.json").string(), merges = (dir / "merges.txt").string();
  std::ofstream(vocab) << "{\"a\": 0, ";
  std::ofstream(merges) << "#version: 0.2\na b\n";
  message = error_of([&] { ClipTokenizer::from_vocab_merges(vocab, merges); });
  EXPECT_NE(message.find(vocab), std::string::npos) << message;

  std::ofstream(vocab) << "{\"a\": 0, \"b\": 1, \"ab\": 2, \"<|startoftext|>\": 3, \"<|endoftext|>\": 4}";
  std::ofstream(merges) << "#version: 0.2\na b\nab c d\n";
  message = error_of([&] { ClipTokenizer::from_vocab_merges(vocab, merges); });
  EXPECT_NE(message.find(merges), std::string::npos) << message;
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;

  std::ofstream(merges) << "#version: 0.2\na b\nb c\n";
  message = error_of([&] { ClipTokenizer::from_vocab_merges(vocab, merges); });
  EXPECT_NE(message.find("'bc'"), std::string::npos) << message;

  message = error_of([&] { ClipTokenizer::from_dir((dir / "nothing").string()); });
  EXPECT_NE(message.find("nothing"), std::string::npos) << message;
  fs::remove_all(dir);
}
