#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

// The statistics every benchmark table reports: a rate with its 95 % Wilson score interval, and
// McNemar's exact test for two methods judged on the same cases.
namespace sine::eval {

struct Rate {
  int64_t successes = 0, trials = 0;
  double value() const { return trials > 0 ? static_cast<double>(successes) / static_cast<double>(trials) : 0.0; }
  double low = 0, high = 0;  // the interval
};

// Wilson score interval (Wilson 1927) at z (1.96: 95 %); for 0 trials [0, 1].
Rate wilson(int64_t successes, int64_t trials, double z = 1.96);

// "0.850 [0.794, 0.893]"
std::string format_rate(const Rate& rate);
nlohmann::json to_json(const Rate& rate);  // {"rate", "low", "high", "n"}

struct McNemar {
  int64_t only_a = 0, only_b = 0;  // discordant pairs: a holds and b does not, and the reverse
  int64_t both = 0, neither = 0;
  double p_value = 1.0;            // exact two-sided (binomial on the discordant pairs, p = 1/2)
};

// Paired outcomes a[i], b[i] of two methods on the same cases (sizes must match).
McNemar mcnemar(const std::vector<bool>& a, const std::vector<bool>& b);
nlohmann::json to_json(const McNemar& test);

}  // namespace sine::eval
