#include "io/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/json_file.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace sine {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One model component in both layouts.
struct Component {
  std::string folder;        // diffusers subfolder, also the prefix of its keys in the key lists
  std::string weights_stem;  // diffusers weight file name without extension
  std::string prefix;        // canonical key prefix
  std::string label;
};

const std::vector<Component>& components() {
  static const std::vector<Component> list{
      {"unet", "diffusion_pytorch_model", kUNetPrefix, "UNet"},
      {"vae", "diffusion_pytorch_model", kVAEPrefix, "VAE"},
      {"text_encoder", "model", kTextPrefix, "text encoder"},
  };
  return list;
}

// transformers < 4.0 saved CLIPTextModel without the `text_model.` level.
std::string normalize_ldm_key(const std::string& key) {
  if (starts_with(key, kTextPrefix) && !starts_with(key, kTextPrefix + "text_model."))
    return kTextPrefix + "text_model." + key.substr(kTextPrefix.size());
  return key;
}

// "a.b.c…" -> "a.b", to describe what a file holds when a component is missing.
std::string key_groups(const std::vector<std::string>& keys) {
  std::map<std::string, int> groups;
  for (const auto& k : keys) {
    size_t dot = k.find('.');
    if (dot != std::string::npos) dot = k.find('.', dot + 1);
    groups[k.substr(0, dot)]++;
  }
  std::string out;
  int shown = 0;
  for (const auto& [g, n] : groups) {
    if (shown++ == 8) {
      out += ", ...";
      break;
    }
    out += (out.empty() ? "" : ", ") + g + ".* (" + std::to_string(n) + ")";
  }
  return out.empty() ? "no tensors" : out;
}

void check_components(const std::map<std::string, torch::Tensor>& tensors, const std::vector<std::string>& file_keys,
                      const std::string& source) {
  for (const auto& c : components()) {
    auto it = tensors.lower_bound(c.prefix);
    if (it == tensors.end() || !starts_with(it->first, c.prefix))
      throw Error(source + ": no " + c.label + " tensors (" + c.prefix + "*) found; it holds " + key_groups(file_keys) +
                  ". An SD 1.x checkpoint needs the UNet, the VAE and the CLIP text encoder");
  }
}

CheckpointData load_single_file(const std::string& path) {
  SafeTensors st = SafeTensors::open(path);
  CheckpointData d;
  d.layout = "ldm";
  d.source = path;
  d.metadata = st.metadata();
  for (const auto& key : st.keys()) {
    const std::string canonical = normalize_ldm_key(key);
    if (is_dropped_key(canonical)) {
      d.dropped.push_back(key);
      continue;
    }
    d.tensors[canonical] = to_original_tensor(canonical, st.view(key));
  }
  check_components(d.tensors, st.keys(), path);
  return d;
}

std::string diffusers_weights(const fs::path& dir, const Component& c) {
  const fs::path folder = dir / c.folder;
  for (const char* ext : {".safetensors", ".fp16.safetensors"})
    if (fs::is_regular_file(folder / (c.weights_stem + ext))) return (folder / (c.weights_stem + ext)).string();
  if (!fs::is_directory(folder))
    throw Error(dir.string() + ": not a diffusers folder, " + c.folder +
                "/ is missing (expected unet/, vae/ and text_encoder/, or give a single .safetensors file)");
  for (const char* ext : {".bin", ".fp16.bin"})
    if (fs::exists(folder / (c.weights_stem + ext)))
      throw Error((folder / (c.weights_stem + ext)).string() +
                  ": pickle weights are not supported (loading them can run code); re-save the model with "
                  "safe_serialization=True to get " + c.weights_stem + ".safetensors");
  throw Error(folder.string() + ": no " + c.weights_stem + ".safetensors (or .fp16.safetensors)");
}

