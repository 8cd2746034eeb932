#include "models/lora.h"

#include <ATen/CPUGeneratorImpl.h>

#include "core/error.h"

namespace sine {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

const std::string kUNet = "model.diffusion_model.";
const std::string kText = "cond_stage_model.transformer.";

std::map<std::string, AdaptableLinear> adaptable_linears(StableDiffusion& model, bool unet, bool text) {
  std::map<std::string, AdaptableLinear> out;
  for (const auto& item : model->named_modules("", false)) {
    auto linear = std::dynamic_pointer_cast<AdaptableLinearImpl>(item.value());
    if (!linear) continue;
    const std::string& name = item.key();
    if ((unet && starts_with(name, kUNet)) || (text && starts_with(name, kText))) out.emplace(name, AdaptableLinear(linear));
  }
  return out;
}


}  // namespace

std::vector<std::string> lora_target_modules(StableDiffusion& model, bool unet, bool text_encoder) {
  std::vector<std::string> names;
  for (const auto& [name, linear] : adaptable_linears(model, unet, text_encoder)) names.push_back(name);
  return names;
}

// ---------------------------------------------------------------------------------------------

LoRANetwork LoRANetwork::attach(StableDiffusion& model, const LoRAConfig& config) {
  if (config.rank <= 0) throw Error("LoRA: --rank must be positive (got " + std::to_string(config.rank) + ")");
  if (!config.unet && !config.text_encoder) throw Error("LoRA: neither the UNet nor the text encoder is selected");
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(config.seed);
  std::vector<Entry> entries;
  for (auto& [name, linear] : adaptable_linears(model, config.unet, config.text_encoder)) {
    const auto device = linear->weight.device();
    torch::Tensor down = (torch::randn({config.rank, linear->in_features}, gen, torch::kFloat32) / config.rank).to(device);
    torch::Tensor up = torch::zeros({linear->out_features, config.rank}, torch::dtype(torch::kFloat32).device(device));
    entries.push_back(Entry{name, linear, LoRAModule{down, up, 1.0}});
  }
  return attach_entries(model, std::move(entries), config.name, config.scale);
}

LoRANetwork LoRANetwork::attach(StableDiffusion& model, const LoRAWeights& weights, const std::string& name,
                                double scale) {
  auto linears = adaptable_linears(model, true, true);
  std::vector<Entry> entries;
  for (const auto& [module, m] : weights.modules) {
    auto it = linears.find(module);
    if (it == linears.end()) throw Error("LoRA '" + name + "': the model has no adaptable projection '" + module + "'");
    AdaptableLinear linear = it->second;
    const auto device = linear->weight.device();
    if (m.down.dim() != 2 || m.up.dim() != 2 || m.down.size(1) != linear->in_features ||
        m.up.size(0) != linear->out_features || m.up.size(1) != m.down.size(0))
      throw Error("LoRA '" + name + "': shapes of '" + module + "' (down " + c10::str(m.down.sizes()) + ", up " +
                  c10::str(m.up.sizes()) + ") do not fit the projection [" + std::to_string(linear->out_features) +
                  ", " + std::to_string(linear->in_features) + "]");
    // Given weights are for inference: the projection's own dtype (fresh, trainable adapters above
    // stay fp32, the master weights of mixed-precision training).
    const auto dtype = linear->weight.scalar_type();
    entries.push_back(Entry{module, linear,
                            LoRAModule{m.down.detach().to(device, dtype).clone(), m.up.detach().to(device, dtype).clone(),
                                       m.scale}});
  }
  return attach_entries(model, std::move(entries), name, scale);
}

LoRANetwork LoRANetwork::attach_entries(StableDiffusion& model, std::vector<Entry> entries, const std::string& name,
                                        double scale) {
  if (name.empty()) throw Error("LoRA: a network needs a name");
  for (const Entry& e : entries)
    for (const LoRAAdapter& a : e.linear->adapters)
      if (a.name == name) throw Error("LoRA: a network named '" + name + "' is already attached to " + e.module);
  LoRANetwork net;
  net.name_ = name;
  net.scale_ = scale;
  net.entries_ = std::move(entries);
  for (Entry& e : net.entries_) {
    e.lora.down.requires_grad_(true);
    e.lora.up.requires_grad_(true);
    e.linear->adapters.push_back(LoRAAdapter{name, e.lora.down, e.lora.up, scale * e.lora.scale});
  }
  net.attached_ = true;
  return net;
}

std::vector<std::pair<std::string, torch::Tensor>> LoRANetwork::parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const Entry& e : entries_) {
    out.emplace_back(e.module + ".lora_down", e.lora.down);
    out.emplace_back(e.module + ".lora_up", e.lora.up);
  }
  return out;
}

LoRAWeights LoRANetwork::weights() const {
  LoRAWeights w;
  for (const Entry& e : entries_)
    w.modules[e.module] = LoRAModule{e.lora.down.detach().to(torch::kCPU).clone(),
                                     e.lora.up.detach().to(torch::kCPU).clone(), e.lora.scale};
  return w;
}

LoRAAdapter* LoRANetwork::find_adapter(Entry& entry) {
  for (LoRAAdapter& a : entry.linear->adapters)
    if (a.name == name_) return &a;
  return nullptr;
}

void LoRANetwork::set_scale(double scale) {
  scale_ = scale;
  for (Entry& e : entries_)
    if (LoRAAdapter* a = find_adapter(e)) a->scale = scale * e.lora.scale;
}

void LoRANetwork::remove() {
  for (Entry& e : entries_) {
    auto& list = e.linear->adapters;
    list.erase(std::remove_if(list.begin(), list.end(), [&](const LoRAAdapter& a) { return a.name == name_; }),
               list.end());
  }
  attached_ = false;
}

void LoRANetwork::merge() {
  if (!attached_) throw Error("LoRA '" + name_ + "': cannot merge a network that is not attached");
  {
    torch::NoGradGuard no_grad;
    for (Entry& e : entries_) {
      torch::Tensor delta = (scale_ * e.lora.scale) * torch::matmul(e.lora.up.detach(), e.lora.down.detach());
      e.linear->weight.add_(delta.to(e.linear->weight.device(), e.linear->weight.scalar_type()));
    }
  }
  remove();
}

void freeze(torch::nn::Module& module) {
  for (auto& p : module.parameters()) p.requires_grad_(false);
}

LoRAWeights load_lora(const std::string& path, StableDiffusion& model) {
  return load_lora_file(path, LayoutGeometry::of(model->config), lora_target_modules(model));
}

}  // namespace sine
