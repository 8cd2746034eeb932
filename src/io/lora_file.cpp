#include "io/lora_file.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "io/safetensors.h"

namespace sine {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// "unet.down_blocks.0...attn1.to_q" for an LDM module name.
std::string diffusers_module_name(const std::string& ldm_module, const LayoutGeometry& geometry) {
  std::string d = original_to_diffusers(ldm_module + ".weight", geometry);
  return d.substr(0, d.size() - std::string(".weight").size());
}

std::string ldm_module_from_diffusers(const std::string& diffusers_module, const LayoutGeometry& geometry) {
  std::string o = try_diffusers_to_original(diffusers_module + ".weight", geometry);
  if (o.empty()) return "";
  return o.substr(0, o.size() - std::string(".weight").size());
}

torch::Tensor scalar(double v) { return torch::tensor(static_cast<float>(v)); }

}  // namespace

int64_t LoRAWeights::rank() const { return modules.empty() ? 0 : modules.begin()->second.down.size(0); }

int64_t LoRAWeights::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, m] : modules) n += m.down.numel() + m.up.numel();
  return n;
}

LoRAKeyFormat parse_lora_key_format(const std::string& name) {
  if (name == "native" || name == "sine") return LoRAKeyFormat::Native;
  if (name == "kohya") return LoRAKeyFormat::Kohya;
  if (name == "diffusers") return LoRAKeyFormat::Diffusers;
  throw Error("lora_format: unknown LoRA key format '" + name + "' (known: native, kohya, diffusers)");
}

const char* lora_key_format_name(LoRAKeyFormat format) {
  switch (format) {
    case LoRAKeyFormat::Native: return "native";
    case LoRAKeyFormat::Kohya: return "kohya";
    case LoRAKeyFormat::Diffusers: return "diffusers";
  }
  return "?";
}

std::string kohya_module_name(const std::string& ldm_module, const LayoutGeometry& geometry) {
  std::string d = diffusers_module_name(ldm_module, geometry);
  std::string prefix, rest;
  if (starts_with(d, "unet.")) {
    prefix = "lora_unet_";
    rest = d.substr(5);
  } else if (starts_with(d, "text_encoder.")) {
    prefix = "lora_te_";
    rest = d.substr(13);
  } else {
    throw Error("LoRA: module '" + ldm_module + "' is neither UNet nor text encoder");
  }
  std::replace(rest.begin(), rest.end(), '.', '_');
  return prefix + rest;
}

std::map<std::string, torch::Tensor> lora_to_keys(const LoRAWeights& weights, LoRAKeyFormat format,
                                                  const LayoutGeometry& geometry) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [module, m] : weights.modules) {
    torch::Tensor down = m.down.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    torch::Tensor up = m.up.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    const double rank = static_cast<double>(down.size(0));
    switch (format) {
      case LoRAKeyFormat::Native:
        out[module + ".lora_down"] = down;
        out[module + ".lora_up"] = up;
        out[module + ".alpha"] = scalar(m.scale * rank);
        break;
      case LoRAKeyFormat::Kohya: {
        const std::string k = kohya_module_name(module, geometry);
        out[k + ".lora_down.weight"] = down;
        out[k + ".lora_up.weight"] = up;
        out[k + ".alpha"] = scalar(m.scale * rank);
        break;
      }
      case LoRAKeyFormat::Diffusers: {
        const std::string d = diffusers_module_name(module, geometry);
        out[d + ".lora_A.weight"] = down;
        out[d + ".lora_B.weight"] = (up * m.scale).contiguous();
        break;
      }
    }
  }
  return out;
}

LoRAKeyFormat detect_lora_key_format(const std::map<std::string, torch::Tensor>& tensors) {
  for (const auto& [key, t] : tensors) {
    if (starts_with(key, "lora_unet_") || starts_with(key, "lora_te_")) return LoRAKeyFormat::Kohya;
    if (ends_with(key, ".lora_A.weight") || ends_with(key, ".lora_B.weight") || ends_with(key, ".lora.down.weight") ||
        ends_with(key, ".lora.up.weight") || key.find("_lora.down.weight") != std::string::npos ||
        key.find("_lora.up.weight") != std::string::npos || key.find(".lora_linear_layer.") != std::string::npos)
      return LoRAKeyFormat::Diffusers;
    if (ends_with(key, ".lora_down") || ends_with(key, ".lora_up")) return LoRAKeyFormat::Native;
  }
  throw Error("LoRA: no LoRA keys found (expected kohya lora_unet_*/lora_te_*, diffusers *.lora_A.weight or "
              "sine *.lora_down)");
}

