#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace sine {

// Copies `tensors[prefix + name]` into every parameter and buffer `name` of `module` (converted
// to the parameter's dtype and device). Missing, unexpected (keys under `prefix` that the module
// lacks) and mis-shaped tensors are a sine::Error naming the key and both shapes; `source` names
// the file in that message. Keys in `ignore_unexpected` (relative to `prefix`) may appear in the file without being part of the module.
void load_module_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                         const std::string& prefix, const std::string& source,
                         const std::vector<std::string>& ignore_unexpected = {});

// The same, taking each tensor out of `tensors` as soon as it is copied, so that a source backed by a
// memory map (SafeTensors::view) gives its pages back one tensor at a time: loading never holds the
// file and the model at once. Every key and shape is checked before the first copy, so an error
// (the same messages as load_module_weights) leaves the module as it was.
void take_module_weights(torch::nn::Module& module, std::map<std::string, torch::Tensor>& tensors,
                         const std::string& prefix, const std::string& source,
                         const std::vector<std::string>& ignore_unexpected = {});

// Deferred loading, in two halves. check_module_weights runs take_module_weights' checks (every key
// and shape under `prefix`, the same messages) without copying; materialize_module_weights gives a
// checked module whose tensors were freed (set to empty) the file's shapes again and takes its
// weights out of `tensors` as take_module_weights does.
void check_module_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                          const std::string& prefix, const std::string& source);
void materialize_module_weights(torch::nn::Module& module, std::map<std::string, torch::Tensor>& tensors,
                                const std::string& prefix, const std::string& source);

// The module's parameters and persistent buffers under `prefix`, as a checkpoint would hold them.
std::map<std::string, torch::Tensor> module_state(const torch::nn::Module& module, const std::string& prefix);

int64_t count_parameters(const torch::nn::Module& module);

}  // namespace sine
