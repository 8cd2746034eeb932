#include "server/jobs.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "io/generation_parameters.h"
#include "server/image_codec.h"
#include "server/request_fields.h"

namespace sine::server {

namespace {

constexpr size_t kFinishedJobsKept = 64;  // finished jobs (and their in-memory images) remembered

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

const char* job_state_name(JobState state) {
  switch (state) {
    case JobState::queued: return "queued";
    case JobState::running: return "running";
    case JobState::done: return "done";
    case JobState::failed: return "failed";
    case JobState::cancelled: return "cancelled";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Job

Job::Job(std::string id, std::string kind, nlohmann::json summary)
    : id_(std::move(id)), kind_(std::move(kind)), summary_(std::move(summary)), created_(std::chrono::system_clock::now()) {
  std::lock_guard<std::mutex> lock(mutex_);
  emit("queued", {{"id", id_}, {"kind", kind_}});
}

JobState Job::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

bool Job::finished() const {
  const auto s = state();
  return s == JobState::done || s == JobState::failed || s == JobState::cancelled;
}

void Job::emit(const std::string& type, nlohmann::json data) {
  JobEvent e;
  e.id = static_cast<int64_t>(events_.size()) + 1;
  e.type = type;
  e.data = std::move(data);
  events_.push_back(std::move(e));
  changed_.notify_all();
}

void Job::set_state(JobState state, nlohmann::json data) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = state;
  emit(job_state_name(state), std::move(data));
}

nlohmann::json Job::to_json(int64_t queue_position) const {
  std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json j = {{"id", id_},
                      {"kind", kind_},
                      {"state", job_state_name(state_)},
                      {"queue_position", queue_position},
                      {"parameters", summary_},
                      {"progress",
                       {{"stage", progress_.stage},
                        {"step", progress_.step},
                        {"total", progress_.total},
                        {"fraction", progress_.fraction},
                        {"eta_seconds", progress_.eta_seconds},
                        {"elapsed_seconds", progress_.elapsed_seconds}}},
                      {"events_url", "/sine/v1/jobs/" + id_ + "/events"}};
  if (!error_.empty()) j["error"] = error_;
  if (!result_.is_null()) j["result"] = result_;
  return j;
}

std::vector<JobEvent> Job::events_after(int64_t after, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return static_cast<int64_t>(events_.size()) > after; });
  if (after < 0) after = 0;
  if (static_cast<int64_t>(events_.size()) <= after) return {};
  return std::vector<JobEvent>(events_.begin() + after, events_.end());
}

bool Job::wait_finished(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    return state_ == JobState::done || state_ == JobState::failed || state_ == JobState::cancelled;
  });
}

Job::Progress Job::progress() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return progress_;
}

std::vector<std::string> Job::images() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return images_;
}

std::string Job::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

nlohmann::json Job::result() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return result_;
}

// ---------------------------------------------------------------------------------------------
// JobContext

void JobContext::check_cancelled() const {
  if (job_.cancel_requested()) throw JobCancelled();
}

void JobContext::begin_stage(const std::string& stage, int64_t total) {
  check_cancelled();
  std::lock_guard<std::mutex> lock(job_.mutex_);
  job_.progress_.stage = stage;
  job_.progress_.step = 0;
  job_.progress_.total = total;
  job_.progress_.fraction = 0;
  job_.progress_.eta_seconds = 0;
  job_.stage_start_ = std::chrono::steady_clock::now();
  job_.emit("progress", {{"stage", stage}, {"step", 0}, {"total", total}, {"eta_seconds", 0.0}});
}

void JobContext::progress(int64_t step, int64_t total) {
  {
    std::lock_guard<std::mutex> lock(job_.mutex_);
    auto& p = job_.progress_;
    const auto now = std::chrono::steady_clock::now();
    if (p.total != total || step < p.step) {  // a sampling loop reporting a new total
      p.total = total;
      job_.stage_start_ = now;
      job_.stage_first_step_ = step - 1;
    }
    p.step = step;
    p.fraction = total > 0 ? static_cast<double>(step) / static_cast<double>(total) : 0.0;
    p.elapsed_seconds = seconds_between(job_.stage_start_, now);
    const int64_t done = step - std::max<int64_t>(job_.stage_first_step_, 0);
    p.eta_seconds = done > 0 ? p.elapsed_seconds / static_cast<double>(done) * static_cast<double>(total - step) : 0.0;
    job_.emit("progress", {{"stage", p.stage}, {"step", step}, {"total", total}, {"eta_seconds", p.eta_seconds}});
  }
  check_cancelled();  // cancellation lands between two steps
}

bool JobContext::preview_due(int64_t step, int64_t total) const {
  return preview_every_ > 0 && (step % preview_every_ == 0 || step == total);
}

void JobContext::preview(const torch::Tensor& rgb_u8) {
  std::string png = encode_png(rgb_u8);
  std::lock_guard<std::mutex> lock(job_.mutex_);
  job_.progress_.preview_png = png;
  job_.emit("preview", {{"step", job_.progress_.step}, {"image", "data:image/png;base64," + base64_encode(png)}});
}

StepCallback JobContext::step_callback() {
  return [this](int64_t step, int64_t total) { progress(step, total); };
}

StageCallback JobContext::stage_callback() {
  return [this](const std::string& stage, int64_t total) { begin_stage(stage, total); };
}

