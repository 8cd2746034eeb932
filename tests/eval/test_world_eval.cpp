#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/world_eval.h"

using namespace sine;
using namespace sine::eval;

// The judge's own accuracy through the library entry point: exact renders of the v4 world on a
// wide canvas pass every claim, and the per-kind tallies add up to the whole.
TEST(WorldEval, ExactRendersPassEveryClaimPerBackgroundKind) {
  WorldEvalConfig c;
  c.mode = WorldEvalMode::renders;
  c.count = 40;
  c.width = 128;
  c.height = 64;
  c.sampling = world::with_textured_backgrounds();
  const WorldEvalResult r = evaluate_world(nullptr, c);
  EXPECT_EQ(r.all.images, 40);
  EXPECT_EQ(r.all.passed, 40);
  int64_t sum = 0;
  for (const ClaimTally& t : r.by_background) sum += t.images;
  EXPECT_EQ(sum, 40);
  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j["width"], 128);
  EXPECT_DOUBLE_EQ(j["summary"]["pass"]["rate"].get<double>(), 1.0);
  EXPECT_LT(j["summary"]["pass"]["low"].get<double>(), 1.0);  // 40 images leave room
  EXPECT_EQ(j["images"].size(), 40u);
  EXPECT_NE(r.text().find("per background kind"), std::string::npos);
  // Without a model only renders can be judged.
  c.mode = WorldEvalMode::prompt_following;
  EXPECT_THROW(evaluate_world(nullptr, c), Error);
}

TEST(WorldEval, CompareIsPairedOnTheSameCaptions) {
  auto evaluation = [](const std::string& model, const std::vector<bool>& pass) {
    nlohmann::json j{{"model", model}, {"images", nlohmann::json::array()}};
    for (size_t i = 0; i < pass.size(); ++i)
      j["images"].push_back({{"caption", "caption " + std::to_string(i)},
                             {"pass", bool(pass[i])},
                             {"background_color", true},
                             {"background_kind", bool(pass[i])},
                             {"object_count", i % 2 == 0}});
    return j;
  };
  // b passes 10 images a fails and fails none a passes: p = 2 / 2^10.
  std::vector<bool> a(20, false), b(20, false);
  for (int i = 0; i < 10; ++i) b[i] = true;
  a[15] = b[15] = true;
  const WorldEvalComparison c = compare_world_evals(evaluation("v3", a), evaluation("v4", b));
  ASSERT_EQ(c.claims.size(), 4u);
  EXPECT_EQ(c.claims[0].name, "pass");
  EXPECT_EQ(c.claims[0].test.only_b, 10);
  EXPECT_EQ(c.claims[0].test.only_a, 0);
  EXPECT_NEAR(c.claims[0].test.p_value, 2.0 / 1024.0, 1e-12);
  EXPECT_EQ(c.claims[0].rate_a.successes, 1);
  EXPECT_EQ(c.claims[0].rate_b.successes, 11);
  EXPECT_EQ(c.claims[1].test.p_value, 1.0);  // background color: identical
  auto other = evaluation("v4", b);
  other["images"][3]["caption"] = "something else";
  EXPECT_THROW(compare_world_evals(evaluation("v3", a), other), Error);
  other["images"].erase(3);
  EXPECT_THROW(compare_world_evals(evaluation("v3", a), other), Error);
}
