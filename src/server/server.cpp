#include "server/server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>

#include "core/error.h"
#include "server/a1111.h"
#include "server/artifacts.h"
#include "server/jobs.h"
#include "server/method_jobs.h"
#include "pipeline/prompt_loras.h"
#include "server/openapi.h"
#include "server/page_assets.h"
#include "server/request_fields.h"

namespace sine::server {

namespace {

constexpr const char* kJson = "application/json";

void send_json(httplib::Response& res, const nlohmann::json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kJson);
}

const char* status_text(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return status >= 500 ? "Server Error" : "Error";
  }
}

// {"error": "Bad Request", "detail": "steps: must be in [1, 1000], got 0", "field": "steps"}
void send_error(httplib::Response& res, int status, const std::string& detail, const std::string& field = "") {
  nlohmann::json body = {{"error", status_text(status)}, {"detail", detail}};
  if (!field.empty()) body["field"] = field;
  send_json(res, body, status);
}

// Runs a handler, turning HttpError / sine::Error / anything else into a JSON error response.
template <class F>
httplib::Server::Handler guarded(F handler) {
  return [handler](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const HttpError& e) {
      send_error(res, e.status(), e.what(), e.field());
    } catch (const Error& e) {
      send_error(res, 400, e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, e.what());
    }
  };
}

