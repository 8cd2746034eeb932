#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "core/error.h"

// Reading request JSON with errors that name the field, so a client sees "400 steps: expected an
// integer, got string" instead of a generic failure.
namespace sine::server {

// An error a handler answers with `status` and a one-line message; `field` (may be empty) is the
// request field at fault.
class HttpError : public Error {
 public:
  HttpError(int status, std::string field, const std::string& message)
      : Error(field.empty() ? message : field + ": " + message), status_(status), field_(std::move(field)) {}
  int status() const { return status_; }
  const std::string& field() const { return field_; }

 private:
  int status_;
  std::string field_;
};

inline HttpError bad_field(const std::string& field, const std::string& message) {
  return HttpError(400, field, message);
}

// The body of a POST as a JSON object (400 naming the position of a syntax error).
nlohmann::json parse_json_object(const std::string& body);

// Typed optional fields of a JSON object: absent or null gives the default; a value of the wrong
// type or out of [min, max] throws bad_field(name, ...).
class Fields {
 public:
  explicit Fields(const nlohmann::json& object, std::string prefix = "") : object_(object), prefix_(std::move(prefix)) {}

  bool has(const std::string& name) const;
  std::string string(const std::string& name, const std::string& fallback = "") const;
  int64_t integer(const std::string& name, int64_t fallback, int64_t min, int64_t max) const;
  double number(const std::string& name, double fallback, double min, double max) const;
  bool boolean(const std::string& name, bool fallback) const;
  // A nested object (empty when absent).
  nlohmann::json object(const std::string& name) const;
  // An array of strings (empty when absent).
  std::vector<std::string> strings(const std::string& name) const;
  // The full name for error messages ("params.steps").
  std::string path(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  const nlohmann::json* find(const std::string& name) const;

 private:
  const nlohmann::json& object_;
  std::string prefix_;
};

}  // namespace sine::server
