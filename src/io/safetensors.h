#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors_header.h"

namespace sine {

// A memory-mapped, fully validated .safetensors file. Opening checks the header length, the
// JSON, every dtype, that shape x dtype size equals each byte range, that ranges lie inside
// the file and do not overlap; any violation is a sine::Error naming the file and tensor.
class SafeTensors {
 public:
  static SafeTensors open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& infos() const { return infos_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> keys() const;
  bool contains(const std::string& key) const { return infos_.count(key) != 0; }
  const TensorInfo& info(const std::string& key) const;
  // A CPU tensor (a copy, in the file's dtype) of one entry.
  torch::Tensor get(const std::string& key) const;
  std::map<std::string, torch::Tensor> all() const;
  // A read-only CPU tensor over the memory map itself (no copy; it keeps the file mapped). When the
  // last reference goes, its pages are handed back to the kernel, so a loader that copies one tensor
  // at a time into the model never holds the file's pages and the model's at once. Never write to it.
  // Falls back to a copy when the bytes are not aligned to the element size.
  torch::Tensor view(const std::string& key) const;

 private:
  struct Mapping;
  std::shared_ptr<Mapping> map_;
  std::string path_;
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
  const uint8_t* data_ = nullptr;  // start of the data section
};

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

// Writes atomically (temp file + rename). Tensors are saved contiguous from CPU in their dtype.
void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

torch::ScalarType safetensors_dtype(const std::string& name);  // throws on unknown
std::string safetensors_dtype_name(torch::ScalarType type);

}  // namespace sine
