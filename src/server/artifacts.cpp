#include "server/artifacts.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace sine::server {

namespace fs = std::filesystem;

namespace {

std::string now_iso8601() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Artifact from_json(const nlohmann::json& j) {
  Artifact a;
  a.id = j.value("id", "");
  a.kind = j.value("kind", "");
  a.filename = j.value("filename", "");
  a.media_type = j.value("media_type", "application/octet-stream");
  a.job = j.value("job", "");
  a.bytes = j.value("bytes", int64_t(0));
  a.created = j.value("created", "");
  a.info = j.value("info", nlohmann::json::object());
  return a;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw Error(path.string() + ": cannot write");
}

}  // namespace

bool is_safe_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
  return true;
}

nlohmann::json Artifact::to_json() const {
  return {{"id", id},       {"kind", kind}, {"filename", filename}, {"media_type", media_type}, {"job", job},
          {"bytes", bytes}, {"created", created}, {"info", info},   {"url", "/sine/v1/artifacts/" + id}};
}

ArtifactStore::ArtifactStore(std::string data_dir) : root_(std::move(data_dir)) {
  std::error_code ec;
  fs::create_directories(fs::path(root_) / "artifacts", ec);
  if (ec) throw Error("data_dir: " + root_ + ": cannot create (" + ec.message() + ")");
  fs::remove_all(fs::path(root_) / "staging", ec);  // what a crashed run left
  fs::create_directories(fs::path(root_) / "staging", ec);
  if (ec) throw Error("data_dir: " + root_ + ": cannot create staging (" + ec.message() + ")");
}

Artifact ArtifactStore::stage(const std::string& job, const std::string& kind, const std::string& filename,
                              const std::string& media_type, const std::function<void(const std::string&)>& write,
                              nlohmann::json info) {
  Artifact a;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    a.id = job + "-" + std::to_string(staged_[job].size());
  }
  a.kind = kind;
  a.filename = filename;
  a.media_type = media_type;
  a.job = job;
  a.info = std::move(info);
  a.created = now_iso8601();
  const fs::path dir = fs::path(root_) / "staging" / job / a.id;
  fs::create_directories(dir);
  write((dir / filename).string());
  a.bytes = static_cast<int64_t>(fs::file_size(dir / filename));
  write_text(dir / "artifact.json", from_json(a.to_json()).to_json().dump(2));
  std::lock_guard<std::mutex> lock(mutex_);
  staged_[job].push_back(a);
  return a;
}

void ArtifactStore::commit(const std::string& job) {
  std::vector<Artifact> files;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    files = std::move(staged_[job]);
    staged_.erase(job);
  }
  for (const auto& a : files)
    fs::rename(fs::path(root_) / "staging" / job / a.id, fs::path(root_) / "artifacts" / a.id);
  std::error_code ec;
  fs::remove_all(fs::path(root_) / "staging" / job, ec);
}

void ArtifactStore::discard(const std::string& job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    staged_.erase(job);
  }
  std::error_code ec;
  fs::remove_all(fs::path(root_) / "staging" / job, ec);
}

std::vector<Artifact> ArtifactStore::list() const {
  std::vector<Artifact> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(root_) / "artifacts", ec)) {
    std::ifstream in(entry.path() / "artifact.json");
    if (!in) continue;
    try {
      out.push_back(from_json(nlohmann::json::parse(in)));
    } catch (const nlohmann::json::exception&) {
      continue;  // not one of ours
    }
  }
  std::sort(out.begin(), out.end(), [](const Artifact& a, const Artifact& b) {
    return a.created != b.created ? a.created > b.created : a.id > b.id;
  });
  return out;
}

std::optional<Artifact> ArtifactStore::find(const std::string& id) const {
  if (!is_safe_id(id)) return std::nullopt;
  std::ifstream in(fs::path(root_) / "artifacts" / id / "artifact.json");
  if (!in) return std::nullopt;
  try {
    return from_json(nlohmann::json::parse(in));
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

std::string ArtifactStore::file_path(const Artifact& artifact) const {
  return (fs::path(root_) / "artifacts" / artifact.id / artifact.filename).string();
}

}  // namespace sine::server
