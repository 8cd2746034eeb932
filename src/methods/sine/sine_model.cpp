#include "methods/sine/sine_model.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/diffusers_keys.h"
#include "io/safetensors.h"
#include "models/lora.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

constexpr const char* kKind = "sine-finetune";

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

const std::string& need(const std::map<std::string, std::string>& m, const std::string& key, const std::string& src) {
  auto it = m.find(key);
  if (it == m.end()) throw Error(src + ": not a SINE fine-tune (metadata '" + key + "' missing)");
  return it->second;
}

template <class T>
T parse_number(const std::string& text, const std::string& key, const std::string& src) {
  try {
    size_t used = 0;
    T v;
    if constexpr (std::is_same_v<T, double>)
      v = std::stod(text, &used);
    else if constexpr (std::is_same_v<T, uint64_t>)
      v = std::stoull(text, &used);
    else
      v = std::stoll(text, &used);
    if (used != text.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (const std::exception&) {
    throw Error(src + ": metadata '" + key + "' is not a number ('" + text + "')");
  }
}

}  // namespace

std::map<std::string, std::string> SineModelInfo::to_metadata() const {
  std::map<std::string, std::string> m;
  m["sine.kind"] = kKind;
  m["sine.base_model"] = base_model;
  m["sine.base_size"] = std::to_string(base_size);
  m["sine.base_fingerprint"] = base_fingerprint;
  m["sine.prompt"] = prompt;
  m["sine.class"] = class_word;
  m["sine.template"] = prompt_template;
  m["sine.mode"] = sine_mode_name(mode);
  m["sine.steps"] = std::to_string(steps);
  char lr_text[32];
  std::snprintf(lr_text, sizeof lr_text, "%.9g", lr);
  m["sine.lr"] = lr_text;
  m["sine.seed"] = std::to_string(seed);
  m["sine.grid"] = grid ? nlohmann::json{{"channels", grid->channels},
                                         {"size", grid->size},
                                         {"interpolation", grid_interpolation_name(grid->interpolation)}}
                              .dump()
                        : "none";
  m["sine.lora_rank"] = std::to_string(lora_rank);
  m["sine.storage"] = storage;
  m["sine.training_size"] = std::to_string(training_size);
  return m;
}

SineModelInfo SineModelInfo::from_metadata(const std::map<std::string, std::string>& m, const std::string& src) {
  if (need(m, "sine.kind", src) != kKind) throw Error(src + ": not a SINE fine-tune (sine.kind is not " + kKind + ")");
  SineModelInfo i;
  i.base_model = need(m, "sine.base_model", src);
  i.base_size = parse_number<int64_t>(need(m, "sine.base_size", src), "sine.base_size", src);
  i.base_fingerprint = need(m, "sine.base_fingerprint", src);
  i.prompt = need(m, "sine.prompt", src);
  i.class_word = need(m, "sine.class", src);
  i.prompt_template = need(m, "sine.template", src);
  i.mode = parse_sine_mode(need(m, "sine.mode", src));
  i.steps = parse_number<int64_t>(need(m, "sine.steps", src), "sine.steps", src);
  i.lr = parse_number<double>(need(m, "sine.lr", src), "sine.lr", src);
  i.seed = parse_number<uint64_t>(need(m, "sine.seed", src), "sine.seed", src);
  const std::string& grid = need(m, "sine.grid", src);
  if (grid != "none") {
    try {
      auto j = nlohmann::json::parse(grid);
      PositionalGridConfig g;
      g.channels = j.at("channels").get<int64_t>();
      g.size = j.at("size").get<int64_t>();
      g.interpolation = parse_grid_interpolation(j.at("interpolation").get<std::string>());
      i.grid = g;
    } catch (const nlohmann::json::exception& e) {
      throw Error(src + ": metadata 'sine.grid' is not valid (" + e.what() + ")");
    }
  }
  i.lora_rank = parse_number<int64_t>(need(m, "sine.lora_rank", src), "sine.lora_rank", src);
  i.storage = need(m, "sine.storage", src);
  if (i.storage != "delta-f16" && i.storage != "lora")
    throw Error(src + ": unknown sine.storage '" + i.storage + "'");
  i.training_size = parse_number<int64_t>(need(m, "sine.training_size", src), "sine.training_size", src);
  return i;
}

std::string weights_fingerprint(StableDiffusion& model) {
  torch::NoGradGuard no_grad;
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 1099511628211ULL;
  };
  auto add = [&](const std::string& prefix, torch::nn::Module& m) {
    for (const auto& item_ : m.named_parameters()) {
      const std::string& name = item_.key();
      const torch::Tensor& p = item_.value();
      for (char c : prefix + name) mix(static_cast<unsigned char>(c));
      auto half = p.detach().to(torch::kCPU, torch::kHalf).contiguous();
      const auto* data = static_cast<const uint16_t*>(half.data_ptr());
      const int64_t n = half.numel();
      uint64_t acc = 0;
      for (int64_t k = 0; k < n; ++k) acc = acc * 0x100000001b3ULL + data[k] + 1;
      mix(acc);
      mix(static_cast<uint64_t>(n));
    }
  };
  add(StableDiffusionImpl::kUNetPrefix, *model->unet);
  add(StableDiffusionImpl::kTextPrefix, *model->text_encoder);
  return hex64(h);
}

