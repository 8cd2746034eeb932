#pragma once
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "diffusion/sampler.h"
#include "methods/stage.h"
#include "server/artifacts.h"

// One job at a time on the one model, the rest waiting in a bounded queue. A job is a function
// of a JobContext, through which it reports progress and previews, sees cancellation (an
// exception out of the next step callback) and stages its artefacts.
namespace sine::server {

enum class JobState { queued, running, done, failed, cancelled };
const char* job_state_name(JobState state);

// Thrown out of a step callback when the job was cancelled; unwinding frees the job's tensors.
struct JobCancelled : std::exception {
  const char* what() const noexcept override { return "cancelled"; }
};

struct JobEvent {
  int64_t id = 0;         // 1, 2, ... in order (the SSE id)
  std::string type;       // "queued", "running", "progress", "preview", "done", "failed", "cancelled"
  nlohmann::json data;
};

class JobContext;
// What a job returns: its JSON result; PNG bytes of its images (kept in memory for the A1111
// routes) travel in JobContext::images.
using JobRunner = std::function<nlohmann::json(JobContext&)>;

class Job {
 public:
  Job(std::string id, std::string kind, nlohmann::json summary);

  const std::string& id() const { return id_; }
  const std::string& kind() const { return kind_; }
  JobState state() const;
  bool finished() const;
  // {id, kind, state, queue_position, progress{step,total,stage,eta_seconds,fraction}, error, result, ...}
  nlohmann::json to_json(int64_t queue_position) const;

  // Events after `after`, waiting up to `timeout` for one when there is none yet.
  std::vector<JobEvent> events_after(int64_t after, std::chrono::milliseconds timeout) const;
  // Waits until done/failed/cancelled (or the timeout); returns whether it finished.
  bool wait_finished(std::chrono::milliseconds timeout) const;

  void request_cancel() { cancel_requested_ = true; }
  bool cancel_requested() const { return cancel_requested_; }

  // Progress for /sdapi/v1/progress: fraction done of the current stage and the ETA.
  struct Progress {
    int64_t step = 0, total = 0;
    std::string stage;
    double fraction = 0, eta_seconds = 0, elapsed_seconds = 0;
    std::string preview_png;  // latest preview (bytes), may be empty
  };
  Progress progress() const;
  std::vector<std::string> images() const;  // the result's PNG bytes
  std::string error() const;
  nlohmann::json result() const;
  std::chrono::system_clock::time_point created() const { return created_; }

 private:
  friend class JobQueue;
  friend class JobContext;
  void emit(const std::string& type, nlohmann::json data);  // with mutex_ held
  void set_state(JobState state, nlohmann::json data);

  const std::string id_, kind_;
  const nlohmann::json summary_;
  const std::chrono::system_clock::time_point created_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  JobState state_ = JobState::queued;
  std::vector<JobEvent> events_;
  std::atomic<bool> cancel_requested_{false};
  Progress progress_;
  std::chrono::steady_clock::time_point stage_start_;
  int64_t stage_first_step_ = 0;
  std::string error_;
  nlohmann::json result_;
  std::vector<std::string> images_;
  JobRunner runner_;
};

class JobContext {
 public:
  JobContext(Job& job, ArtifactStore& artifacts, int64_t preview_every)
      : job_(job), artifacts_(artifacts), preview_every_(preview_every) {}

  const std::string& job_id() const { return job_.id(); }
  // Throws JobCancelled when the job was cancelled.
  void check_cancelled() const;
  // A new stage (e.g. "inversion", "edit", "training"): progress and ETA restart.
  void begin_stage(const std::string& stage, int64_t total);
  // Step `step` of `total` done; checks cancellation.
  void progress(int64_t step, int64_t total);
  // Whether step `step` should produce a preview (every preview_every steps, and the last).
  bool preview_due(int64_t step, int64_t total) const;
  void preview(const torch::Tensor& rgb_u8);
  // A sampling StepCallback reporting into this job.
  StepCallback step_callback();
  // A multi-stage library run's stage callback: each stage it announces begins a stage here.
  StageCallback stage_callback();

  // An image of the result: kept in memory (A1111 responses) and, when `save`, staged as an artefact.
  void add_image(std::string png_bytes, bool save, nlohmann::json info);
  // A file artefact (fine-tune, concept, inversion ...), staged until the job succeeds.
  Artifact add_artifact(const std::string& kind, const std::string& filename, const std::string& media_type,
                        const std::function<void(const std::string& path)>& write,
                        nlohmann::json info = nlohmann::json::object());
  const std::vector<Artifact>& artifacts() const { return staged_; }

 private:
  Job& job_;
  ArtifactStore& artifacts_;
  int64_t preview_every_;
  std::vector<Artifact> staged_;
};

class JobQueue {
 public:
  JobQueue(ArtifactStore& artifacts, size_t capacity, int64_t preview_every);
  ~JobQueue();

  // Queues a job; HttpError 429 when `capacity` jobs are already waiting, 503 after shutdown.
  std::shared_ptr<Job> submit(const std::string& kind, nlohmann::json summary, JobRunner runner);
  std::shared_ptr<Job> find(const std::string& id) const;
  std::vector<std::shared_ptr<Job>> list() const;  // newest first
  std::shared_ptr<Job> running() const;
  // 0 = running, 1 = next, ...; -1 when finished or unknown.
  int64_t position(const Job& job) const;
  size_t waiting() const;
  // Cancels a queued job at once, a running one at its next step; false when already finished.
  bool cancel(const std::string& id);
  // Cancels the running job and every queued one, then joins the worker.
  void shutdown();
  size_t capacity() const { return capacity_; }
  // Seconds a job is expected to wait for the ones ahead (a guess for Retry-After).
  int64_t retry_after_seconds() const;

 private:
  void work();
  void forget_old_jobs();  // with mutex_ held

  ArtifactStore& artifacts_;
  const size_t capacity_;
  const int64_t preview_every_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> waiting_;
  std::shared_ptr<Job> running_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::deque<std::string> finished_order_;
  double mean_job_seconds_ = 0;
  int64_t jobs_done_ = 0;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace sine::server