CheckpointData load_diffusers(const std::string& path, std::vector<ConfigOverrides>& config_sources) {
  CheckpointData d;
  d.layout = "diffusers";
  d.source = path;
  std::vector<SafeTensors> files;
  std::vector<std::string> prefixed_keys;
  for (const auto& c : components()) {
    files.push_back(SafeTensors::open(diffusers_weights(path, c)));
    for (const auto& key : files.back().keys()) prefixed_keys.push_back(c.folder + "." + key);
    const fs::path config = fs::path(path) / c.folder / "config.json";
    if (!fs::exists(config)) continue;
    const nlohmann::json j = read_json_file(config.string());
    if (c.folder == "unet") config_sources.push_back(ConfigOverrides::from_diffusers_unet(j, config.string()));
    if (c.folder == "vae") config_sources.push_back(ConfigOverrides::from_diffusers_vae(j, config.string()));
    if (c.folder == "text_encoder") config_sources.push_back(ConfigOverrides::from_transformers_text(j, config.string()));
  }
  const LayoutGeometry geometry = LayoutGeometry::from_diffusers_keys(prefixed_keys);
  for (size_t i = 0; i < files.size(); ++i) {
    const Component& c = components()[i];
    const SafeTensors& st = files[i];
    for (const auto& [k, v] : st.metadata()) d.metadata.emplace(k, v);  // the UNet's entries win
    for (const auto& key : st.keys()) {
      const std::string prefixed = c.folder + "." + key;
      // position_ids as in the single-file case; CLIP classes with projection heads add
      // top-level tensors SD does not use.
      if (ends_with(key, "position_ids") || (c.folder == "text_encoder" && !starts_with(key, "text_model."))) {
        d.dropped.push_back(prefixed);
        continue;
      }
      const std::string canonical = try_diffusers_to_original(prefixed, geometry);
      if (canonical.empty())
        throw Error(st.path() + ": tensor '" + key + "' has no counterpart in the SD 1.x layout (is this an SD 1.x " +
                    c.label + "?)");
      if (d.tensors.count(canonical))
        throw Error(st.path() + ": tensor '" + key + "' maps to '" + canonical + "', which another tensor already filled");
      d.tensors[canonical] = to_original_tensor(canonical, st.view(key));
    }
  }
  check_components(d.tensors, prefixed_keys, path);
  return d;
}

// `config` must describe `canonical`: shape-determined fields are compared with the shapes.
void check_config_matches(const std::map<std::string, torch::Tensor>& canonical, const ModelConfig& config,
                          const std::string& path) {
  ModelConfig inferred = infer_config(canonical, path);
  ConfigOverrides::of(config, path + " (config to save)").apply_to(inferred);
}

nlohmann::json sd_scheduler_config() {
  return {{"_class_name", "DDIMScheduler"},
          {"_diffusers_version", "0.27.2"},
          {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"},
          {"beta_start", 0.00085},
          {"clip_sample", false},
          {"num_train_timesteps", 1000},
          {"prediction_type", "epsilon"},
          {"set_alpha_to_one", false},
          {"steps_offset", 1},
          {"timestep_spacing", "leading"}};
}

std::string torch_dtype_name(const std::map<std::string, torch::Tensor>& tensors) {
  if (tensors.empty()) return "float32";
  switch (tensors.begin()->second.scalar_type()) {
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    default: return "float32";
  }
}

}  // namespace

bool is_dropped_key(const std::string& key) {
  if (ends_with(key, "position_ids")) return true;  // optional, and sometimes stored corrupted
  for (const auto& c : components())
    if (starts_with(key, c.prefix)) return false;
  return true;
}

std::string find_sidecar(const std::string& checkpoint_file) {
  const fs::path file(checkpoint_file);
  for (const fs::path& candidate : {fs::path(file).replace_extension(".json"), fs::path(checkpoint_file + ".json"),
                                    file.parent_path() / "config.json"})
    if (fs::is_regular_file(candidate)) return candidate.string();
  return "";
}

