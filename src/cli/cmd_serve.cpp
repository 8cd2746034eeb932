#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include <signal.h>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/progress.h"
#include "server/server.h"

namespace sine {

namespace {

struct ServeFlags {
  ModelFlags model;
  server::ServeOptions serve;
  int64_t max_body_mb = 64;
};

// Set by SIGINT/SIGTERM (whichever thread receives it); a watcher thread stops the server.
std::atomic<bool> stop_requested{false};
extern "C" void request_stop(int) { stop_requested = true; }

void run_serve(ServeFlags& f) {
  f.serve.max_body_bytes = f.max_body_mb << 20;
  f.serve.validate();  // before the model loads: a refused --host costs nothing
  f.serve.model = load_options(f.model);
  Pipeline pipe = Pipeline::load(f.serve.model);
  set_progress_enabled(false);  // jobs report their progress over the API, not as bars on stderr
  server::Server server(pipe, f.serve);
  const int port = server.bind();
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done && !stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stop_requested) {
      std::cerr << "sine serve: stopping (the running job is cancelled at its next step)\n";
      server.stop();
    }
  });
  std::cerr << "sine serve: " << pipe.model_name() << " on http://" << f.serve.host << ":" << port << "/"
            << (f.serve.api_key.empty() ? "" : " (API key required)") << "\n";
  std::cout << "listening " << port << std::endl;  // for scripts and tests that asked for port 0
  server.listen();
  done = true;
  watcher.join();
}

}  // namespace

void register_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  auto* cmd = app.add_subcommand(
      "serve", "web page, AUTOMATIC1111-compatible API (/sdapi/v1) and job API (/sine/v1) on one model");
  add_model_flags(cmd, f->model);
  cmd->add_option("--host", f->serve.host, "address to listen on (other than loopback needs --api-key)")
      ->capture_default_str();
  cmd->add_option("--port", f->serve.port, "port (0: any free port, printed on stdout)")->capture_default_str();
  cmd->add_option("--data", f->serve.data_dir, "folder for the artefacts jobs produce")->capture_default_str();
  cmd->add_option("--api-key", f->serve.api_key,
                  "required on every request (Authorization: Bearer KEY, or ?key=KEY)");
  cmd->add_option("--lora-dir", f->serve.lora_dir, "folder of LoRA files for <lora:NAME:WEIGHT> in prompts");
  cmd->add_option("--queue", f->serve.queue_capacity, "jobs that may wait behind the running one (more: 429)")
      ->capture_default_str();
  cmd->add_option("--max-body-mb", f->max_body_mb, "largest request body (more: 413)")->capture_default_str();
  cmd->add_option("--preview-every", f->serve.preview_every, "a preview image every N sampling steps (0: none)")
      ->capture_default_str();
  cmd->add_option("--max-image-side", f->serve.image_limits.max_side, "largest uploaded image side in pixels (more: 413)")
      ->capture_default_str();
  on_run(cmd, [f] { run_serve(*f); });
}

}  // namespace sine
