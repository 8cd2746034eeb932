#include "models/weights.h"

#include <sstream>

#include "core/error.h"

namespace sine {

namespace {

std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

// The module's parameters and buffers as (checkpoint key, tensor) pairs, once every key and shape
// of `tensors` under `prefix` is checked against them: nothing is copied before all of it holds.
std::vector<std::pair<std::string, torch::Tensor>> checked_targets(torch::nn::Module& module,
                                                                   const std::map<std::string, torch::Tensor>& tensors,
                                                                   const std::string& prefix, const std::string& source,
                                                                   const std::vector<std::string>& ignore_unexpected) {
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (auto& p : module.named_parameters(true)) targets.emplace_back(prefix + p.key(), p.value());
  for (auto& b : module.named_buffers(true)) targets.emplace_back(prefix + b.key(), b.value());
  std::set<std::string> expected;
  for (const auto& [key, dst] : targets) {
    expected.insert(key);
    auto it = tensors.find(key);
    if (it == tensors.end()) throw Error(source + ": missing tensor '" + key + "' (expected shape " + shape_str(dst.sizes()) + ")");
    if (it->second.sizes() != dst.sizes())
      throw Error(source + ": tensor '" + key + "' has shape " + shape_str(it->second.sizes()) +
                  " but the model expects " + shape_str(dst.sizes()));
  }
  for (const auto& [key, t] : tensors) {
    if (key.compare(0, prefix.size(), prefix) != 0 || expected.count(key)) continue;
    bool ignored = false;
    for (const auto& ig : ignore_unexpected)
      if (key == prefix + ig) ignored = true;
    if (!ignored) throw Error(source + ": unexpected tensor '" + key + "' " + shape_str(t.sizes()) + " (not part of the model)");
  }
  return targets;
}

// A weight that is NaN/Inf (a corrupt file, or a value past the range of the dtype it was converted
// to) would turn every image black; refuse it at load, naming the key.
void copy_finite(torch::Tensor& dst, const torch::Tensor& src, const std::string& key, const std::string& source) {
  dst.copy_(src);  // converts dtype and device on the way
  if (dst.is_floating_point() && !torch::isfinite(dst).all().item<bool>())
    throw Error(source + ": tensor '" + key + "' contains NaN or Inf" +
                (src.scalar_type() != dst.scalar_type() && torch::isfinite(src).all().item<bool>()
                     ? std::string(" after conversion to ") + c10::toString(dst.scalar_type()) + " (values out of its range)"
                     : std::string()));
}

}  // namespace

void load_module_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                         const std::string& prefix, const std::string& source,
                         const std::vector<std::string>& ignore_unexpected) {
  torch::NoGradGuard no_grad;
  for (auto& [key, dst] : checked_targets(module, tensors, prefix, source, ignore_unexpected))
    copy_finite(dst, tensors.at(key), key, source);
}

void take_module_weights(torch::nn::Module& module, std::map<std::string, torch::Tensor>& tensors,
                         const std::string& prefix, const std::string& source,
                         const std::vector<std::string>& ignore_unexpected) {
  torch::NoGradGuard no_grad;
  for (auto& [key, dst] : checked_targets(module, tensors, prefix, source, ignore_unexpected)) {
    auto it = tensors.find(key);
    copy_finite(dst, it->second, key, source);  // one at a time: a memory-mapped source gives its pages back
    tensors.erase(it);
  }
}

void check_module_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                          const std::string& prefix, const std::string& source) {
  checked_targets(module, tensors, prefix, source, {});
}

void materialize_module_weights(torch::nn::Module& module, std::map<std::string, torch::Tensor>& tensors,
                                const std::string& prefix, const std::string& source) {
  torch::NoGradGuard no_grad;
  auto restore = [&](const std::string& name, torch::Tensor& t) {
    auto it = tensors.find(prefix + name);  // a key missing now is reported by take_module_weights
    if (it != tensors.end()) t.set_data(torch::empty(it->second.sizes(), t.options()));  // filled by the copy
  };
  for (auto& p : module.named_parameters(true)) restore(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) restore(b.key(), b.value());
  take_module_weights(module, tensors, prefix, source);
}

std::map<std::string, torch::Tensor> module_state(const torch::nn::Module& module, const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : module.named_parameters(true)) out[prefix + p.key()] = p.value().detach();
  for (const auto& b : module.named_buffers(true)) out[prefix + b.key()] = b.value().detach();
  return out;
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters(true)) n += p.numel();
  return n;
}

}  // namespace sine
