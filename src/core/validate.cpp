#include "core/validate.h"

#include <cmath>
#include <cstdio>
#include <iomanip>
#include <sstream>

#include "core/error.h"

namespace sine {

std::string fixed(double v, int precision) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

std::string shortest(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::vector<std::string> split_list(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

void require_finite(const char* field, double v) {
  if (!std::isfinite(v)) throw Error(std::string(field) + ": must be a finite number (got " + std::to_string(v) + ")");
}

void require_in(const char* field, double v, double lo, double hi) {
  require_finite(field, v);
  if (v < lo || v > hi)
    throw Error(std::string(field) + ": must be in [" + fixed(lo, 2) + ", " + fixed(hi, 2) + "] (got " + fixed(v, 4) + ")");
}

void require_steps(int64_t steps) {
  if (steps < 1 || steps > 1000) throw Error("steps: must be in [1, 1000] (got " + std::to_string(steps) + ")");
}

double parse_finite(const char* field, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v))
    throw Error(std::string(field) + ": '" + text + "' is not a finite number");
  return v;
}

}  // namespace sine
