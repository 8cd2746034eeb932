#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "pipeline/pipeline.h"
#include "server/image_codec.h"

// `sine serve`: the web page, AUTOMATIC1111's API (/sdapi/v1/...) and sine's own job API
// (/sine/v1/...) over one loaded model. Jobs run one at a time on a worker thread; HTTP threads
// only parse, queue and answer.
namespace sine::server {

struct ServeOptions {
  LoadOptions model;               // how the served model was loaded (method jobs load copies of it)
  std::string host = "127.0.0.1";
  int port = 7860;                 // 0: any free port (tests)
  std::string data_dir = "sine-data";  // artefacts (images and files that jobs produce)
  std::string api_key;             // required on every request when set; required off loopback
  std::string lora_dir;            // <lora:NAME:W> in prompts loads NAME.safetensors from here
  int64_t queue_capacity = 8;      // jobs waiting beyond the running one; more get 429
  int64_t max_body_bytes = 64ll << 20;  // larger request bodies get 413
  int64_t preview_every = 5;       // a preview image every N sampling steps (0: none)
  int64_t http_threads = 16;       // concurrent connections (SSE streams and waiting A1111 calls hold one)
  ImageLimits image_limits;
  // Errors name the field ("host", "port", ...); a host other than loopback without api_key is refused.
  void validate() const;
};

bool is_loopback_host(const std::string& host);

class Server {
 public:
  // `pipeline` stays owned by the caller and is used only from the job worker thread.
  Server(Pipeline& pipeline, ServeOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (a free port when port is 0) and returns the port; throws sine::Error.
  int bind();
  // Serves until stop() (from another thread or a signal handler's thread).
  void listen();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sine::server
