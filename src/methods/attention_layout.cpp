#include "methods/attention_layout.h"

#include <algorithm>
#include <set>

#include "core/error.h"

namespace sine {

std::vector<AttentionLayerInfo> attention_layout(const UNetConfig& c, int64_t latent_h, int64_t latent_w) {
  std::vector<AttentionLayerInfo> layers;
  auto has_attention = [&](int64_t level) {
    return std::find(c.attention_levels.begin(), c.attention_levels.end(), level) != c.attention_levels.end();
  };
  const int64_t levels = static_cast<int64_t>(c.channel_mult.size());
  // Spatial sizes follow the UNet's downsamplers (stride-2 conv, padding 1: ceil(h/2)).
  std::vector<std::pair<int64_t, int64_t>> size(levels);
  int64_t h = latent_h, w = latent_w;
  for (int64_t l = 0; l < levels; ++l) {
    size[l] = {h, w};
    h = (h + 1) / 2;
    w = (w + 1) / 2;
  }
  int next = 0;
  auto add = [&](const char* place, int64_t level) {
    for (int64_t d = 0; d < c.transformer_depth; ++d)
      layers.push_back({next++, place, size[level].first, size[level].second, c.model_channels * c.channel_mult[level]});
  };
  for (int64_t l = 0; l < levels; ++l)
    if (has_attention(l))
      for (int64_t r = 0; r < c.num_res_blocks; ++r) add("down", l);
  add("mid", levels - 1);
  for (int64_t l = levels - 1; l >= 0; --l)
    if (has_attention(l))
      for (int64_t r = 0; r <= c.num_res_blocks; ++r) add("up", l);
  return layers;
}

EditLayerRules edit_layer_rules(const UNetConfig& config, int64_t latent_h, int64_t latent_w) {
  EditLayerRules r;
  r.latent_h = latent_h;
  r.latent_w = latent_w;
  r.store_max_pixels = (latent_h / 2) * (latent_w / 2);
  const auto layers = attention_layout(config, latent_h, latent_w);
  int64_t coarsest = -1;
  std::set<int64_t, std::greater<int64_t>> up_sizes;
  for (const auto& l : layers) {
    if (l.place == "mid") continue;
    const int64_t n = l.height * l.width;
    if (coarsest < 0 || n < coarsest) {
      coarsest = n;
      r.blend_h = l.height;
      r.blend_w = l.width;
    }
    if (l.place == "up") up_sizes.insert(n);
  }
  if (coarsest < 0) throw Error("the UNet has no down/up attention layers to edit");
  for (const auto& l : layers)
    if (l.place != "mid" && l.height * l.width == coarsest) r.blend_layers.push_back(l.layer);
  std::set<int64_t> top2;
  for (int64_t n : up_sizes) {
    if (top2.size() == 2) break;
    top2.insert(n);
  }
  for (const auto& l : layers)
    if (l.place == "up" && top2.count(l.height * l.width)) r.sr_layers.push_back(l.layer);
  return r;
}

}  // namespace sine
