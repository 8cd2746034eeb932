#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/config.h"

// Where every attention layer of a UNet sits, derived from its config alone, and the rules that
// turn SD 1.5's fixed numbers in Prompt-to-Prompt and SpecRef into rules relative to the model's
// latent size and attention layout:
//
//   official (SD 1.5, 64x64 latent)        rule                                       tiny (16x16, attention at 16/8)
//   maps stored when N <= 32^2             every resolution below the latent's        8x8 and 4x4
//   P2P self-replacement when N <= 32^2    the same set                               8x8 and 4x4
//   LocalBlend / M_t maps at 16^2          the coarsest down/up attention resolution  8x8
//     (down_cross[2:4] + up_cross[:3])       (its down and up cross layers)           (down 1, up 3-4)
//   SR-attention layers 10..15             decoder self-attention at the two           up layers 3..6
//                                            highest resolutions
//   LocalBlend mask at 64^2                the latent size                            16x16
namespace sine {

struct AttentionLayerInfo {
  int layer = 0;       // index among self (= among cross) attention layers, execution order
  std::string place;   // "down", "mid", "up"
  int64_t height = 0, width = 0;
  int64_t channels = 0;  // query width C of the layer
};

// Layers in execution order for a latent of latent_h x latent_w (SD 1.5 at 64x64: 16 layers,
// 64,64,32,32,16,16 | 8 | 16,16,16,32,32,32,64,64,64). Matches the sites the UNet reports.
std::vector<AttentionLayerInfo> attention_layout(const UNetConfig& config, int64_t latent_h, int64_t latent_w);

struct EditLayerRules {
  int64_t latent_h = 0, latent_w = 0;
  int64_t store_max_pixels = 0;        // maps with N <= this are stored / self-replaced
  int64_t blend_h = 0, blend_w = 0;    // LocalBlend and M_t map resolution
  std::vector<int> blend_layers;       // cross layers at that resolution, down and up (not mid)
  std::vector<int> sr_layers;          // self layers for SR-attention
};
EditLayerRules edit_layer_rules(const UNetConfig& config, int64_t latent_h, int64_t latent_w);

}  // namespace sine
