#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace sine {

namespace {

struct DtypeEntry {
  const char* name;
  torch::ScalarType type;
  size_t size;
};
const DtypeEntry kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},    {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

}  // namespace

torch::ScalarType safetensors_dtype(const std::string& name) {
  const DtypeEntry* d = find_dtype(name);
  if (!d) throw Error("unsupported safetensors dtype '" + name + "'");
  return d->type;
}

std::string safetensors_dtype_name(torch::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return d.name;
  throw Error(std::string("cannot store dtype ") + c10::toString(type) + " in safetensors");
}

struct SafeTensors::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && size) munmap(addr, size);
  }
};

SafeTensors SafeTensors::open(const std::string& path) {
  SafeTensors st;
  st.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat sb {};
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  size_t file_size = static_cast<size_t>(sb.st_size);
  if (file_size < 8) {
    ::close(fd);
    parse_safetensors_header(nullptr, file_size, path);  // throws: too short
  }
  st.map_ = std::make_shared<Mapping>();
  st.map_->addr = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (st.map_->addr == MAP_FAILED) {
    st.map_->addr = nullptr;
    throw Error(path + ": cannot memory-map (" + std::strerror(errno) + ")");
  }
  st.map_->size = file_size;
  auto header = parse_safetensors_header(static_cast<const uint8_t*>(st.map_->addr), file_size, path);
  st.data_ = static_cast<const uint8_t*>(st.map_->addr) + header.data_offset;
  st.infos_ = std::move(header.infos);
  st.metadata_ = std::move(header.metadata);
  return st;
}

std::vector<std::string> SafeTensors::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : infos_) out.push_back(k);
  return out;
}

const TensorInfo& SafeTensors::info(const std::string& key) const {
  auto it = infos_.find(key);
  if (it == infos_.end()) throw Error(path_ + ": no tensor named '" + key + "'");
  return it->second;
}

torch::Tensor SafeTensors::get(const std::string& key) const {
  const TensorInfo& ti = info(key);
  auto out = torch::empty(ti.shape, torch::TensorOptions().dtype(safetensors_dtype(ti.dtype)));
  if (ti.end > ti.begin) std::memcpy(out.data_ptr(), data_ + ti.begin, ti.end - ti.begin);
  return out;
}

torch::Tensor SafeTensors::view(const std::string& key) const {
  const TensorInfo& ti = info(key);
  const DtypeEntry* dt = find_dtype(ti.dtype);
  const uint8_t* begin = data_ + ti.begin;
  if (ti.end == ti.begin || reinterpret_cast<uintptr_t>(begin) % dt->size != 0) return get(key);
  auto mapping = map_;
  const size_t length = ti.end - ti.begin;
  auto release = [mapping, begin, length](void*) {
    // Whole pages inside the range only: a neighbour's pages stay (they fault back in if needed).
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t lo = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
    const uintptr_t hi = (reinterpret_cast<uintptr_t>(begin) + length) / page * page;
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  };
  return torch::from_blob(const_cast<uint8_t*>(begin), ti.shape, release, torch::TensorOptions().dtype(dt->type));
}

std::map<std::string, torch::Tensor> SafeTensors::all() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : infos_) out[k] = get(k);
  return out;
}

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  return SafeTensors::open(path).all();
}

void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> blobs;
  size_t offset = 0;
  for (const auto& [key, t] : tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    size_t nbytes = c.numel() * c.element_size();
    header[key] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                   {"shape", c.sizes().vec()},
                   {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    blobs.push_back(c);
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error(path + ": cannot open for writing");
    uint64_t n = text.size();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    f.write(reinterpret_cast<const char*>(len), 8);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& b : blobs)
      f.write(static_cast<const char*>(b.data_ptr()), static_cast<std::streamsize>(b.numel() * b.element_size()));
    f.close();
    if (!f) throw Error(path + ": write failed (disk full?)");
  });
}

}  // namespace sine
