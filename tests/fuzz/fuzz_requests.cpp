// libFuzzer: the server's request bodies as the HTTP handlers read them, on the bundled model.
// An input is "KIND\nBODY": KIND txt2img or img2img goes through AUTOMATIC1111's request parser
// (fields, types, ranges, override_settings, base64 images and masks, sizes against the limits);
// a method job kind (finetune, edit, insert-train, insert-generate, invert, p2p, specref) through
// MethodJobs::prepare (its params read into the method's config, images decoded, artefact ids
// looked up) without running the job. Only sine::Error (HttpError among them) may come out.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "core/error.h"
#include "pipeline/pipeline.h"
#include "server/a1111.h"
#include "server/artifacts.h"
#include "server/method_jobs.h"
#include "server/request_fields.h"

namespace {

struct Served {
  std::filesystem::path data_dir;  // the artefact store's folder, removed at exit
  sine::Pipeline pipeline;
  sine::server::ArtifactStore artifacts;
  sine::server::ImageLimits limits{128, 128 * 128};  // small, so a fuzzed image decodes fast
  sine::server::MethodJobs jobs;

  explicit Served(const std::filesystem::path& dir)
      : data_dir(dir),
        pipeline(sine::Pipeline::load(sine::LoadOptions{})),  // the bundled model
        artifacts(dir.string()),
        jobs(pipeline, sine::LoadOptions{}, artifacts, limits) {}
  ~Served() {
    std::error_code ignored;
    std::filesystem::remove_all(data_dir, ignored);
  }
};

Served& served() {
  static std::unique_ptr<Served> s = [] {
    torch::set_num_threads(1);
    const auto dir = std::filesystem::temp_directory_path() / ("sine-fuzz-requests-" + std::to_string(::getpid()));
    return std::make_unique<Served>(dir);
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  served();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const auto newline = input.find('\n');
  if (newline == std::string::npos) return 0;
  const std::string kind = input.substr(0, newline);
  Served& s = served();
  try {
    const auto body = sine::server::parse_json_object(input.substr(newline + 1));
    if (kind == "txt2img" || kind == "img2img")
      (void)sine::server::parse_generation_request(body, kind == "img2img", sine::server::ServerSettings{}, s.limits);
    else
      (void)s.jobs.prepare(kind, body);
  } catch (const sine::Error&) {
  }
  return 0;
}
