#include "io/generation_parameters.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <sstream>

namespace sine {

namespace {

// Python's repr(float): the shortest text that reads back to the same double, ".0" on integers.
std::string python_float(double v) {
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".eEna") == std::string::npos) s += ".0";  // not for "inf"/"nan"/"1e+20"
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// A1111's re_param: key = a word character then words, spaces, '-' or '/'; value = a JSON string
// or anything up to the next comma.
const std::regex& param_regex() {
  static const std::regex re(R"re(\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$))re");
  return re;
}

}  // namespace

std::string quote_parameter(const std::string& value) {
  if (value.find_first_of(",:\n") == std::string::npos) return value;
  return nlohmann::json(value).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

GenerationParameters& GenerationParameters::set(const std::string& key, const std::string& value) {
  for (auto& [k, v] : fields)
    if (k == key) {
      v = value;
      return *this;
    }
  fields.emplace_back(key, value);
  return *this;
}

GenerationParameters& GenerationParameters::set(const std::string& key, double value) {
  return set(key, python_float(value));
}

GenerationParameters& GenerationParameters::set(const std::string& key, int64_t value) {
  return set(key, std::to_string(value));
}

std::string GenerationParameters::get(const std::string& key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return v;
  return "";
}

bool GenerationParameters::has(const std::string& key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return true;
  return false;
}

std::string GenerationParameters::format() const {
  std::string line;
  for (const auto& [k, v] : fields) line += (line.empty() ? "" : ", ") + k + ": " + quote_parameter(v);
  std::string text = prompt;
  if (!negative_prompt.empty()) text += "\nNegative prompt: " + negative_prompt;
  text += "\n" + line;
  return trim(text);
}

GenerationParameters GenerationParameters::parse(const std::string& text) {
  std::vector<std::string> lines;
  {
    std::istringstream in(trim(text));
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  std::string last;
  if (!lines.empty()) {
    const auto& candidate = lines.back();
    const auto n = std::distance(std::sregex_iterator(candidate.begin(), candidate.end(), param_regex()),
                                 std::sregex_iterator());
    if (n >= 3) {
      last = candidate;
      lines.pop_back();
    }
  }
  GenerationParameters p;
  bool negative = false;
  for (auto line : lines) {
    line = trim(line);
    if (line.rfind("Negative prompt:", 0) == 0) {
      negative = true;
      line = trim(line.substr(16));
    }
    auto& target = negative ? p.negative_prompt : p.prompt;
    target += (target.empty() ? "" : "\n") + line;
  }
  for (auto it = std::sregex_iterator(last.begin(), last.end(), param_regex()); it != std::sregex_iterator(); ++it) {
    std::string key = (*it)[1].str(), value = (*it)[2].str();
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      auto parsed = nlohmann::json::parse(value, nullptr, false);
      if (parsed.is_string()) value = parsed.get<std::string>();
    }
    p.set(key, value);
  }
  return p;
}

std::map<std::string, std::string> GenerationParameters::png_text() const {
  nlohmann::json j = nlohmann::json::object();
  j["prompt"] = prompt;
  j["negative_prompt"] = negative_prompt;
  for (const auto& [k, v] : fields) j[k] = v;
  return {{"parameters", format()}, {"sine", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)}};
}

}  // namespace sine