void save_sine_model(const std::string& path, SineFinetuner& ft, const std::string& base_model) {
  torch::NoGradGuard no_grad;
  const SineFinetuneConfig& c = ft.config();
  SineModelInfo info;
  info.base_model = base_model;
  std::error_code ec;
  info.base_size = (!base_model.empty() && fs::is_regular_file(base_model, ec))
                       ? static_cast<int64_t>(fs::file_size(base_model, ec))
                       : -1;
  info.prompt = ft.prompt();
  info.class_word = c.class_word;
  info.prompt_template = c.prompt_template;
  info.mode = c.mode;
  info.steps = ft.trainer().step();
  info.lr = c.lr;
  info.seed = c.seed;
  if (ft.grid()) info.grid = ft.grid()->config();
  info.lora_rank = c.lora_rank;
  info.training_size = ft.pipeline().native_size();

  StableDiffusion& model = ft.pipeline().model();
  std::map<std::string, torch::Tensor> tensors;
  if (ft.lora()) {
    info.storage = "lora";
    // The adapters are not part of the base weights, so the base fingerprint is the model's own.
    info.base_fingerprint = weights_fingerprint(model);
    tensors = lora_to_keys(ft.lora()->weights(), LoRAKeyFormat::Native, LayoutGeometry::of(model->config));
  } else {
    info.storage = "delta-f16";
    info.base_fingerprint = ft.base_fingerprint();  // hashed before training
    for (const auto& [name, p] : ft.trained_parameters()) {
      auto delta = (p.detach().to(torch::kCPU, torch::kFloat32) - ft.base_weights().at(name).to(torch::kFloat32));
      if (!delta.abs().max().item<float>()) continue;  // unchanged: stored implicitly
      tensors[name] = delta.to(torch::kHalf).contiguous();
    }
  }
  save_safetensors(path, tensors, info.to_metadata());
}

SineModelInfo read_sine_model_info(const std::string& path) {
  if (!fs::exists(path)) throw Error(path + ": SINE model file does not exist");
  SafeTensors file = SafeTensors::open(path);
  return SineModelInfo::from_metadata(file.metadata(), path);
}

SineModelInfo apply_sine_model(Pipeline& pipeline, const std::string& path, bool check_base) {
  if (!fs::exists(path)) throw Error(path + ": SINE model file does not exist");
  return apply_sine_model(pipeline, SafeTensors::open(path), path, check_base);
}

SineModelInfo apply_sine_model(Pipeline& pipeline, const SafeTensors& file, const std::string& path, bool check_base) {
  SineModelInfo info = SineModelInfo::from_metadata(file.metadata(), path);
  StableDiffusion& model = pipeline.model();
  if (info.grid && info.grid->channels != model->config.unet.model_channels)
    throw Error(path + ": its positional grid has " + std::to_string(info.grid->channels) +
                " channels but the base UNet has model_channels " + std::to_string(model->config.unet.model_channels));
  if (check_base) {
    const std::string fp = weights_fingerprint(model);
    if (fp != info.base_fingerprint)
      throw Error(path + ": fine-tuned from a different base model (" + info.base_model + ", fingerprint " +
                  info.base_fingerprint + "; the loaded base has " + fp + ")");
  }
  torch::NoGradGuard no_grad;
  if (info.storage == "lora") {
    LoRAWeights weights = lora_from_keys(file.all(), LayoutGeometry::of(model->config),
                                         lora_target_modules(model), path);
    LoRANetwork net = LoRANetwork::attach(model, weights, "sine");
    net.merge();
    return info;
  }
  std::map<std::string, torch::Tensor> params;
  for (const auto& item_ : model->unet->named_parameters()) {
    const std::string& name = item_.key();
    const torch::Tensor& p = item_.value();
    params[StableDiffusionImpl::kUNetPrefix + name] = p;
  }
  for (const auto& item : model->text_encoder->named_parameters())
    params[StableDiffusionImpl::kTextPrefix + item.key()] = item.value();
  for (const auto& key : file.keys()) {
    auto it = params.find(key);
    if (it == params.end()) throw Error(path + ": tensor '" + key + "' is not a UNet or text-encoder weight of the base");
    torch::Tensor delta = file.get(key);
    if (delta.sizes() != it->second.sizes())
      throw Error(path + ": tensor '" + key + "' has the wrong shape for the base model");
    auto& p = it->second;
    p.detach().copy_((p.detach().to(torch::kFloat32) + delta.to(p.device(), torch::kFloat32)).to(p.scalar_type()));
  }
  return info;
}

}  // namespace sine
