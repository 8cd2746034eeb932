#include "io/safetensors_header.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace sine {

size_t safetensors_dtype_size(const std::string& name) {
  static const std::map<std::string, size_t> sizes = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                                      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
  auto it = sizes.find(name);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& path) {
  if (size < 8)
    throw Error(path + ": truncated safetensors file (" + std::to_string(size) +
                " bytes, no room for the 8-byte header length)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len < 2 || header_len > size - 8)
    throw Error(path + ": invalid safetensors header length " + std::to_string(header_len) + " (file has " +
                std::to_string(size) + " bytes; truncated or not safetensors)");
  if (header_len > kMaxSafetensorsHeaderBytes)
    throw Error(path + ": safetensors header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const std::exception& e) {
    throw Error(path + ": safetensors header is not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!header.is_object()) throw Error(path + ": safetensors header is not a JSON object");
  SafetensorsHeader out;
  out.data_offset = 8 + header_len;
  const size_t data_size = size - 8 - header_len;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") {
      if (!it->is_object()) throw Error(path + ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) throw Error(path + ": __metadata__ value for '" + m.key() + "' is not a string");
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& e = *it;
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw Error(path + ": tensor '" + key + "' lacks dtype, shape or data_offsets");
    TensorInfo info;
    if (!e["dtype"].is_string()) throw Error(path + ": tensor '" + key + "' has a non-string dtype");
    info.dtype = e["dtype"].get<std::string>();
    const size_t element = safetensors_dtype_size(info.dtype);
    if (element == 0) throw Error(path + ": tensor '" + key + "' has unsupported dtype '" + info.dtype + "'");
    if (!e["shape"].is_array()) throw Error(path + ": tensor '" + key + "' shape is not a list");
    size_t numel = 1, nbytes = element;  // a scalar (empty shape) is one element
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || (d.is_number_unsigned() ? d.get<uint64_t>() > INT64_MAX : d.get<int64_t>() < 0))
        throw Error(path + ": tensor '" + key + "' has an invalid dimension in its shape");
      info.shape.push_back(d.get<int64_t>());
      // A wrapped-around count could match a small byte range and later allocate petabytes.
      if (__builtin_mul_overflow(numel, static_cast<size_t>(d.get<int64_t>()), &numel) ||
          __builtin_mul_overflow(numel, element, &nbytes))
        throw Error(path + ": tensor '" + key + "' shape is too large (element count overflows)");
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw Error(path + ": tensor '" + key + "' data_offsets must be two non-negative integers");
    info.begin = off[0].get<size_t>();
    info.end = off[1].get<size_t>();
    if (info.end < info.begin || info.end > data_size)
      throw Error(path + ": tensor '" + key + "' byte range [" + std::to_string(info.begin) + ", " +
                  std::to_string(info.end) + ") lies outside the data section (" + std::to_string(data_size) +
                  " bytes; file truncated?)");
    if (info.end - info.begin != nbytes)
      throw Error(path + ": tensor '" + key + "' header says " + std::to_string(info.end - info.begin) +
                  " bytes but shape x " + info.dtype + " needs " + std::to_string(nbytes));
    out.infos[key] = std::move(info);
  }
  std::vector<std::pair<size_t, std::string>> ranges;
  for (const auto& [k, v] : out.infos)
    if (v.end > v.begin) ranges.emplace_back(v.begin, k);
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& prev = out.infos.at(ranges[i - 1].second);
    if (ranges[i].first < prev.end)
      throw Error(path + ": tensors '" + ranges[i - 1].second + "' and '" + ranges[i].second +
                  "' overlap in the data section");
  }
  return out;
}

}  // namespace sine
