#pragma once
#include <string>

// The short model hash AUTOMATIC1111 writes as "Model hash" (the first 10 hex digits of the
// SHA-256 of the checkpoint file) and the model's display name ("Model"), so a PNG names the
// model without carrying the user's local path.
namespace sine {

// Lower-case hex SHA-256 of a file's bytes (OpenSSL), read in 1 MiB blocks.
std::string sha256_file(const std::string& path);

// A1111's short hash of a model: the single file, or for a diffusers folder its UNet weights file.
// Cached by absolute path, size and modification time in memory and in
// $XDG_CACHE_HOME/sine/hashes.json (~/.cache/...), so a multi-GB checkpoint is read once.
// "" when the model has no file (e.g. built in memory).
std::string model_short_hash(const std::string& model_path);

// "v1-5-pruned-emaonly" for ".../v1-5-pruned-emaonly.safetensors", the folder's name for a
// diffusers folder.
std::string model_display_name(const std::string& model_path);

}  // namespace sine
