#include "server/request_fields.h"

#include <cmath>
#include <sstream>

namespace sine::server {

namespace {
std::string type_name(const nlohmann::json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}
}  // namespace

nlohmann::json parse_json_object(const std::string& body) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    throw HttpError(400, "body", "not valid JSON (at byte " + std::to_string(e.byte) + ")");
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range 406: a number like 1e309
    throw HttpError(400, "body", std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) throw HttpError(400, "body", "expected a JSON object, got " + type_name(j));
  return j;
}

const nlohmann::json* Fields::find(const std::string& name) const {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool Fields::has(const std::string& name) const { return find(name) != nullptr; }

std::string Fields::string(const std::string& name, const std::string& fallback) const {
  const auto* v = find(name);
  if (!v) return fallback;
  if (!v->is_string()) throw bad_field(path(name), "expected a string, got " + type_name(*v));
  return v->get<std::string>();
}

int64_t Fields::integer(const std::string& name, int64_t fallback, int64_t min, int64_t max) const {
  const auto* v = find(name);
  if (!v) return fallback;
  int64_t value = 0;
  if (v->is_number_integer()) {
    value = v->get<int64_t>();
  } else if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) throw bad_field(path(name), "must be at most " + std::to_string(max));
    value = static_cast<int64_t>(u);
  } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
             std::abs(v->get<double>()) < 9e15) {
    value = static_cast<int64_t>(v->get<double>());  // 20.0 is an integer to Python clients
  } else {
    throw bad_field(path(name), "expected an integer, got " + type_name(*v));
  }
  if (value < min || value > max)
    throw bad_field(path(name), "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                                    std::to_string(value));
  return value;
}

double Fields::number(const std::string& name, double fallback, double min, double max) const {
  const auto* v = find(name);
  if (!v) return fallback;
  if (!v->is_number()) throw bad_field(path(name), "expected a number, got " + type_name(*v));
  const double value = v->get<double>();
  if (!(value >= min && value <= max)) {
    std::ostringstream s;
    s << "must be in [" << min << ", " << max << "], got " << value;
    throw bad_field(path(name), s.str());
  }
  return value;
}

bool Fields::boolean(const std::string& name, bool fallback) const {
  const auto* v = find(name);
  if (!v) return fallback;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_number_integer() && (v->get<int64_t>() == 0 || v->get<int64_t>() == 1)) return v->get<int64_t>() == 1;
  throw bad_field(path(name), "expected a boolean, got " + type_name(*v));
}

nlohmann::json Fields::object(const std::string& name) const {
  const auto* v = find(name);
  if (!v) return nlohmann::json::object();
  if (!v->is_object()) throw bad_field(path(name), "expected an object, got " + type_name(*v));
  return *v;
}

std::vector<std::string> Fields::strings(const std::string& name) const {
  const auto* v = find(name);
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) throw bad_field(path(name), "expected an array of strings, got " + type_name(*v));
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string())
      throw bad_field(path(name) + "[" + std::to_string(i) + "]", "expected a string, got " + type_name((*v)[i]));
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

}  // namespace sine::server
