#include "eval/statistics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace sine::eval {

Rate wilson(int64_t successes, int64_t trials, double z) {
  if (successes < 0 || trials < 0 || successes > trials)
    throw Error("wilson: need 0 <= successes <= trials, got " + std::to_string(successes) + " of " +
                std::to_string(trials));
  Rate r;
  r.successes = successes, r.trials = trials;
  if (trials == 0) {
    r.low = 0, r.high = 1;
    return r;
  }
  const double n = static_cast<double>(trials), p = r.value(), z2 = z * z;
  const double center = (p + z2 / (2 * n)) / (1 + z2 / n);
  const double half = z / (1 + z2 / n) * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n));
  r.low = std::max(0.0, center - half);
  r.high = std::min(1.0, center + half);
  return r;
}

std::string format_rate(const Rate& rate) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.3f [%.3f, %.3f]", rate.value(), rate.low, rate.high);
  return text;
}

nlohmann::json to_json(const Rate& rate) {
  return {{"rate", rate.value()}, {"low", rate.low}, {"high", rate.high}, {"n", rate.trials}};
}

McNemar mcnemar(const std::vector<bool>& a, const std::vector<bool>& b) {
  if (a.size() != b.size())
    throw Error("mcnemar: the two methods were judged on " + std::to_string(a.size()) + " and " +
                std::to_string(b.size()) + " cases; a paired test needs the same cases");
  McNemar t;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] && b[i]) ++t.both;
    else if (a[i]) ++t.only_a;
    else if (b[i]) ++t.only_b;
    else ++t.neither;
  }
  // Two-sided exact: 2 * P(X <= min(only_a, only_b)) for X ~ Binomial(discordant, 1/2), capped at 1.
  const int64_t n = t.only_a + t.only_b, k = std::min(t.only_a, t.only_b);
  if (n == 0) return t;
  double tail = 0;
  for (int64_t i = 0; i <= k; ++i)
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  t.p_value = std::min(1.0, 2 * tail);
  return t;
}

nlohmann::json to_json(const McNemar& t) {
  return {{"only_a", t.only_a}, {"only_b", t.only_b}, {"both", t.both}, {"neither", t.neither}, {"p_value", t.p_value}};
}

}  // namespace sine::eval
