#include "io/checkpoint_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/diffusers_keys.h"

namespace sine {

using nlohmann::json;

namespace {

// Every model hyper-parameter, and whether the tensor shapes determine it (those are checked
// against the shapes instead of being overridden). Runtime switches such as use_checkpoint are
// not model properties and stay out of files.
template <class Config, class Visit>
void visit_fields(Config& c, Visit&& visit) {
  constexpr bool kShape = true, kFree = false;
  visit("unet", "in_channels", c.unet.in_channels, kShape);
  visit("unet", "out_channels", c.unet.out_channels, kShape);
  visit("unet", "model_channels", c.unet.model_channels, kShape);
  visit("unet", "channel_mult", c.unet.channel_mult, kShape);
  visit("unet", "num_res_blocks", c.unet.num_res_blocks, kShape);
  visit("unet", "attention_levels", c.unet.attention_levels, kShape);
  visit("unet", "context_dim", c.unet.context_dim, kShape);
  visit("unet", "transformer_depth", c.unet.transformer_depth, kShape);
  visit("unet", "num_heads", c.unet.num_heads, kFree);
  visit("unet", "norm_groups", c.unet.norm_groups, kFree);
  visit("unet", "sample_size", c.unet.sample_size, kFree);
  visit("vae", "in_channels", c.vae.in_channels, kShape);
  visit("vae", "out_channels", c.vae.out_channels, kShape);
  visit("vae", "ch", c.vae.ch, kShape);
  visit("vae", "ch_mult", c.vae.ch_mult, kShape);
  visit("vae", "num_res_blocks", c.vae.num_res_blocks, kShape);
  visit("vae", "z_channels", c.vae.z_channels, kShape);
  visit("vae", "embed_dim", c.vae.embed_dim, kShape);
  visit("vae", "norm_groups", c.vae.norm_groups, kFree);
  visit("vae", "scaling_factor", c.vae.scaling_factor, kFree);
  visit("text", "vocab_size", c.text.vocab_size, kShape);
  visit("text", "width", c.text.width, kShape);
  visit("text", "layers", c.text.layers, kShape);
  visit("text", "mlp_width", c.text.mlp_width, kShape);
  visit("text", "context_length", c.text.context_length, kShape);
  visit("text", "heads", c.text.heads, kFree);
  visit("text", "layer_norm_eps", c.text.layer_norm_eps, kFree);
  visit("text", "quick_gelu", c.text.quick_gelu, kFree);
}

bool read(const json& j, int64_t& out) {
  if (!j.is_number_integer()) return false;
  out = j.get<int64_t>();
  return true;
}
bool read(const json& j, double& out) {
  if (!j.is_number()) return false;
  out = j.get<double>();
  return true;
}
bool read(const json& j, bool& out) {
  if (!j.is_boolean()) return false;
  out = j.get<bool>();
  return true;
}
bool read(const json& j, std::vector<int64_t>& out) {
  if (!j.is_array()) return false;
  std::vector<int64_t> v;
  for (const auto& e : j) {
    if (!e.is_number_integer()) return false;
    v.push_back(e.get<int64_t>());
  }
  out = v;
  return true;
}
const char* type_name(const int64_t&) { return "an integer"; }
const char* type_name(const double&) { return "a number"; }
const char* type_name(const bool&) { return "true or false"; }
const char* type_name(const std::vector<int64_t>&) { return "a list of integers"; }

const json* find_field(const json& values, const std::string& section, const std::string& name) {
  auto s = values.find(section);
  if (s == values.end() || !s->is_object()) return nullptr;
  auto f = s->find(name);
  return f == s->end() ? nullptr : &*f;
}

template <class T>
T read_field(const json& j, const std::string& section, const std::string& name, const std::string& source) {
  T value{};
  if (!read(j, value))
    throw Error(source + ": config field " + section + "." + name + " must be " + type_name(value) + " (got " +
                j.dump() + ")");
  return value;
}

// Copies `from[from_name]` to `to[section][to_name]` when present and not null.
void copy(const json& from, const char* from_name, json& to, const char* section, const char* to_name) {
  auto it = from.find(from_name);
  if (it != from.end() && !it->is_null()) to[section][to_name] = *it;
}

// Diffusers lets some fields be per-block lists; this code has one value per model.
void copy_uniform(const json& from, const char* from_name, json& to, const char* section, const char* to_name,
                  const std::string& source) {
  auto it = from.find(from_name);
  if (it == from.end() || it->is_null()) return;
  if (!it->is_array()) {
    to[section][to_name] = *it;
    return;
  }
  if (it->empty()) throw Error(source + ": '" + from_name + "' is an empty list");
  for (const auto& v : *it)
    if (v != it->front())
      throw Error(source + ": per-block values of '" + from_name + "' (" + it->dump() +
                  ") are not supported; SD 1.x uses one value for every block");
  to[section][to_name] = it->front();
}

// block_out_channels [c0, c1, ...] is model_channels c0 with multipliers ci / c0.
void copy_block_channels(const json& from, json& to, const char* section, const char* base_name,
                         const char* mult_name, const std::string& source) {
  auto it = from.find("block_out_channels");
  if (it == from.end() || it->is_null()) return;
  if (!it->is_array() || it->empty() || !it->front().is_number_integer() || it->front().get<int64_t>() <= 0)
    throw Error(source + ": block_out_channels must be a non-empty list of positive integers");
  const int64_t base = it->front().get<int64_t>();
  std::vector<int64_t> mult;
  for (const auto& v : *it) {
    if (!v.is_number_integer() || v.get<int64_t>() % base != 0)
      throw Error(source + ": block_out_channels " + it->dump() + " are not multiples of the first entry");
    mult.push_back(v.get<int64_t>() / base);
  }
  to[section][base_name] = base;
  to[section][mult_name] = mult;
}

void copy_activation(const json& from, const char* name, json& to, const std::string& source) {
  auto it = from.find(name);
  if (it == from.end() || it->is_null()) return;
  const std::string act = it->is_string() ? it->get<std::string>() : it->dump();
  if (act != "quick_gelu" && act != "gelu")
    throw Error(source + ": text activation '" + act + "' is not supported (quick_gelu or gelu)");
  to["text"]["quick_gelu"] = act == "quick_gelu";
}

json merge_sections(json low, const json& high) {
  for (const auto& [section, fields] : high.items())
    for (const auto& [name, value] : fields.items()) low[section][name] = value;
  return low;
}

json read_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open config file");
  std::stringstream text;
  text << f.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const std::exception& e) {
    throw Error(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

const std::vector<int64_t>& shape_of(const ShapeMap& shapes, const std::string& key, const std::string& source,
                                     const char* component, size_t min_dims) {
  auto it = shapes.find(key);
  if (it == shapes.end())
    throw Error(source + ": cannot read the " + component + " configuration: tensor '" + key + "' is missing");
  if (it->second.size() < min_dims)
    throw Error(source + ": tensor '" + key + "' has " + std::to_string(it->second.size()) +
                " dimensions, expected at least " + std::to_string(min_dims));
  return it->second;
}

// The block numbers N that occur as `prefix`N.… in the keys.
std::set<int64_t> indices_after(const ShapeMap& shapes, const std::string& prefix) {
  std::set<int64_t> out;
  for (auto it = shapes.lower_bound(prefix); it != shapes.end() && it->first.compare(0, prefix.size(), prefix) == 0;
       ++it) {
    size_t end = it->first.find('.', prefix.size());
    const std::string digits = it->first.substr(prefix.size(), end - prefix.size());
    if (!digits.empty() && digits.size() < 10 && digits.find_first_not_of("0123456789") == std::string::npos)
      out.insert(std::stoll(digits));
  }
  return out;
}

bool has_prefix(const ShapeMap& shapes, const std::string& prefix) {
  auto it = shapes.lower_bound(prefix);
  return it != shapes.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

int64_t multiple_of(int64_t channels, int64_t base, const std::string& key, const std::string& source) {
  if (base <= 0 || channels % base != 0)
    throw Error(source + ": tensor '" + key + "' has " + std::to_string(channels) +
                " channels, not a multiple of the base width " + std::to_string(base));
  return channels / base;
}

void infer_unet(const ShapeMap& s, const std::string& source, UNetConfig& u) {
  const std::string& p = kUNetPrefix;
  const char* what = "UNet";
  const auto& conv_in = shape_of(s, p + "input_blocks.0.0.weight", source, what, 2);
  u.model_channels = conv_in[0];
  u.in_channels = conv_in[1];
  u.out_channels = shape_of(s, p + "out.2.weight", source, what, 1)[0];
  const std::set<int64_t> blocks = indices_after(s, p + "input_blocks.");
  std::set<int64_t> downsamplers;
  for (int64_t k : blocks)
    if (s.count(p + "input_blocks." + std::to_string(k) + ".0.op.weight")) downsamplers.insert(k);
  // Without a downsampler there is one level holding every input block.
  u.num_res_blocks = downsamplers.empty() ? *blocks.rbegin() : *downsamplers.begin() - 1;
  if (u.num_res_blocks < 1) throw Error(source + ": the UNet has no res-blocks in input_blocks");
  const int64_t levels = static_cast<int64_t>(downsamplers.size()) + 1;
  u.channel_mult.clear();
  u.attention_levels.clear();
  for (int64_t level = 0; level < levels; ++level) {
    const std::string block = p + "input_blocks." + std::to_string((u.num_res_blocks + 1) * level + 1);
    const std::string key = block + ".0.out_layers.3.weight";
    u.channel_mult.push_back(multiple_of(shape_of(s, key, source, what, 1)[0], u.model_channels, key, source));
    if (s.count(block + ".1.proj_in.weight")) u.attention_levels.push_back(level);
  }
  const std::string mid = p + "middle_block.1.transformer_blocks.";
  u.context_dim = shape_of(s, mid + "0.attn2.to_k.weight", source, what, 2)[1];
  u.transformer_depth = static_cast<int64_t>(indices_after(s, mid).size());
}

void infer_vae(const ShapeMap& s, const std::string& source, VAEConfig& v) {
  const std::string& p = kVAEPrefix;
  const char* what = "VAE";
  const auto& conv_in = shape_of(s, p + "encoder.conv_in.weight", source, what, 2);
  v.ch = conv_in[0];
  v.in_channels = conv_in[1];
  const std::set<int64_t> levels = indices_after(s, p + "encoder.down.");
  if (levels.empty()) throw Error(source + ": the VAE encoder has no down blocks (" + p + "encoder.down.*)");
  v.num_res_blocks = static_cast<int64_t>(indices_after(s, p + "encoder.down.0.block.").size());
  v.ch_mult.clear();
  for (int64_t level = 0; level <= *levels.rbegin(); ++level) {
    const std::string key = p + "encoder.down." + std::to_string(level) + ".block.0.conv2.weight";
    v.ch_mult.push_back(multiple_of(shape_of(s, key, source, what, 1)[0], v.ch, key, source));
  }
  v.z_channels = shape_of(s, p + "decoder.conv_in.weight", source, what, 2)[1];
  v.out_channels = shape_of(s, p + "decoder.conv_out.weight", source, what, 1)[0];
  v.embed_dim = shape_of(s, p + "post_quant_conv.weight", source, what, 2)[1];
}

void infer_text(const ShapeMap& s, const std::string& source, TextConfig& t) {
  const std::string p = kTextPrefix + "text_model.";
  const char* what = "text encoder";
  const auto& tokens = shape_of(s, p + "embeddings.token_embedding.weight", source, what, 2);
  t.vocab_size = tokens[0];
  t.width = tokens[1];
  t.context_length = shape_of(s, p + "embeddings.position_embedding.weight", source, what, 2)[0];
  t.layers = static_cast<int64_t>(indices_after(s, p + "encoder.layers.").size());
  t.mlp_width = shape_of(s, p + "encoder.layers.0.mlp.fc1.weight", source, what, 1)[0];
  // CLIP's head width is 64; other widths need the count from a config.
  t.heads = t.width % 64 == 0 ? t.width / 64 : 0;
}

std::string set_hint(const std::string& field) {
  const auto dot = field.find('.');
  return " (give the model's value with --model-config '{\"" + field.substr(0, dot) + "\": {\"" + field.substr(dot + 1) +
         "\": N}}' or a <checkpoint>.json sidecar)";
}

}  // namespace

ModelConfig infer_config(const ShapeMap& shapes, const std::string& source) {
  ModelConfig config;
  if (has_prefix(shapes, kUNetPrefix)) infer_unet(shapes, source, config.unet);
  if (has_prefix(shapes, kVAEPrefix)) infer_vae(shapes, source, config.vae);
  if (has_prefix(shapes, kTextPrefix)) infer_text(shapes, source, config.text);
  return config;
}

ModelConfig infer_config(const std::map<std::string, torch::Tensor>& canonical, const std::string& source) {
  ShapeMap shapes;
  for (const auto& [key, t] : canonical) shapes[key] = t.sizes().vec();
  return infer_config(shapes, source);
}

bool ConfigOverrides::empty() const {
  for (const auto& [section, fields] : values.items())
    if (!fields.empty()) return false;
  return true;
}

ConfigOverrides ConfigOverrides::parse(const json& j, const std::string& source) {
  if (!j.is_object())
    throw Error(source + ": a config must be a JSON object with sections \"unet\", \"vae\", \"text\"");
  ModelConfig scratch;
  std::map<std::string, std::set<std::string>> known;
  visit_fields(scratch, [&](const char* section, const char* name, auto&, bool) { known[section].insert(name); });
  for (const auto& [section, fields] : j.items()) {
    auto k = known.find(section);
    if (k == known.end()) throw Error(source + ": unknown config section '" + section + "' (expected unet, vae or text)");
    if (!fields.is_object()) throw Error(source + ": config section '" + section + "' must be a JSON object");
    for (const auto& [name, value] : fields.items())
      if (!k->second.count(name)) {
        std::string list;
        for (const auto& n : k->second) list += (list.empty() ? "" : ", ") + n;
        throw Error(source + ": unknown config field '" + section + "." + name + "' (known: " + list + ")");
      }
  }
  visit_fields(scratch, [&](const char* section, const char* name, auto& value, bool) {
    if (const json* f = find_field(j, section, name))
      value = read_field<std::decay_t<decltype(value)>>(*f, section, name, source);
  });
  ConfigOverrides out;
  out.values = j;
  out.source = source;
  return out;
}

ConfigOverrides ConfigOverrides::parse_text(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const std::exception& e) {
    throw Error(source + ": config is not valid JSON (" + std::string(e.what()) + ")");
  }
  return parse(j, source);
}

ConfigOverrides ConfigOverrides::from_file(const std::string& path) {
  const json j = read_json_file(path);
  if (!j.is_object() || (!j.contains("ldm_equivalent") && !j.contains("diffusers"))) return parse(j, path);
  ConfigOverrides out;
  out.source = path;
  if (auto d = j.find("diffusers"); d != j.end()) {
    if (!d->is_object()) throw Error(path + ": section 'diffusers' must be a JSON object");
    if (auto u = d->find("unet"); u != d->end()) out = out.merged_with(from_diffusers_unet(*u, path));
    if (auto v = d->find("vae"); v != d->end()) out = out.merged_with(from_diffusers_vae(*v, path));
    if (auto t = d->find("text"); t != d->end()) out = out.merged_with(from_transformers_text(*t, path));
  }
  if (auto l = j.find("ldm_equivalent"); l != j.end()) out = out.merged_with(from_ldm_equivalent(*l, path));
  return out;
}

ConfigOverrides ConfigOverrides::from_ldm_equivalent(const json& ldm, const std::string& source) {
  if (!ldm.is_object()) throw Error(source + ": 'ldm_equivalent' must be a JSON object");
  json v = json::object();
  if (auto u = ldm.find("unet"); u != ldm.end() && u->is_object()) {
    for (const char* f : {"in_channels", "out_channels", "model_channels", "num_res_blocks", "channel_mult",
                          "transformer_depth", "context_dim"})
      copy(*u, f, v, "unet", f);
    copy(*u, "norm_num_groups", v, "unet", "norm_groups");
    // num_heads -1 means "derived from num_head_channels" (SD 2.x), which is not SD 1.x.
    if (auto h = u->find("num_heads"); h != u->end() && !(h->is_number_integer() && h->get<int64_t>() < 0))
      v["unet"]["num_heads"] = *h;
    // attention_resolutions lists downsampling factors: level i runs at factor 2^i.
    auto res = u->find("attention_resolutions");
    auto mult = u->find("channel_mult");
    if (res != u->end() && res->is_array() && mult != u->end() && mult->is_array()) {
      std::vector<int64_t> levels;
      for (size_t level = 0; level < mult->size(); ++level)
        for (const auto& r : *res)
          if (r.is_number_integer() && r.get<int64_t>() == (int64_t(1) << level)) levels.push_back(int64_t(level));
      v["unet"]["attention_levels"] = levels;
    }
  }
  if (auto f = ldm.find("first_stage"); f != ldm.end() && f->is_object()) {
    for (const char* n : {"in_channels", "ch", "ch_mult", "num_res_blocks", "z_channels", "embed_dim"})
      copy(*f, n, v, "vae", n);
    copy(*f, "out_ch", v, "vae", "out_channels");
    copy(*f, "norm_num_groups", v, "vae", "norm_groups");
  }
  if (auto c = ldm.find("cond_stage"); c != ldm.end() && c->is_object()) {
    for (const char* n : {"width", "layers", "heads", "mlp_width", "context_length", "vocab_size", "layer_norm_eps"})
      copy(*c, n, v, "text", n);
    copy_activation(*c, "act", v, source);
  }
  copy(ldm, "scale_factor", v, "vae", "scaling_factor");
  return parse(v, source);
}

ConfigOverrides ConfigOverrides::from_diffusers_unet(const json& c, const std::string& source) {
  if (!c.is_object()) throw Error(source + ": the UNet config must be a JSON object");
  json v = json::object();
  copy(c, "in_channels", v, "unet", "in_channels");
  copy(c, "out_channels", v, "unet", "out_channels");
  copy(c, "sample_size", v, "unet", "sample_size");
  copy(c, "norm_num_groups", v, "unet", "norm_groups");
  copy_block_channels(c, v, "unet", "model_channels", "channel_mult", source);
  copy_uniform(c, "layers_per_block", v, "unet", "num_res_blocks", source);
  copy_uniform(c, "cross_attention_dim", v, "unet", "context_dim", source);
  copy_uniform(c, "transformer_layers_per_block", v, "unet", "transformer_depth", source);
  // For SD 1.x diffusers' `attention_head_dim` holds the number of heads; newer files may
  // state it as `num_attention_heads`, which then wins.
  copy_uniform(c, "attention_head_dim", v, "unet", "num_heads", source);
  copy_uniform(c, "num_attention_heads", v, "unet", "num_heads", source);
  if (auto types = c.find("down_block_types"); types != c.end() && types->is_array()) {
    std::vector<int64_t> levels;
    for (size_t i = 0; i < types->size(); ++i)
      if ((*types)[i].is_string() && (*types)[i].get<std::string>().rfind("CrossAttn", 0) == 0)
        levels.push_back(int64_t(i));
    v["unet"]["attention_levels"] = levels;
  }
  return parse(v, source);
}

ConfigOverrides ConfigOverrides::from_diffusers_vae(const json& c, const std::string& source) {
  if (!c.is_object()) throw Error(source + ": the VAE config must be a JSON object");
  json v = json::object();
  copy(c, "in_channels", v, "vae", "in_channels");
  copy(c, "out_channels", v, "vae", "out_channels");
  copy(c, "latent_channels", v, "vae", "z_channels");
  copy(c, "latent_channels", v, "vae", "embed_dim");
  copy(c, "norm_num_groups", v, "vae", "norm_groups");
  copy(c, "scaling_factor", v, "vae", "scaling_factor");
  copy_uniform(c, "layers_per_block", v, "vae", "num_res_blocks", source);
  copy_block_channels(c, v, "vae", "ch", "ch_mult", source);
  return parse(v, source);
}

ConfigOverrides ConfigOverrides::from_transformers_text(const json& c, const std::string& source) {
  if (!c.is_object()) throw Error(source + ": the text encoder config must be a JSON object");
  json v = json::object();
  copy(c, "vocab_size", v, "text", "vocab_size");
  copy(c, "hidden_size", v, "text", "width");
  copy(c, "num_hidden_layers", v, "text", "layers");
  copy(c, "num_attention_heads", v, "text", "heads");
  copy(c, "intermediate_size", v, "text", "mlp_width");
  copy(c, "max_position_embeddings", v, "text", "context_length");
  copy(c, "layer_norm_eps", v, "text", "layer_norm_eps");
  copy_activation(c, "hidden_act", v, source);
  return parse(v, source);
}

ConfigOverrides ConfigOverrides::of(const ModelConfig& config, const std::string& source) {
  ConfigOverrides out;
  out.source = source;
  visit_fields(config, [&](const char* section, const char* name, const auto& value, bool) {
    out.values[section][name] = value;
  });
  return out;
}

ConfigOverrides ConfigOverrides::merged_with(const ConfigOverrides& higher) const {
  ConfigOverrides out;
  out.values = merge_sections(values, higher.values);
  out.source = source.empty() || source == higher.source ? higher.source : source + " + " + higher.source;
  return out;
}

void ConfigOverrides::apply_to(ModelConfig& config) const {
  const std::string from = source.empty() ? "config" : source;
  visit_fields(config, [&](const char* section, const char* name, auto& value, bool from_shapes) {
    const json* f = find_field(values, section, name);
    if (!f) return;
    auto wanted = read_field<std::decay_t<decltype(value)>>(*f, section, name, from);
    if (from_shapes && wanted != value)
      throw Error(from + ": " + section + "." + name + " is " + json(wanted).dump() + " but the checkpoint's tensors give " +
                  json(value).dump());
    value = wanted;
  });
}

void validate_config(const ModelConfig& config, const std::string& source) {
  const auto& u = config.unet;
  for (size_t level = 0; level < u.channel_mult.size(); ++level) {
    const int64_t ch = u.model_channels * u.channel_mult[level];
    const std::string where = " the " + std::to_string(ch) + " channels of UNet level " + std::to_string(level);
    if (u.norm_groups <= 0 || ch % u.norm_groups != 0)
      throw Error(source + ": unet.norm_groups = " + std::to_string(u.norm_groups) + " does not divide" + where +
                  set_hint("unet.norm_groups"));
    const bool attention = std::find(u.attention_levels.begin(), u.attention_levels.end(), int64_t(level)) !=
                           u.attention_levels.end();
    if (attention && (u.num_heads <= 0 || ch % u.num_heads != 0))
      throw Error(source + ": unet.num_heads = " + std::to_string(u.num_heads) + " does not divide" + where +
                  set_hint("unet.num_heads"));
  }
  const auto& v = config.vae;
  for (size_t level = 0; level < v.ch_mult.size(); ++level) {
    const int64_t ch = v.ch * v.ch_mult[level];
    if (v.norm_groups <= 0 || ch % v.norm_groups != 0)
      throw Error(source + ": vae.norm_groups = " + std::to_string(v.norm_groups) + " does not divide the " +
                  std::to_string(ch) + " channels of VAE level " + std::to_string(level) + set_hint("vae.norm_groups"));
  }
  const auto& t = config.text;
  if (t.heads <= 0)
    throw Error(source + ": the text encoder's head count is unknown (width " + std::to_string(t.width) +
                " is not a multiple of CLIP's 64-wide heads)" + set_hint("text.heads"));
  if (t.width % t.heads != 0)
    throw Error(source + ": text.heads = " + std::to_string(t.heads) + " does not divide the text width " +
                std::to_string(t.width) + set_hint("text.heads"));
}

nlohmann::json diffusers_unet_config(const ModelConfig& config) {
  const auto& u = config.unet;
  std::vector<int64_t> channels;
  std::vector<std::string> down, up;
  for (size_t level = 0; level < u.channel_mult.size(); ++level) {
    channels.push_back(u.model_channels * u.channel_mult[level]);
    const bool attention = std::find(u.attention_levels.begin(), u.attention_levels.end(), int64_t(level)) !=
                           u.attention_levels.end();
    down.push_back(attention ? "CrossAttnDownBlock2D" : "DownBlock2D");
    up.insert(up.begin(), attention ? "CrossAttnUpBlock2D" : "UpBlock2D");
  }
  return {{"_class_name", "UNet2DConditionModel"},
          {"_diffusers_version", "0.27.2"},
          {"act_fn", "silu"},
          {"attention_head_dim", u.num_heads},  // diffusers' SD 1.x name for the head count
          {"block_out_channels", channels},
          {"center_input_sample", false},
          {"cross_attention_dim", u.context_dim},
          {"down_block_types", down},
          {"downsample_padding", 1},
          {"flip_sin_to_cos", true},
          {"freq_shift", 0},
          {"in_channels", u.in_channels},
          {"layers_per_block", u.num_res_blocks},
          {"mid_block_scale_factor", 1},
          {"norm_eps", 1e-5},
          {"norm_num_groups", u.norm_groups},
          {"out_channels", u.out_channels},
          {"sample_size", u.sample_size},
          {"transformer_layers_per_block", u.transformer_depth},
          {"up_block_types", up},
          {"use_linear_projection", false}};
}

nlohmann::json diffusers_vae_config(const ModelConfig& config) {
  const auto& v = config.vae;
  // AutoencoderKL has one latent width for both the encoder output and the quantiser.
  if (v.z_channels != v.embed_dim)
    throw Error("diffusers' AutoencoderKL cannot hold a VAE with z_channels " + std::to_string(v.z_channels) +
                " != embed_dim " + std::to_string(v.embed_dim));
  std::vector<int64_t> channels;
  for (int64_t m : v.ch_mult) channels.push_back(v.ch * m);
  return {{"_class_name", "AutoencoderKL"},
          {"_diffusers_version", "0.27.2"},
          {"act_fn", "silu"},
          {"block_out_channels", channels},
          {"down_block_types", std::vector<std::string>(v.ch_mult.size(), "DownEncoderBlock2D")},
          {"in_channels", v.in_channels},
          {"latent_channels", v.z_channels},
          {"layers_per_block", v.num_res_blocks},
          {"norm_num_groups", v.norm_groups},
          {"out_channels", v.out_channels},
          {"sample_size", config.unet.sample_size * v.downsample_factor()},
          {"scaling_factor", v.scaling_factor},
          {"up_block_types", std::vector<std::string>(v.ch_mult.size(), "UpDecoderBlock2D")}};
}

nlohmann::json transformers_text_config(const ModelConfig& config) {
  const auto& t = config.text;
  return {{"architectures", json::array({"CLIPTextModel"})},
          {"attention_dropout", 0.0},
          {"bos_token_id", 0},
          {"dropout", 0.0},
          {"eos_token_id", 2},
          {"hidden_act", t.quick_gelu ? "quick_gelu" : "gelu"},
          {"hidden_size", t.width},
          {"initializer_factor", 1.0},
          {"initializer_range", 0.02},
          {"intermediate_size", t.mlp_width},
          {"layer_norm_eps", t.layer_norm_eps},
          {"max_position_embeddings", t.context_length},
          {"model_type", "clip_text_model"},
          {"num_attention_heads", t.heads},
          {"num_hidden_layers", t.layers},
          {"pad_token_id", 1},
          {"projection_dim", t.width},
          {"torch_dtype", "float32"},
          {"vocab_size", t.vocab_size}};
}

}  // namespace sine
