// Full-size SD 1.5 with random weights through the binary: key set, parameter counts, and the
// diffusers layout holding the same tensors as the single file. Labelled `heavy` (GBs on disk).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "cli_test_util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace sine {
namespace {

using namespace cli_test;

std::set<std::string> reference_keys() {
  std::ifstream in(kShared + "/reference/sd15_keys_original.txt");
  std::set<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    const std::string key = line.substr(0, line.find('\t'));
    if (key.find("position_ids") == std::string::npos) keys.insert(key);
  }
  return keys;
}

void expect_sd15_counts(const Scratch& s, const std::string& model) {
  auto r = s.sine("info --json --dtype fp16 -m " + quote(model));
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  std::printf("  %s: %s\n", model.c_str(), j["parameters"].dump().c_str());
  EXPECT_EQ(j["parameters"]["unet"].get<int64_t>(), 859520964);
  EXPECT_EQ(j["parameters"]["vae"].get<int64_t>(), 83653863);
  EXPECT_EQ(j["parameters"]["text_encoder"].get<int64_t>(), 123060480);
}

TEST(CliSd15, InitRandomBothLayoutsHaveTheSd15KeysCountsAndSameWeights) {
  Scratch s("sine_test_cli_sd15");
  const std::string single = s.path("sd15.safetensors"), folder = s.path("sd15_diffusers");
  auto r = s.sine("init-random --config sd15 --dtype fp16 --seed 5 -o " + quote(single));
  ASSERT_EQ(r.code, 0) << r.err;
  r = s.sine("init-random --config sd15 --dtype fp16 --seed 5 --layout diffusers -o " + quote(folder));
  ASSERT_EQ(r.code, 0) << r.err;

  const auto keys = SafeTensors::open(single).keys();
  const std::set<std::string> written(keys.begin(), keys.end());
  const auto expected = reference_keys();
  std::printf("  %zu keys written, %zu expected\n", written.size(), expected.size());
  EXPECT_EQ(written, expected);

  expect_sd15_counts(s, single);
  expect_sd15_counts(s, folder);

  auto a = load_checkpoint(single);
  auto b = load_checkpoint(folder);
  EXPECT_EQ(a.layout, "ldm");
  EXPECT_EQ(b.layout, "diffusers");
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [k, t] : a.tensors) {
    auto it = b.tensors.find(k);
    ASSERT_NE(it, b.tensors.end()) << k;
    ASSERT_EQ(t.sizes(), it->second.sizes()) << k;
    EXPECT_TRUE(torch::equal(t, it->second)) << k;
  }
}

}  // namespace
}  // namespace sine
