#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace sine {

namespace {
bool g_progress = true;
}

void set_progress_enabled(bool enabled) { g_progress = enabled; }
bool progress_enabled() { return g_progress; }

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled && g_progress),
      tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  if (enabled_ && tty_ && !finished_ && last_printed_ >= 0) std::fputc('\n', stderr);
}

void ProgressBar::update(int64_t done, const std::string& suffix) {
  if (!enabled_ || total_ <= 0) return;
  if (!tty_) {
    const int64_t step = std::max<int64_t>(1, total_ / 10);
    if (done != total_ && done / step == last_printed_ / step && last_printed_ >= 0) return;
  }
  last_printed_ = done;
  const auto now = std::chrono::steady_clock::now();
  double secs = std::chrono::duration<double>(now - start_).count();
  if (!based_) {
    based_ = true;
    if (secs < 0.05 && done > 0) {  // no work measured yet: rate from here on
      base_done_ = done;
      start_ = now;
      secs = 0;
    }
  }
  const double rate = secs > 0 ? (done - base_done_) / secs : 0.0;
  const double eta = rate > 0 ? (total_ - done) / rate : 0.0;
  const int width = 24;
  const int filled = static_cast<int>(width * done / total_);
  std::string bar(filled, '=');
  if (filled < width) bar += '>' + std::string(width - filled - 1, ' ');
  char rate_text[64];
  if (rate == 0.0)
    std::snprintf(rate_text, sizeof rate_text, "-- it/s");
  else if (rate >= 1.0)
    std::snprintf(rate_text, sizeof rate_text, "%.2f it/s", rate);
  else
    std::snprintf(rate_text, sizeof rate_text, "%.2f s/it", 1.0 / rate);
  std::fprintf(stderr, "%s%s %lld/%lld [%s] %s eta %.0fs %s%s", tty_ ? "\r" : "", label_.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), bar.c_str(), rate_text, eta,
               suffix.c_str(), tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void ProgressBar::finish(const std::string& suffix) {
  if (!enabled_ || finished_) return;
  update(total_, suffix);
  if (tty_) std::fputc('\n', stderr);
  finished_ = true;
}

}  // namespace sine
