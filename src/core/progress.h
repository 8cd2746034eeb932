#pragma once
#include <chrono>
#include <string>

namespace sine {

// A one-line progress bar on stderr ("label  37/50 [=====>    ] 1.2 it/s  eta 10s  loss=0.12").
// Redraws in place on a terminal; elsewhere (logs, CI) prints a line every ~10% so output stays short.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled = true);
  ~ProgressBar();
  void update(int64_t done, const std::string& suffix = "");
  void finish(const std::string& suffix = "");

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, tty_, finished_ = false;
  int64_t last_printed_ = -1;
  // The rate counts from here: the construction, or the first update when it came at once (a resumed
  // run starting at step N, a cached result), which otherwise showed millions of it/s.
  int64_t base_done_ = 0;
  bool based_ = false;
  std::chrono::steady_clock::time_point start_;
};

// Global switch for --quiet.
void set_progress_enabled(bool enabled);
bool progress_enabled();

}  // namespace sine