CheckpointData load_checkpoint(const std::string& path, const ConfigOverrides& overrides) {
  if (!fs::exists(path))
    throw Error(path + ": no such file or folder (expected a .safetensors checkpoint or a diffusers folder)");
  std::vector<ConfigOverrides> config_sources;  // rising priority
  CheckpointData d;
  if (fs::is_directory(path)) {
    d = load_diffusers(path, config_sources);
  } else {
    for (const char* ext : {".ckpt", ".pt", ".pth", ".bin"})
      if (ends_with(path, ext))
        throw Error(path + ": pickle checkpoints are not supported (loading them can run code); convert it to "
                           ".safetensors first");
    d = load_single_file(path);
    const std::string sidecar = find_sidecar(path);
    if (!sidecar.empty()) config_sources.push_back(ConfigOverrides::from_file(sidecar));
  }
  d.config = infer_config(d.tensors, path);
  if (auto it = d.metadata.find("sine.config"); it != d.metadata.end())
    config_sources.push_back(ConfigOverrides::parse_text(it->second, path + " (metadata sine.config)"));
  if (!overrides.empty()) {
    config_sources.push_back(overrides);
    if (config_sources.back().source.empty()) config_sources.back().source = "--model-config";
  }
  for (const auto& s : config_sources) s.apply_to(d.config);
  validate_config(d.config, path);
  return d;
}

void save_checkpoint(const std::string& path, const std::map<std::string, torch::Tensor>& canonical,
                     const ModelConfig& config, std::map<std::string, std::string> metadata) {
  std::vector<std::string> keys;
  for (const auto& [k, t] : canonical) keys.push_back(k);
  check_components(canonical, keys, path + " (tensors to save)");
  check_config_matches(canonical, config, path);
  metadata["sine.config"] = ConfigOverrides::of(config).values.dump();
  metadata.emplace("format", "pt");
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, t] : canonical) out[k] = to_original_tensor(k, t);
  save_safetensors(path, out, metadata);
}

void save_diffusers(const std::string& dir, const std::map<std::string, torch::Tensor>& canonical,
                    const ModelConfig& config, std::map<std::string, std::string> metadata) {
  std::vector<std::string> keys;
  for (const auto& [k, t] : canonical) keys.push_back(k);
  check_components(canonical, keys, dir + " (tensors to save)");
  check_config_matches(canonical, config, dir);
  const LayoutGeometry geometry = LayoutGeometry::of(config);
  std::map<std::string, std::map<std::string, torch::Tensor>> parts;
  for (const auto& [key, t] : canonical) {
    if (is_dropped_key(key)) continue;
    const std::string mapped = original_to_diffusers(key, geometry);
    const size_t dot = mapped.find('.');
    parts[mapped.substr(0, dot)][mapped.substr(dot + 1)] = to_diffusers_tensor(key, t);
  }
  metadata.emplace("format", "pt");
  nlohmann::json text_config = transformers_text_config(config);
  text_config["torch_dtype"] = torch_dtype_name(parts["text_encoder"]);
  const std::map<std::string, nlohmann::json> configs{
      {"unet", diffusers_unet_config(config)}, {"vae", diffusers_vae_config(config)}, {"text_encoder", text_config}};
  for (const auto& c : components()) {
    const fs::path folder = fs::path(dir) / c.folder;
    fs::create_directories(folder);
    save_safetensors((folder / (c.weights_stem + ".safetensors")).string(), parts[c.folder], metadata);
    write_json_file((folder / "config.json").string(), configs.at(c.folder));
  }
  fs::create_directories(fs::path(dir) / "scheduler");
  write_json_file((fs::path(dir) / "scheduler" / "scheduler_config.json").string(), sd_scheduler_config());
  write_json_file((fs::path(dir) / "model_index.json").string(),
             {{"_class_name", "StableDiffusionPipeline"},
              {"_diffusers_version", "0.27.2"},
              {"requires_safety_checker", false},
              {"scheduler", nlohmann::json::array({"diffusers", "DDIMScheduler"})},
              {"text_encoder", nlohmann::json::array({"transformers", "CLIPTextModel"})},
              {"unet", nlohmann::json::array({"diffusers", "UNet2DConditionModel"})},
              {"vae", nlohmann::json::array({"diffusers", "AutoencoderKL"})}});
}

}  // namespace sine
