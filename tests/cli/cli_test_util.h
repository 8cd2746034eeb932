#pragma once
// Runs the built `sine` binary in a scratch folder and captures its exit code, stdout and stderr.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sine::cli_test {

namespace fs = std::filesystem;

inline const std::string kShared = SINE_SHARED_DIR;
inline const std::string kTiny = kShared + "/reference/tiny";
inline const std::string kVocab = kShared + "/data/clip/bpe_simple_vocab_16e6.txt.gz";
inline const std::string kTinyFile = kTiny + "/tiny_sd15_original.safetensors";
inline const std::string kTinyConfig = kTiny + "/tiny_config.json";
inline const std::string kTinyDiffusers = kTiny + "/diffusers";

struct CommandResult {
  int code = -1;
  std::string out, err;
};

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// A folder of its own per test binary and process, removed at exit.
class Scratch {
 public:
  explicit Scratch(const std::string& name)
      : dir_(fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~Scratch() { fs::remove_all(dir_); }
  const fs::path& dir() const { return dir_; }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // `args` is appended verbatim to `sine -q` (quote paths with quote()).
  CommandResult sine(const std::string& args) const {
    const fs::path out = dir_ / ".stdout", err = dir_ / ".stderr";
    const std::string cmd = quote(SINE_BINARY) + " -q " + args + " >" + quote(out.string()) + " 2>" + quote(err.string());
    const int status = std::system(cmd.c_str());
    CommandResult r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_text(out);
    r.err = read_text(err);
    fs::remove(out);
    fs::remove(err);
    return r;
  }

 private:
  fs::path dir_;
};

inline std::string tiny_single_flags() {
  return "-m " + quote(kTinyFile) + " --model-config " + quote(kTinyConfig) + " --tokenizer " + quote(kVocab);
}

inline std::string tiny_diffusers_flags() { return "-m " + quote(kTinyDiffusers) + " --tokenizer " + quote(kVocab); }

}  // namespace sine::cli_test