std::string sse_event(const JobEvent& e) {
  return "id: " + std::to_string(e.id) + "\nevent: " + e.type + "\ndata: " +
         e.data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

// Compares a presented key with the expected one in time independent of where they differ.
bool constant_time_equal(const std::string& presented, const std::string& expected) {
  if (presented.size() != expected.size() || expected.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < expected.size(); ++i) diff |= static_cast<unsigned char>(presented[i] ^ expected[i]);
  return diff == 0;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

void ServeOptions::validate() const {
  if (host.empty()) throw Error("host: must not be empty");
  if (port < 0 || port > 65535) throw Error("port: must be in [0, 65535] (got " + std::to_string(port) + ")");
  if (!is_loopback_host(host) && api_key.empty())
    throw Error("host: listening on " + host + " (not loopback) needs an API key (--api-key KEY)");
  if (queue_capacity < 1 || queue_capacity > 1000)
    throw Error("queue_capacity: must be in [1, 1000] (got " + std::to_string(queue_capacity) + ")");
  if (max_body_bytes < 1024) throw Error("max_body_bytes: must be at least 1024");
  if (preview_every < 0) throw Error("preview_every: must be 0 or more");
  if (http_threads < 2 || http_threads > 256) throw Error("http_threads: must be in [2, 256]");
  if (data_dir.empty()) throw Error("data_dir: must not be empty");
}

struct Server::Impl {
  Pipeline& pipeline;
  ServeOptions options;
  ArtifactStore artifacts;
  JobQueue queue;
  MethodJobs methods;
  PromptLoras loras;  // used from the worker thread only (through GenerateOptions::apply_loras)
  httplib::Server http;
  ServerSettings settings;
  std::mutex settings_mutex;
  std::shared_ptr<Job> last_a1111_job;  // what /sdapi/v1/progress reports when nothing runs
  std::mutex last_mutex;
  std::atomic<bool> listening{false};

  Impl(Pipeline& p, ServeOptions o)
      : pipeline(p),
        options(std::move(o)),
        artifacts(options.data_dir),
        queue(artifacts, static_cast<size_t>(options.queue_capacity), options.preview_every),
        methods(pipeline, options.model, artifacts, options.image_limits),
        loras(pipeline.model(), options.lora_dir) {
    const auto threads = static_cast<size_t>(options.http_threads);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
    http.set_keep_alive_timeout(30);
    routes();
  }

  ServerSettings current_settings() {
    std::lock_guard<std::mutex> lock(settings_mutex);
    return settings;
  }

  // -- authentication -------------------------------------------------------------------------
  bool authorized(const httplib::Request& req) const {
    if (options.api_key.empty()) return true;
    const auto auth = req.get_header_value("Authorization");
    const std::string bearer = "Bearer ";
    if (auth.rfind(bearer, 0) == 0 && constant_time_equal(auth.substr(bearer.size()), options.api_key)) return true;
    return req.has_param("key") && constant_time_equal(req.get_param_value("key"), options.api_key);
  }

  // -- jobs -----------------------------------------------------------------------------------
  std::shared_ptr<Job> submit_generation(const std::string& kind, GenerationRequest request) {
    request.options.apply_loras = loras.callback();
    auto shared = std::make_shared<GenerationRequest>(std::move(request));
    return queue.submit(kind, shared->parameters, [this, shared](JobContext& job) {
      return run_generation(pipeline, job, *shared);
    });
  }

  void throw_queue_error(httplib::Response& res, const HttpError& e) {
    if (e.status() == 429) res.set_header("Retry-After", std::to_string(queue.retry_after_seconds()));
    throw e;
  }

  // A1111's routes answer when the job is done (they are synchronous in A1111 too).
  void a1111_generate(const httplib::Request& req, httplib::Response& res, bool img2img) {
    auto request = parse_generation_request(parse_json_object(req.body), img2img, current_settings(),
                                            options.image_limits);
    std::shared_ptr<Job> job;
    try {
      job = submit_generation(img2img ? "img2img" : "txt2img", request);
    } catch (const HttpError& e) {
      throw_queue_error(res, e);
    }
    {
      std::lock_guard<std::mutex> lock(last_mutex);
      last_a1111_job = job;
    }
    while (!job->wait_finished(std::chrono::seconds(1))) {
    }
    if (job->state() == JobState::failed) throw HttpError(500, "", job->error());
    // Interrupted: A1111 answers with what it has; here that is the images finished before.
    send_json(res, a1111_response(request, job->images(), job->result(), pipeline));
  }

  nlohmann::json a1111_progress(bool skip_image) {
    auto job = queue.running();
    if (!job) {
      std::lock_guard<std::mutex> lock(last_mutex);
      job = last_a1111_job;
    }
    nlohmann::json state = {{"skipped", false},       {"interrupted", false}, {"job", ""},
                            {"job_count", 0},         {"job_timestamp", "0"}, {"job_no", 0},
                            {"sampling_step", 0},     {"sampling_steps", 0}};
    nlohmann::json out = {{"progress", 0.0}, {"eta_relative", 0.0}, {"state", state},
                          {"current_image", nullptr}, {"textinfo", nullptr}};
    if (!job) return out;
    const auto p = job->progress();
    const bool running = job->state() == JobState::running;
    state["job"] = job->id();
    state["job_count"] = running ? 1 : 0;
    state["interrupted"] = job->state() == JobState::cancelled;
    state["sampling_step"] = p.step;
    state["sampling_steps"] = p.total;
    out["state"] = state;
    if (running) {
      out["progress"] = p.fraction;
      out["eta_relative"] = p.eta_seconds;
      if (!skip_image && !p.preview_png.empty()) out["current_image"] = base64_encode(p.preview_png);
      out["textinfo"] = p.stage;
    }
    return out;
  }

  static nlohmann::json job_kinds() {
    nlohmann::json kinds = {"generate"};
    for (const auto& k : MethodJobs::kinds()) kinds.push_back(k);
    return kinds;
  }

  void native_submit(const httplib::Request& req, httplib::Response& res) {
    const auto body = parse_json_object(req.body);
    Fields f(body);
    const std::string kind = f.string("kind");
    const auto kinds = job_kinds();
    if (kind.empty()) throw bad_field("kind", "required (one of: " + kinds.dump() + ")");
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end())
      throw bad_field("kind", "unknown job kind '" + kind + "' (known: " + kinds.dump() + ")");
    const auto params = f.object("params");
    std::shared_ptr<Job> job;
    try {
      if (kind == "generate") {
        const bool img2img = Fields(params, "params").has("init_images");
        auto request = parse_generation_request(params, img2img, current_settings(), options.image_limits, "params");
        request.save_images = f.boolean("save_images", true);
        job = submit_generation(kind, std::move(request));
      } else {
        auto [runner, summary] = methods.prepare(kind, params);
        job = queue.submit(kind, std::move(summary), std::move(runner));
      }
    } catch (const HttpError& e) {
      throw_queue_error(res, e);
    }
    res.set_header("Location", "/sine/v1/jobs/" + job->id());
    send_json(res, job->to_json(queue.position(*job)), 202);
  }

  std::shared_ptr<Job> find_job(const std::string& id) {
    auto job = queue.find(id);
    if (!job) throw HttpError(404, "", "no job '" + id + "'");
    return job;
  }

  void job_events(const httplib::Request& req, httplib::Response& res, std::shared_ptr<Job> job) {
    int64_t after = 0;
    if (req.has_header("Last-Event-ID")) after = std::atoll(req.get_header_value("Last-Event-ID").c_str());
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto last = std::make_shared<int64_t>(after);
    res.set_chunked_content_provider("text/event-stream", [job, last](size_t, httplib::DataSink& sink) {
      auto events = job->events_after(*last, std::chrono::milliseconds(1000));
      if (events.empty()) {
        if (job->finished()) {
          sink.done();
          return true;
        }
        const std::string keepalive = ": keep-alive\n\n";
        return sink.write(keepalive.data(), keepalive.size());
      }
      for (const auto& e : events) {
        const auto text = sse_event(e);
        if (!sink.write(text.data(), text.size())) return false;
        *last = e.id;
      }
      return true;
    });
  }

  // -- routes ---------------------------------------------------------------------------------
  void routes() {
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, 401, "missing or wrong API key (Authorization: Bearer KEY, or ?key=KEY)");
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 413)
        send_error(res, 413, "request body over the server's limit (--max-body-mb)", "body");
      else if (res.status == 404)
        send_error(res, 404, "no route " + req.method + " " + req.path);
      else
        send_error(res, res.status, status_text(res.status));
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        send_error(res, 500, e.what());
      } catch (...) {
        send_error(res, 500, "unknown error");
      }
    });

    // The page.
    for (const auto& asset : page_assets()) {
      const std::string path = asset.path;
      const std::string media_type = asset.media_type;
      const std::string body(reinterpret_cast<const char*>(asset.data), asset.size);
      http.Get(path == "/index.html" ? "/" : path, [body, media_type](const httplib::Request&, httplib::Response& res) {
        res.set_content(body, media_type.c_str());
      });
    }

    // AUTOMATIC1111.
    http.Post("/sdapi/v1/txt2img", guarded([this](const auto& req, auto& res) { a1111_generate(req, res, false); }));
    http.Post("/sdapi/v1/img2img", guarded([this](const auto& req, auto& res) { a1111_generate(req, res, true); }));
    http.Get("/sdapi/v1/progress", guarded([this](const auto& req, auto& res) {
               const bool skip = req.has_param("skip_current_image") && req.get_param_value("skip_current_image") == "true";
               send_json(res, a1111_progress(skip));
             }));
    http.Post("/sdapi/v1/interrupt", guarded([this](const auto&, auto& res) {
                if (auto job = queue.running()) queue.cancel(job->id());
                send_json(res, nlohmann::json::object());
              }));
    http.Post("/sdapi/v1/skip", guarded([this](const auto&, auto& res) {
                if (auto job = queue.running()) queue.cancel(job->id());
                send_json(res, nlohmann::json::object());
              }));
    http.Get("/sdapi/v1/sd-models", guarded([this](const auto&, auto& res) { send_json(res, a1111_models(pipeline)); }));
    http.Get("/sdapi/v1/loras", guarded([this](const auto&, auto& res) {
               nlohmann::json out = nlohmann::json::array();
               std::error_code ec;
               if (!options.lora_dir.empty())
                 for (const auto& entry : std::filesystem::directory_iterator(options.lora_dir, ec))
                   if (entry.path().extension() == ".safetensors")
                     out.push_back({{"name", entry.path().stem().string()},
                                    {"alias", entry.path().stem().string()},
                                    {"path", entry.path().filename().string()},
                                    {"metadata", nlohmann::json::object()}});
               send_json(res, out);
             }));
    http.Get("/sdapi/v1/samplers", guarded([](const auto&, auto& res) { send_json(res, a1111_samplers()); }));
    http.Get("/sdapi/v1/schedulers", guarded([](const auto&, auto& res) { send_json(res, a1111_schedulers()); }));
    http.Get("/sdapi/v1/options", guarded([this](const auto&, auto& res) {
               const auto s = current_settings();
               send_json(res, {{"sd_model_checkpoint", a1111_model_title(pipeline)},
                               {"CLIP_stop_at_last_layers", s.clip_skip},
                               {"eta_ddim", s.eta_ddim},
                               {"samples_format", "png"}});
             }));
    http.Post("/sdapi/v1/options", guarded([this](const auto& req, auto& res) {
                const auto body = parse_json_object(req.body);
                Fields f(body);
                ServerSettings s = current_settings();
                s.clip_skip = f.integer("CLIP_stop_at_last_layers", s.clip_skip, 1, 12);
                s.eta_ddim = f.number("eta_ddim", s.eta_ddim, 0.0, 1.0);
                if (f.has("sd_model_checkpoint")) {
                  const auto wanted = f.string("sd_model_checkpoint");
                  if (wanted != a1111_model_title(pipeline) && wanted != pipeline.model_name())
                    throw bad_field("sd_model_checkpoint", "this server holds one model, '" +
                                                               a1111_model_title(pipeline) + "' (got '" + wanted + "')");
                }
                {
                  std::lock_guard<std::mutex> lock(settings_mutex);
                  settings = s;
                }
                send_json(res, nullptr);
              }));

    // sine's jobs.
    http.Post("/sine/v1/jobs", guarded([this](const auto& req, auto& res) { native_submit(req, res); }));
    http.Get("/sine/v1/jobs", guarded([this](const auto&, auto& res) {
               nlohmann::json out = nlohmann::json::array();
               for (const auto& job : queue.list()) out.push_back(job->to_json(queue.position(*job)));
               send_json(res, out);
             }));
    http.Get(R"(/sine/v1/jobs/([A-Za-z0-9-]+))", guarded([this](const auto& req, auto& res) {
               auto job = find_job(req.matches[1]);
               send_json(res, job->to_json(queue.position(*job)));
             }));
    http.Get(R"(/sine/v1/jobs/([A-Za-z0-9-]+)/events)",
             guarded([this](const auto& req, auto& res) { job_events(req, res, find_job(req.matches[1])); }));
    http.Delete(R"(/sine/v1/jobs/([A-Za-z0-9-]+))", guarded([this](const auto& req, auto& res) {
                  auto job = find_job(req.matches[1]);
                  const bool cancelled = queue.cancel(job->id());
                  if (!cancelled) throw HttpError(409, "", "job '" + job->id() + "' already finished (" +
                                                               job_state_name(job->state()) + ")");
                  send_json(res, job->to_json(queue.position(*job)), 202);
                }));
    http.Get("/sine/v1/artifacts", guarded([this](const auto&, auto& res) {
               nlohmann::json out = nlohmann::json::array();
               for (const auto& a : artifacts.list()) out.push_back(a.to_json());
               send_json(res, out);
             }));
    http.Get(R"(/sine/v1/artifacts/([A-Za-z0-9-]+))", guarded([this](const auto& req, auto& res) {
               auto a = artifacts.find(req.matches[1]);
               if (!a) throw HttpError(404, "", "no artifact '" + std::string(req.matches[1]) + "'");
               std::ifstream in(artifacts.file_path(*a), std::ios::binary);
               if (!in) throw HttpError(404, "", "artifact '" + a->id + "' has no file");
               std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
               res.set_header("Content-Disposition", "attachment; filename=\"" + a->filename + "\"");
               res.set_content(bytes, a->media_type.c_str());
             }));
    http.Get("/sine/v1/openapi.json", guarded([](const auto&, auto& res) { send_json(res, openapi_document()); }));
    http.Get("/sine/v1/info", guarded([this](const auto&, auto& res) {
               send_json(res, {{"version", SINE_VERSION},
                               {"model", a1111_model_title(pipeline)},
                               {"native_size", pipeline.native_size()},
                               {"samplers", a1111_samplers()},
                               {"job_kinds", job_kinds()},
                               {"queue_capacity", options.queue_capacity},
                               {"max_body_bytes", options.max_body_bytes},
                               {"max_image_side", options.image_limits.max_side}});
             }));
  }
};

Server::Server(Pipeline& pipeline, ServeOptions options) {
  options.validate();
  impl_ = std::make_unique<Impl>(pipeline, std::move(options));
}

Server::~Server() {
  stop();
  impl_->queue.shutdown();
}

int Server::bind() {
  auto& o = impl_->options;
  if (o.port == 0) {
    const int port = impl_->http.bind_to_any_port(o.host);
    if (port <= 0) throw Error("host: cannot listen on " + o.host + " (any port)");
    o.port = port;
  } else if (!impl_->http.bind_to_port(o.host, o.port)) {
    throw Error("port: cannot listen on " + o.host + ":" + std::to_string(o.port) + " (in use, or not allowed)");
  }
  return o.port;
}

void Server::listen() {
  impl_->listening = true;
  impl_->http.listen_after_bind();
  impl_->listening = false;
}

void Server::stop() {
  impl_->queue.shutdown();  // the running job stops at its next step
  impl_->http.stop();
}

}  // namespace sine::server
