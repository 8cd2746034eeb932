#pragma once
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

// What jobs produce (images, fine-tunes, concepts, inversions), kept under DATA/artifacts/<id>/
// as the file plus artifact.json. A job stages its files in DATA/staging/<job>/ and they appear
// only when the job succeeds (one rename per artefact), so a failed, cancelled or crashed job
// leaves nothing visible.
namespace sine::server {

struct Artifact {
  std::string id;          // "<job>-<n>"
  std::string kind;        // "image", "finetune", "concept", "inversion", ...
  std::string filename;    // e.g. "image-0.png"
  std::string media_type;  // e.g. "image/png"
  std::string job;
  int64_t bytes = 0;
  std::string created;     // ISO 8601 UTC
  nlohmann::json info;     // the job's parameters for this file
  nlohmann::json to_json() const;  // + "url"
};

class ArtifactStore {
 public:
  explicit ArtifactStore(std::string data_dir);  // creates the folders, removes stale staging

  // Writes one file of `job` into its staging folder through `write(path)`.
  Artifact stage(const std::string& job, const std::string& kind, const std::string& filename,
                 const std::string& media_type, const std::function<void(const std::string& path)>& write,
                 nlohmann::json info = nlohmann::json::object());
  // Makes the staged files of `job` visible, or throws them away.
  void commit(const std::string& job);
  void discard(const std::string& job);

  std::vector<Artifact> list() const;  // newest first
  std::optional<Artifact> find(const std::string& id) const;
  std::string file_path(const Artifact& artifact) const;

 private:
  std::string root_;
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<Artifact>> staged_;
};

// The id of an artefact or job is [A-Za-z0-9-]+ (no path tricks).
bool is_safe_id(const std::string& id);

}  // namespace sine::server
