#pragma once
#include <functional>
#include <string>

namespace sine {

// Writes `path` through `write(tmp_path)` into a temporary file beside it, then renames it into
// place, so a failure (exception, crash) never leaves a partial or corrupted output file.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);
// The same for a whole text (a JSON report, a list): written to a temporary file, then renamed.
void write_text_atomically(const std::string& path, const std::string& text);

}  // namespace sine
