#pragma once
#include <stdexcept>
#include <string>

namespace sine {

// Every user-facing failure is a sine::Error whose message is one line a user can act on
// (it names the file, flag or key and what is wrong). The CLI prints it and exits non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace sine