void JobContext::add_image(std::string png_bytes, bool save, nlohmann::json info) {
  if (save) {
    const auto n = [&] {
      std::lock_guard<std::mutex> lock(job_.mutex_);
      return job_.images_.size();
    }();
    staged_.push_back(artifacts_.stage(
        job_.id(), "image", "image-" + std::to_string(n) + ".png", "image/png",
        [&](const std::string& path) {
          std::ofstream out(path, std::ios::binary);
          out.write(png_bytes.data(), static_cast<std::streamsize>(png_bytes.size()));
          if (!out) throw Error(path + ": cannot write");
        },
        std::move(info)));
  }
  std::lock_guard<std::mutex> lock(job_.mutex_);
  job_.images_.push_back(std::move(png_bytes));
}

Artifact JobContext::add_artifact(const std::string& kind, const std::string& filename, const std::string& media_type,
                                  const std::function<void(const std::string& path)>& write, nlohmann::json info) {
  staged_.push_back(artifacts_.stage(job_.id(), kind, filename, media_type, write, std::move(info)));
  return staged_.back();
}

// ---------------------------------------------------------------------------------------------
// JobQueue

JobQueue::JobQueue(ArtifactStore& artifacts, size_t capacity, int64_t preview_every)
    : artifacts_(artifacts), capacity_(capacity), preview_every_(preview_every), worker_([this] { work(); }) {}

JobQueue::~JobQueue() { shutdown(); }

std::shared_ptr<Job> JobQueue::submit(const std::string& kind, nlohmann::json summary, JobRunner runner) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) throw HttpError(503, "", "the server is shutting down");
  if (waiting_.size() >= capacity_)
    throw HttpError(429, "", "the queue is full (" + std::to_string(capacity_) + " jobs waiting); retry later");
  static std::atomic<uint64_t> counter{0};
  char id[32];
  std::snprintf(id, sizeof id, "j%06llu-%04x", static_cast<unsigned long long>(++counter),
                static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count() & 0xffff));
  auto job = std::make_shared<Job>(id, kind, std::move(summary));
  job->runner_ = std::move(runner);
  jobs_[job->id()] = job;
  waiting_.push_back(job);
  wake_.notify_all();
  return job;
}

std::shared_ptr<Job> JobQueue::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Job>> JobQueue::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<Job>> out;
  for (const auto& [id, job] : jobs_) out.push_back(job);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->created() > b->created(); });
  return out;
}

std::shared_ptr<Job> JobQueue::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

int64_t JobQueue::position(const Job& job) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_.get() == &job) return 0;
  for (size_t i = 0; i < waiting_.size(); ++i)
    if (waiting_[i].get() == &job) return static_cast<int64_t>(i) + 1;
  return -1;
}

size_t JobQueue::waiting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_.size();
}

bool JobQueue::cancel(const std::string& id) {
  std::shared_ptr<Job> job;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return false;
    job = it->second;
    if (job->finished()) return false;
    job->request_cancel();
    auto w = std::find(waiting_.begin(), waiting_.end(), job);
    if (w == waiting_.end()) return true;  // running: stops at its next step
    waiting_.erase(w);
    finished_order_.push_back(job->id());
  }
  job->set_state(JobState::cancelled, {{"id", job->id()}, {"reason", "cancelled before it started"}});
  return true;
}

void JobQueue::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
    for (auto& job : waiting_) {
      job->request_cancel();
      job->set_state(JobState::cancelled, {{"id", job->id()}, {"reason", "server shutting down"}});
    }
    waiting_.clear();
    if (running_) running_->request_cancel();
    wake_.notify_all();
  }
  if (worker_.joinable()) worker_.join();
}

int64_t JobQueue::retry_after_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  const double per_job = jobs_done_ > 0 ? mean_job_seconds_ : 5.0;
  return std::max<int64_t>(1, static_cast<int64_t>(per_job * static_cast<double>(waiting_.size() + 1)));
}

void JobQueue::forget_old_jobs() {
  while (finished_order_.size() > kFinishedJobsKept) {
    jobs_.erase(finished_order_.front());
    finished_order_.pop_front();
  }
}

void JobQueue::work() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !waiting_.empty(); });
      if (waiting_.empty()) return;  // stopping
      job = waiting_.front();
      waiting_.pop_front();
      running_ = job;
    }
    const auto start = std::chrono::steady_clock::now();
    job->set_state(JobState::running, {{"id", job->id()}});
    JobContext context(*job, artifacts_, preview_every_);
    JobState final_state = JobState::done;
    nlohmann::json final_data;
    try {
      context.check_cancelled();
      nlohmann::json result = job->runner_(context);
      artifacts_.commit(job->id());
      nlohmann::json files = nlohmann::json::array();
      for (const auto& a : context.artifacts()) files.push_back(a.to_json());
      result["artifacts"] = files;
      {
        std::lock_guard<std::mutex> lock(job->mutex_);
        job->result_ = result;
      }
      final_data = {{"id", job->id()}, {"result", result}};
    } catch (const JobCancelled&) {
      artifacts_.discard(job->id());
      final_state = JobState::cancelled;
      final_data = {{"id", job->id()}, {"reason", "cancelled while running"}};
    } catch (const std::exception& e) {
      artifacts_.discard(job->id());
      final_state = JobState::failed;
      {
        std::lock_guard<std::mutex> lock(job->mutex_);
        job->error_ = e.what();
      }
      final_data = {{"id", job->id()}, {"error", e.what()}};
    }
    job->runner_ = nullptr;  // frees whatever the request captured (decoded images, masks)
    job->set_state(final_state, std::move(final_data));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_.reset();
      const double seconds = seconds_between(start, std::chrono::steady_clock::now());
      mean_job_seconds_ = (mean_job_seconds_ * static_cast<double>(jobs_done_) + seconds) / static_cast<double>(jobs_done_ + 1);
      ++jobs_done_;
      finished_order_.push_back(job->id());
      forget_old_jobs();
    }
  }
}

}  // namespace sine::server