namespace {

struct Parts {
  torch::Tensor down, up;
  double alpha = -1;
};

// Splits "<module><suffix>" for the suffixes of one layout; returns {module, role} or {"", ""}.
std::pair<std::string, std::string> split_key(const std::string& key,
                                              const std::vector<std::pair<std::string, std::string>>& suffixes) {
  for (const auto& [suffix, role] : suffixes)
    if (ends_with(key, suffix)) return {key.substr(0, key.size() - suffix.size()), role};
  return {"", ""};
}

// A diffusers module path from one of diffusers' LoRA key spellings.
std::pair<std::string, std::string> split_diffusers_key(const std::string& key) {
  static const std::vector<std::pair<std::string, std::string>> peft = {
      {".lora_A.weight", "down"}, {".lora_B.weight", "up"},         {".lora.down.weight", "down"},
      {".lora.up.weight", "up"},  {".lora_linear_layer.down.weight", "down"}, {".lora_linear_layer.up.weight", "up"},
      {".alpha", "alpha"}};
  auto [module, role] = split_key(key, peft);
  if (module.empty()) {
    // diffusers 0.20 attention processors: <attn>.processor.to_q_lora.down.weight
    static const std::vector<std::pair<std::string, std::string>> processor = {
        {".processor.to_q_lora.down.weight", "to_q/down"},     {".processor.to_q_lora.up.weight", "to_q/up"},
        {".processor.to_k_lora.down.weight", "to_k/down"},     {".processor.to_k_lora.up.weight", "to_k/up"},
        {".processor.to_v_lora.down.weight", "to_v/down"},     {".processor.to_v_lora.up.weight", "to_v/up"},
        {".processor.to_out_lora.down.weight", "to_out.0/down"}, {".processor.to_out_lora.up.weight", "to_out.0/up"}};
    auto [attn, r] = split_key(key, processor);
    if (attn.empty()) return {"", ""};
    const size_t slash = r.find('/');
    module = attn + "." + r.substr(0, slash);
    role = r.substr(slash + 1);
  }
  if (starts_with(module, "down_blocks.") || starts_with(module, "mid_block.") || starts_with(module, "up_blocks."))
    module = "unet." + module;
  else if (starts_with(module, "text_model."))
    module = "text_encoder." + module;
  return {module, role};
}

}  // namespace

LoRAWeights lora_from_keys(const std::map<std::string, torch::Tensor>& tensors, const LayoutGeometry& geometry,
                           const std::vector<std::string>& known_modules, const std::string& source) {
  const LoRAKeyFormat format = detect_lora_key_format(tensors);
  const std::set<std::string> known(known_modules.begin(), known_modules.end());
  std::map<std::string, std::string> kohya_to_ldm;
  if (format == LoRAKeyFormat::Kohya)
    for (const std::string& m : known_modules) kohya_to_ldm[kohya_module_name(m, geometry)] = m;

  std::map<std::string, Parts> parts;
  for (const auto& [key, tensor] : tensors) {
    std::string module, role;
    switch (format) {
      case LoRAKeyFormat::Native:
        std::tie(module, role) =
            split_key(key, {{".lora_down", "down"}, {".lora_up", "up"}, {".alpha", "alpha"}});
        break;
      case LoRAKeyFormat::Kohya: {
        std::string k;
        std::tie(k, role) =
            split_key(key, {{".lora_down.weight", "down"}, {".lora_up.weight", "up"}, {".alpha", "alpha"}});
        if (k.empty()) break;
        auto it = kohya_to_ldm.find(k);
        if (it == kohya_to_ldm.end())
          throw Error(source + ": LoRA module '" + k + "' has no adaptable projection in this model");
        module = it->second;
        break;
      }
      case LoRAKeyFormat::Diffusers: {
        std::string d;
        std::tie(d, role) = split_diffusers_key(key);
        if (d.empty()) break;
        module = ldm_module_from_diffusers(d, geometry);
        if (module.empty()) throw Error(source + ": LoRA module '" + d + "' has no counterpart in this model");
        break;
      }
    }
    if (module.empty()) throw Error(source + ": unexpected key '" + key + "' in a " + lora_key_format_name(format) +
                                    " LoRA file");
    if (!known.empty() && !known.count(module))
      throw Error(source + ": LoRA module '" + module + "' has no adaptable projection in this model");
    Parts& p = parts[module];
    if (role == "down") p.down = tensor.to(torch::kFloat32);
    else if (role == "up") p.up = tensor.to(torch::kFloat32);
    else p.alpha = tensor.to(torch::kFloat64).item<double>();
  }

  LoRAWeights weights;
  for (auto& [module, p] : parts) {
    if (!p.down.defined() || !p.up.defined())
      throw Error(source + ": LoRA module '" + module + "' lacks its " + (p.down.defined() ? "up" : "down") +
                  " matrix");
    if (p.down.dim() != 2 || p.up.dim() != 2 || p.up.size(1) != p.down.size(0))
      throw Error(source + ": LoRA module '" + module + "' has inconsistent shapes down " +
                  c10::str(p.down.sizes()) + " up " + c10::str(p.up.sizes()));
    const double rank = static_cast<double>(p.down.size(0));
    weights.modules[module] = LoRAModule{p.down, p.up, p.alpha < 0 ? 1.0 : p.alpha / rank};
  }
  return weights;
}

void save_lora(const std::string& path, const LoRAWeights& weights, LoRAKeyFormat format,
               const LayoutGeometry& geometry, const std::map<std::string, std::string>& metadata) {
  auto meta = metadata;
  meta["sine.lora_format"] = lora_key_format_name(format);
  meta["sine.lora_rank"] = std::to_string(weights.rank());
  save_safetensors(path, lora_to_keys(weights, format, geometry), meta);
}

LoRAWeights load_lora_file(const std::string& path, const LayoutGeometry& geometry,
                           const std::vector<std::string>& known_modules) {
  return lora_from_keys(load_safetensors(path), geometry, known_modules, path);
}

}  // namespace sine
