#pragma once
#include <string>

#include <nlohmann/json.hpp>

// JSON files the project reads and writes (reports, configs, records of finished work).
namespace sine {

// The file parsed; a sine::Error naming the file when it cannot be opened or is not JSON.
nlohmann::json read_json_file(const std::string& path);
// Indented, newline-terminated, written to a temporary file and renamed into place.
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace sine
