#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/statistics.h"

using namespace sine::eval;

// Reference values: Wilson (1927) score interval as tabulated by Newcombe (1998), Table I
// (81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605; 0/20 -> 0-0.1611; 1/29 -> 0.0061-0.1718).
TEST(Statistics, WilsonMatchesNewcombesTable) {
  const struct {
    int64_t k, n;
    double low, high;
  } cases[] = {{81, 263, 0.2553, 0.3662}, {15, 148, 0.0624, 0.1605}, {0, 20, 0.0, 0.1611}, {1, 29, 0.0061, 0.1718}};
  for (const auto& c : cases) {
    const Rate r = wilson(c.k, c.n);
    EXPECT_NEAR(r.low, c.low, 5e-4) << c.k << "/" << c.n;
    EXPECT_NEAR(r.high, c.high, 5e-4) << c.k << "/" << c.n;
    EXPECT_LE(r.low, r.value());
    EXPECT_GE(r.high, r.value());
  }
  const Rate all = wilson(20, 20);
  EXPECT_DOUBLE_EQ(all.high, 1.0);
  EXPECT_NEAR(all.low, 0.8389, 5e-4);
  const Rate none = wilson(0, 0);
  EXPECT_EQ(none.low, 0.0);
  EXPECT_EQ(none.high, 1.0);
  EXPECT_THROW(wilson(3, 2), sine::Error);
  EXPECT_EQ(format_rate(wilson(81, 263)), "0.308 [0.255, 0.366]");
}

TEST(Statistics, McNemarExactOnDiscordantPairs) {
  // 10 cases only a holds, 2 only b, 5 both, 3 neither: p = 2 * P(X <= 2), X ~ Bin(12, 1/2) = 158/4096.
  std::vector<bool> a, b;
  auto add = [&](bool x, bool y, int n) {
    for (int i = 0; i < n; ++i) a.push_back(x), b.push_back(y);
  };
  add(true, false, 10);
  add(false, true, 2);
  add(true, true, 5);
  add(false, false, 3);
  const McNemar t = mcnemar(a, b);
  EXPECT_EQ(t.only_a, 10);
  EXPECT_EQ(t.only_b, 2);
  EXPECT_EQ(t.both, 5);
  EXPECT_EQ(t.neither, 3);
  EXPECT_NEAR(t.p_value, 158.0 / 4096.0, 1e-12);
  // Symmetric, and no discordant pair says nothing.
  EXPECT_NEAR(mcnemar(b, a).p_value, t.p_value, 1e-12);
  EXPECT_EQ(mcnemar({true, false}, {true, false}).p_value, 1.0);
  // Balanced discordance is capped at 1.
  EXPECT_EQ(mcnemar({true, false}, {false, true}).p_value, 1.0);
  EXPECT_THROW(mcnemar({true}, {true, false}), sine::Error);
}
