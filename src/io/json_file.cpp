#include "io/json_file.h"

#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"

namespace sine {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open");
  std::stringstream text;
  text << f.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const std::exception& e) {
    throw Error(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

void write_json_file(const std::string& path, const nlohmann::json& j) { write_text_atomically(path, j.dump(2) + "\n"); }

}  // namespace sine
