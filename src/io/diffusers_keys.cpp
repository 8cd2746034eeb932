#include "io/diffusers_keys.h"

#include <algorithm>
#include <set>

#include "core/error.h"

namespace sine {

namespace {

// A dotted key read token by token. Branches copy the reader, so a failed match never leaves
// a half-consumed key behind.
class KeyReader {
 public:
  explicit KeyReader(const std::string& key) {
    size_t start = 0;
    while (true) {
      size_t dot = key.find('.', start);
      parts_.push_back(key.substr(start, dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
  }
  // Consumes `path` (which may contain dots) if the key continues with it.
  bool eat(const std::string& path) {
    KeyReader want(path);
    if (at_ + want.parts_.size() > parts_.size()) return false;
    for (size_t i = 0; i < want.parts_.size(); ++i)
      if (parts_[at_ + i] != want.parts_[i]) return false;
    at_ += want.parts_.size();
    return true;
  }
  // Consumes a decimal block index.
  bool index(int64_t& value) {
    if (at_ >= parts_.size()) return false;
    const std::string& s = parts_[at_];
    if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
    value = std::stoll(s);
    ++at_;
    return true;
  }
  // Consumes the parameter name that must end the key.
  bool leaf(std::string& name) {
    if (at_ + 1 != parts_.size() || (parts_[at_] != "weight" && parts_[at_] != "bias")) return false;
    name = parts_[at_++];
    return true;
  }

 private:
  std::vector<std::string> parts_;
  size_t at_ = 0;
};

enum class Direction { kToOriginal, kToDiffusers };

// One row of the mapping table: the same module under its diffusers and its original name.
struct NamePair {
  const char* diffusers;
  const char* original;
};

const NamePair kUNetTop[] = {
    {"conv_in", "input_blocks.0.0"},
    {"time_embedding.linear_1", "time_embed.0"},
    {"time_embedding.linear_2", "time_embed.2"},
    {"conv_norm_out", "out.0"},
    {"conv_out", "out.2"},
};
const NamePair kUNetResnet[] = {
    {"norm1", "in_layers.0"},        {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
    {"norm2", "out_layers.0"},       {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"},
};
// Spatial-transformer names are the same in both layouts; listing them rejects foreign keys.
const NamePair kTransformerTop[] = {{"norm", "norm"}, {"proj_in", "proj_in"}, {"proj_out", "proj_out"}};
const NamePair kTransformerBlock[] = {
    {"attn1.to_q", "attn1.to_q"}, {"attn1.to_k", "attn1.to_k"}, {"attn1.to_v", "attn1.to_v"},
    {"attn1.to_out.0", "attn1.to_out.0"}, {"attn2.to_q", "attn2.to_q"}, {"attn2.to_k", "attn2.to_k"},
    {"attn2.to_v", "attn2.to_v"}, {"attn2.to_out.0", "attn2.to_out.0"}, {"ff.net.0.proj", "ff.net.0.proj"},
    {"ff.net.2", "ff.net.2"}, {"norm1", "norm1"}, {"norm2", "norm2"}, {"norm3", "norm3"},
};
const NamePair kVAETop[] = {
    {"encoder.conv_in", "encoder.conv_in"},       {"encoder.conv_out", "encoder.conv_out"},
    {"encoder.conv_norm_out", "encoder.norm_out"}, {"decoder.conv_in", "decoder.conv_in"},
    {"decoder.conv_out", "decoder.conv_out"},     {"decoder.conv_norm_out", "decoder.norm_out"},
    {"quant_conv", "quant_conv"},                 {"post_quant_conv", "post_quant_conv"},
};
const NamePair kVAEResnet[] = {
    {"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"}, {"conv2", "conv2"}, {"conv_shortcut", "nin_shortcut"},
};
const NamePair kVAEAttention[] = {
    {"group_norm", "norm"}, {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out.0", "proj_out"},
};
// Names written by diffusers before 0.14; read, never written.
const NamePair kVAELegacyAttention[] = {{"query", "q"}, {"key", "k"}, {"value", "v"}, {"proj_attn", "proj_out"}};

template <size_t N>
bool rename(const KeyReader& reader, const NamePair (&table)[N], Direction dir, std::string& out) {
  for (const auto& pair : table) {
    KeyReader r = reader;
    const bool to_original = dir == Direction::kToOriginal;
    std::string leaf;
    if (r.eat(to_original ? pair.diffusers : pair.original) && r.leaf(leaf)) {
      out = std::string(to_original ? pair.original : pair.diffusers) + "." + leaf;
      return true;
    }
  }
  return false;
}

bool transformer_tail(KeyReader r, std::string& out) {
  if (rename(r, kTransformerTop, Direction::kToOriginal, out)) return true;
  int64_t block = 0;
  std::string tail;
  if (r.eat("transformer_blocks") && r.index(block) && rename(r, kTransformerBlock, Direction::kToOriginal, tail)) {
    out = "transformer_blocks." + std::to_string(block) + "." + tail;
    return true;
  }
  return false;
}

std::string join(std::initializer_list<std::string> parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ".") + p;
  return out;
}

std::string str(int64_t v) { return std::to_string(v); }

bool has_attention(const LayoutGeometry& g, int64_t level) {
  return std::find(g.unet_attention_levels.begin(), g.unet_attention_levels.end(), level) !=
         g.unet_attention_levels.end();
}

// In the original layout the UNet's blocks are numbered consecutively: each down level holds
// `res` res-blocks (each with its attention in slot 1) and then a downsampler block; each up
// level holds `res + 1` blocks, the last one also carrying the upsampler.
std::string unet_to_original(const std::string& key, const LayoutGeometry& g) {
  const int64_t res = g.unet_num_res_blocks, levels = g.unet_levels;
  std::string tail;
  KeyReader r(key);
  if (rename(r, kUNetTop, Direction::kToOriginal, tail)) return tail;
  int64_t i = 0, j = 0;
  if (KeyReader b = r; b.eat("down_blocks") && b.index(i) && i < levels) {
    if (KeyReader c = b; c.eat("resnets") && c.index(j) && j < res && rename(c, kUNetResnet, Direction::kToOriginal, tail))
      return join({"input_blocks", str((res + 1) * i + j + 1), "0", tail});
    if (KeyReader c = b; c.eat("attentions") && c.index(j) && j < res && transformer_tail(c, tail))
      return join({"input_blocks", str((res + 1) * i + j + 1), "1", tail});
    if (KeyReader c = b; c.eat("downsamplers.0.conv") && i < levels - 1 && c.leaf(tail))
      return join({"input_blocks", str((res + 1) * (i + 1)), "0.op", tail});
    return "";
  }
  if (KeyReader b = r; b.eat("mid_block")) {
    if (KeyReader c = b; c.eat("resnets") && c.index(j) && j < 2 && rename(c, kUNetResnet, Direction::kToOriginal, tail))
      return join({"middle_block", str(2 * j), tail});
    if (KeyReader c = b; c.eat("attentions.0") && transformer_tail(c, tail)) return join({"middle_block.1", tail});
    return "";
  }
  if (KeyReader b = r; b.eat("up_blocks") && b.index(i) && i < levels) {
    if (KeyReader c = b; c.eat("resnets") && c.index(j) && j <= res && rename(c, kUNetResnet, Direction::kToOriginal, tail))
      return join({"output_blocks", str((res + 1) * i + j), "0", tail});
    if (KeyReader c = b; c.eat("attentions") && c.index(j) && j <= res && transformer_tail(c, tail))
      return join({"output_blocks", str((res + 1) * i + j), "1", tail});
    if (KeyReader c = b; c.eat("upsamplers.0.conv") && i < levels - 1 && c.leaf(tail)) {
      const bool attention = has_attention(g, levels - 1 - i);
      return join({"output_blocks", str((res + 1) * i + res), attention ? "2" : "1", "conv", tail});
    }
  }
  return "";
}

std::string unet_to_diffusers(const std::string& key, const LayoutGeometry& g) {
  const int64_t res = g.unet_num_res_blocks, levels = g.unet_levels;
  std::string tail;
  KeyReader r(key);
  if (rename(r, kUNetTop, Direction::kToDiffusers, tail)) return tail;
  int64_t k = 0, slot = 0;
  if (KeyReader b = r; b.eat("input_blocks") && b.index(k) && k > 0 && b.index(slot)) {
    if (k % (res + 1) == 0) {
      const int64_t level = k / (res + 1) - 1;
      if (slot == 0 && level < levels - 1 && b.eat("op") && b.leaf(tail))
        return join({"down_blocks", str(level), "downsamplers.0.conv", tail});
      return "";
    }
    const int64_t i = (k - 1) / (res + 1), j = (k - 1) % (res + 1);
    if (i >= levels) return "";
    if (slot == 0 && rename(b, kUNetResnet, Direction::kToDiffusers, tail))
      return join({"down_blocks", str(i), "resnets", str(j), tail});
    if (slot == 1 && transformer_tail(b, tail)) return join({"down_blocks", str(i), "attentions", str(j), tail});
    return "";
  }
  if (KeyReader b = r; b.eat("middle_block") && b.index(slot)) {
    if ((slot == 0 || slot == 2) && rename(b, kUNetResnet, Direction::kToDiffusers, tail))
      return join({"mid_block.resnets", str(slot / 2), tail});
    if (slot == 1 && transformer_tail(b, tail)) return join({"mid_block.attentions.0", tail});
    return "";
  }
  if (KeyReader b = r; b.eat("output_blocks") && b.index(k) && b.index(slot)) {
    const int64_t i = k / (res + 1), j = k % (res + 1);
    if (i >= levels) return "";
    if (slot == 0 && rename(b, kUNetResnet, Direction::kToDiffusers, tail))
      return join({"up_blocks", str(i), "resnets", str(j), tail});
    if ((slot == 1 || slot == 2) && j == res && i < levels - 1) {
      if (KeyReader c = b; c.eat("conv") && c.leaf(tail)) return join({"up_blocks", str(i), "upsamplers.0.conv", tail});
    }
    if (slot == 1 && transformer_tail(b, tail)) return join({"up_blocks", str(i), "attentions", str(j), tail});
  }
  return "";
}

// The original numbers the decoder's levels from the lowest resolution up, diffusers from the
// top: up.{levels-1-i} is up_blocks.{i}. The encoder's numbering agrees.
std::string vae_to_original(const std::string& key, const LayoutGeometry& g) {
  const int64_t levels = g.vae_levels;
  std::string tail;
  KeyReader r(key);
  if (rename(r, kVAETop, Direction::kToOriginal, tail)) return tail;
  int64_t i = 0, j = 0;
  for (const std::string side : {"encoder", "decoder"}) {
    KeyReader b = r;
    if (!b.eat(side + ".mid_block")) continue;
    if (KeyReader c = b; c.eat("resnets") && c.index(j) && j < 2 && rename(c, kVAEResnet, Direction::kToOriginal, tail))
      return join({side, "mid.block_" + str(j + 1), tail});
    if (KeyReader c = b; c.eat("attentions.0") && (rename(c, kVAEAttention, Direction::kToOriginal, tail) ||
                                                  rename(c, kVAELegacyAttention, Direction::kToOriginal, tail)))
      return join({side, "mid.attn_1", tail});
    return "";
  }
  if (KeyReader b = r; b.eat("encoder.down_blocks") && b.index(i) && i < levels) {
    if (KeyReader c = b; c.eat("resnets") && c.index(j) && rename(c, kVAEResnet, Direction::kToOriginal, tail))
      return join({"encoder.down", str(i), "block", str(j), tail});
    if (KeyReader c = b; c.eat("downsamplers.0.conv") && i < levels - 1 && c.leaf(tail))
      return join({"encoder.down", str(i), "downsample.conv", tail});
    return "";
  }
  if (KeyReader b = r; b.eat("decoder.up_blocks") && b.index(i) && i < levels) {
    const std::string level = str(levels - 1 - i);
    if (KeyReader c = b; c.eat("resnets") && c.index(j) && rename(c, kVAEResnet, Direction::kToOriginal, tail))
      return join({"decoder.up", level, "block", str(j), tail});
    if (KeyReader c = b; c.eat("upsamplers.0.conv") && i < levels - 1 && c.leaf(tail))
      return join({"decoder.up", level, "upsample.conv", tail});
  }
  return "";
}

std::string vae_to_diffusers(const std::string& key, const LayoutGeometry& g) {
  const int64_t levels = g.vae_levels;
  std::string tail;
  KeyReader r(key);
  if (rename(r, kVAETop, Direction::kToDiffusers, tail)) return tail;
  int64_t i = 0, j = 0;
  for (const std::string side : {"encoder", "decoder"}) {
    KeyReader b = r;
    if (!b.eat(side + ".mid")) continue;
    for (int64_t block : {1, 2})
      if (KeyReader c = b; c.eat("block_" + str(block)) && rename(c, kVAEResnet, Direction::kToDiffusers, tail))
        return join({side, "mid_block.resnets", str(block - 1), tail});
    if (KeyReader c = b; c.eat("attn_1") && rename(c, kVAEAttention, Direction::kToDiffusers, tail))
      return join({side, "mid_block.attentions.0", tail});
    return "";
  }
  if (KeyReader b = r; b.eat("encoder.down") && b.index(i) && i < levels) {
    if (KeyReader c = b; c.eat("block") && c.index(j) && rename(c, kVAEResnet, Direction::kToDiffusers, tail))
      return join({"encoder.down_blocks", str(i), "resnets", str(j), tail});
    if (KeyReader c = b; c.eat("downsample.conv") && i < levels - 1 && c.leaf(tail))
      return join({"encoder.down_blocks", str(i), "downsamplers.0.conv", tail});
    return "";
  }
  if (KeyReader b = r; b.eat("decoder.up") && b.index(i) && i < levels) {
    const std::string block = str(levels - 1 - i);
    if (KeyReader c = b; c.eat("block") && c.index(j) && rename(c, kVAEResnet, Direction::kToDiffusers, tail))
      return join({"decoder.up_blocks", block, "resnets", str(j), tail});
    if (KeyReader c = b; c.eat("upsample.conv") && i > 0 && c.leaf(tail))
      return join({"decoder.up_blocks", block, "upsamplers.0.conv", tail});
  }
  return "";
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Maps `key` (under `from_prefix`) with `fn` and puts `to_prefix` in front; "" if unmappable.
template <class Fn>
std::string map_component(const std::string& key, const std::string& from_prefix, const std::string& to_prefix,
                          Fn fn) {
  std::string mapped = fn(key.substr(from_prefix.size()));
  return mapped.empty() ? "" : to_prefix + mapped;
}

// The text encoder differs only by prefix; HF's names all start with "text_model.".
std::string text_tail(const std::string& tail) {
  return starts_with(tail, "text_model.") && tail.size() > 11 ? tail : "";
}

}  // namespace

LayoutGeometry LayoutGeometry::of(const ModelConfig& config) {
  LayoutGeometry g;
  g.unet_levels = static_cast<int64_t>(config.unet.channel_mult.size());
  g.unet_num_res_blocks = config.unet.num_res_blocks;
  g.unet_attention_levels = config.unet.attention_levels;
  g.vae_levels = static_cast<int64_t>(config.vae.ch_mult.size());
  return g;
}

LayoutGeometry LayoutGeometry::from_diffusers_keys(const std::vector<std::string>& keys) {
  std::set<int64_t> down_levels, level0_resnets, attention_levels, vae_levels;
  for (const auto& key : keys) {
    int64_t i = 0, j = 0;
    if (KeyReader r(key); r.eat("unet.down_blocks") && r.index(i)) {
      down_levels.insert(i);
      if (KeyReader c = r; i == 0 && c.eat("resnets") && c.index(j)) level0_resnets.insert(j);
      if (KeyReader c = r; c.eat("attentions")) attention_levels.insert(i);
    }
    if (KeyReader r(key); r.eat("vae.encoder.down_blocks") && r.index(i)) vae_levels.insert(i);
  }
  LayoutGeometry g;
  if (!down_levels.empty()) {
    g.unet_levels = *down_levels.rbegin() + 1;
    if (!level0_resnets.empty()) g.unet_num_res_blocks = *level0_resnets.rbegin() + 1;
    g.unet_attention_levels.assign(attention_levels.begin(), attention_levels.end());
  }
  if (!vae_levels.empty()) g.vae_levels = *vae_levels.rbegin() + 1;
  return g;
}

LayoutGeometry LayoutGeometry::from_original_keys(const std::vector<std::string>& keys) {
  std::set<int64_t> downsamplers, attention_blocks, vae_levels;
  int64_t last_input_block = 0;
  for (const auto& key : keys) {
    int64_t k = 0, slot = 0, i = 0;
    if (KeyReader r(key); r.eat(kUNetPrefix + "input_blocks") && r.index(k) && r.index(slot)) {
      last_input_block = std::max(last_input_block, k);
      if (KeyReader c = r; slot == 0 && c.eat("op")) downsamplers.insert(k);
      if (slot == 1) attention_blocks.insert(k);
    }
    if (KeyReader r(key); r.eat(kVAEPrefix + "encoder.down") && r.index(i)) vae_levels.insert(i);
  }
  LayoutGeometry g;
  if (last_input_block > 0) {
    // Without a downsampler there is a single level holding every input block.
    g.unet_num_res_blocks = downsamplers.empty() ? last_input_block : *downsamplers.begin() - 1;
    g.unet_levels = static_cast<int64_t>(downsamplers.size()) + 1;
    std::set<int64_t> levels;
    for (int64_t k : attention_blocks) levels.insert((k - 1) / (g.unet_num_res_blocks + 1));
    g.unet_attention_levels.assign(levels.begin(), levels.end());
  }
  if (!vae_levels.empty()) g.vae_levels = *vae_levels.rbegin() + 1;
  return g;
}

std::string try_diffusers_to_original(const std::string& key, const LayoutGeometry& g) {
  if (starts_with(key, "unet."))
    return map_component(key, "unet.", kUNetPrefix, [&](const std::string& k) { return unet_to_original(k, g); });
  if (starts_with(key, "vae."))
    return map_component(key, "vae.", kVAEPrefix, [&](const std::string& k) { return vae_to_original(k, g); });
  if (starts_with(key, "text_encoder.")) return map_component(key, "text_encoder.", kTextPrefix, text_tail);
  return "";
}

std::string try_original_to_diffusers(const std::string& key, const LayoutGeometry& g) {
  if (starts_with(key, kUNetPrefix))
    return map_component(key, kUNetPrefix, "unet.", [&](const std::string& k) { return unet_to_diffusers(k, g); });
  if (starts_with(key, kVAEPrefix))
    return map_component(key, kVAEPrefix, "vae.", [&](const std::string& k) { return vae_to_diffusers(k, g); });
  if (starts_with(key, kTextPrefix)) return map_component(key, kTextPrefix, "text_encoder.", text_tail);
  return "";
}

std::string diffusers_to_original(const std::string& key, const LayoutGeometry& g) {
  std::string out = try_diffusers_to_original(key, g);
  if (out.empty())
    throw Error("diffusers tensor '" + key + "' has no counterpart in the SD 1.x single-file layout " +
                "(not an SD 1.x UNet / VAE / CLIP text encoder tensor)");
  return out;
}

std::string original_to_diffusers(const std::string& key, const LayoutGeometry& g) {
  std::string out = try_original_to_diffusers(key, g);
  if (out.empty())
    throw Error("tensor '" + key + "' has no counterpart in the diffusers layout (not an SD 1.x " +
                "model.diffusion_model / first_stage_model / cond_stage_model.transformer tensor)");
  return out;
}

bool is_vae_attention_projection(const std::string& original_key) {
  for (const std::string side : {"encoder", "decoder"})
    for (const std::string proj : {"q", "k", "v", "proj_out"})
      if (original_key == kVAEPrefix + side + ".mid.attn_1." + proj + ".weight") return true;
  return false;
}

torch::Tensor to_original_tensor(const std::string& original_key, const torch::Tensor& tensor) {
  if (is_vae_attention_projection(original_key) && tensor.dim() == 2)
    return tensor.reshape({tensor.size(0), tensor.size(1), 1, 1});
  return tensor;
}

torch::Tensor to_diffusers_tensor(const std::string& original_key, const torch::Tensor& tensor) {
  if (is_vae_attention_projection(original_key) && tensor.dim() == 4 && tensor.size(2) == 1 && tensor.size(3) == 1)
    return tensor.reshape({tensor.size(0), tensor.size(1)});
  return tensor;
}

std::vector<int64_t> to_original_shape(const std::string& original_key, const std::vector<int64_t>& shape) {
  if (is_vae_attention_projection(original_key) && shape.size() == 2) return {shape[0], shape[1], 1, 1};
  return shape;
}

std::vector<int64_t> to_diffusers_shape(const std::string& original_key, const std::vector<int64_t>& shape) {
  if (is_vae_attention_projection(original_key) && shape.size() == 4 && shape[2] == 1 && shape[3] == 1)
    return {shape[0], shape[1]};
  return shape;
}

}  // namespace sine
