#pragma once
#include <cstdint>
#include <string>
#include <vector>

// Checks for a config's validate(): every error names the config field ("cfg_scale: must be in
// [0.00, 100.00] (got 120.0000)"); the CLI maps fields to its flag names once.
namespace sine {

void require_finite(const char* field, double v);
void require_in(const char* field, double v, double lo, double hi);
void require_steps(int64_t steps);  // "steps", in [1, 1000]
// The whole of `text` as a finite number; errors name `field`.
double parse_finite(const char* field, const std::string& text);
// `v` with `precision` digits after the point ("0.300").
std::string fixed(double v, int precision);
// `v` as printf's %g ("0.3", "400").
std::string shortest(double v);
// The non-empty items of a `sep`-separated list ("a,,b" -> {"a", "b"}).
std::vector<std::string> split_list(const std::string& text, char sep = ',');

}  // namespace sine
