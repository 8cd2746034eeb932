#include "io/model_hash.h"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

fs::path hash_cache_file() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "sine" / "hashes.json";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "sine" / "hashes.json";
  return {};
}

// The file whose hash stands for the model.
fs::path hashed_file(const std::string& model_path) {
  fs::path p(model_path);
  if (!fs::is_directory(p)) return p;
  for (const char* name : {"unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
                           "unet/diffusion_pytorch_model.bin"})
    if (fs::is_regular_file(p / name)) return p / name;
  return {};
}

}  // namespace

std::string sha256_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw Error(path + ": cannot open to hash");
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("sha256: OpenSSL init failed");
  std::vector<unsigned char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) EVP_DigestUpdate(ctx.get(), buf.data(), n);
  if (std::ferror(f.get())) throw Error(path + ": read error while hashing");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

std::string model_short_hash(const std::string& model_path) {
  if (model_path.empty()) return "";
  std::error_code ec;
  const fs::path file = hashed_file(model_path);
  if (file.empty() || !fs::is_regular_file(file, ec)) return "";
  const std::string key = fs::absolute(file, ec).string();
  const auto size = static_cast<int64_t>(fs::file_size(file, ec));
  const auto mtime = static_cast<int64_t>(fs::last_write_time(file, ec).time_since_epoch().count());

  static std::mutex mutex;
  static std::map<std::string, std::tuple<int64_t, int64_t, std::string>> memory;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = memory.find(key); it != memory.end() && std::get<0>(it->second) == size &&
                                  std::get<1>(it->second) == mtime)
    return std::get<2>(it->second).substr(0, 10);

  const fs::path cache_path = hash_cache_file();
  nlohmann::json cache = nlohmann::json::object();
  if (!cache_path.empty()) {
    std::ifstream in(cache_path);
    if (in) cache = nlohmann::json::parse(in, nullptr, false);
    if (!cache.is_object()) cache = nlohmann::json::object();
  }
  std::string hash;
  if (auto it = cache.find(key); it != cache.end() && it->is_object() && it->value("size", int64_t(-1)) == size &&
                                 it->value("mtime", int64_t(-1)) == mtime && it->value("sha256", "").size() == 64) {
    hash = (*it)["sha256"].get<std::string>();
  } else {
    hash = sha256_file(file.string());
    cache[key] = {{"size", size}, {"mtime", mtime}, {"sha256", hash}};
    try {  // a cache that cannot be written only costs the next run a re-hash
      fs::create_directories(cache_path.parent_path());
      write_atomically(cache_path.string(), [&](const std::string& tmp) { std::ofstream(tmp) << cache.dump(1); });
    } catch (const std::exception&) {
    }
  }
  memory[key] = {size, mtime, hash};
  return hash.substr(0, 10);
}

std::string model_display_name(const std::string& model_path) {
  fs::path p(model_path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "folder/" -> "folder"
  return fs::is_directory(p) ? p.filename().string() : p.stem().string();
}

}  // namespace sine
