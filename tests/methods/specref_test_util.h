#pragma once
// A random-weight pipeline with the shapes-world layout shrunk to milliseconds per step: 64x64
// images, VAE factor 4 -> 16x16 latents, attention at 16x16 and 8x8 (7 self + 7 cross layers),
// and a BPE tokenizer learned from a few captions.
#include <memory>
#include <string>
#include <vector>

#include "models/attention_hook.h"
#include "pipeline/pipeline.h"
#include "tokenizer/bpe_trainer.h"

namespace sine::test {

inline ModelConfig tiny_specref_config(int64_t vocab_size) {
  ModelConfig c;
  c.vae.ch = 8;
  c.vae.ch_mult = {1, 2, 2};
  c.vae.num_res_blocks = 1;
  c.vae.norm_groups = 4;
  c.unet.model_channels = 8;
  c.unet.channel_mult = {1, 2, 2};
  c.unet.num_res_blocks = 1;
  c.unet.attention_levels = {0, 1};
  c.unet.num_heads = 2;
  c.unet.context_dim = 16;
  c.unet.norm_groups = 4;
  c.unet.sample_size = 16;
  c.text.vocab_size = vocab_size;
  c.text.width = 16;
  c.text.layers = 1;
  c.text.heads = 2;
  c.text.mlp_width = 32;
  return c;
}

inline std::shared_ptr<ClipTokenizer> tiny_tokenizer() {
  static const std::vector<std::string> corpus = {
      "a red circle in the center on a white background", "a blue star in the center on a white background",
      "a green square on the left on a yellow background", "a cat sitting on a car", "a dog sitting on a car",
      "a purple striped heart at the top on a gray background", "a big cat riding a bike"};
  return std::make_shared<ClipTokenizer>(train_bpe(corpus, 400));
}

// `dtype`: the networks' dtype. The weights are drawn (and sharpened) in fp32 and then converted, so a
// seed gives the same network, up to rounding, in every dtype; the device is always the CPU.
inline Pipeline tiny_pipeline(uint64_t seed = 0, torch::ScalarType dtype = torch::kFloat32) {
  torch::set_num_threads(1);  // the test machine is shared; one thread avoids spin contention
  torch::manual_seed(seed);
  auto tokenizer = tiny_tokenizer();
  StableDiffusion model(tiny_specref_config(tokenizer->vocab_size()));
  model->eval();
  // Random init gives near-uniform attention; sharper weights make the maps informative.
  torch::NoGradGuard no_grad;
  for (auto& p : model->unet->named_parameters())
    if (p.key().find("attn") != std::string::npos && p.key().find("to_k") != std::string::npos) p.value().mul_(3.0);
  // A small, smooth eps (like a trained model's, which DDIM inversion relies on): scale the output conv.
  for (auto& p : model->unet->out->named_parameters()) p.value().mul_(0.1);
  if (dtype != torch::kFloat32) model->to(torch::kCPU, dtype);
  return Pipeline(model, tokenizer, torch::kCPU, dtype, "tiny-random");
}

// An attention site with two heads on a side x side map.
inline AttentionSite make_site(int step, int layer, bool cross, int64_t side) {
  AttentionSite s;
  s.step = step;
  s.layer = layer;
  s.is_cross = cross;
  s.height = s.width = side;
  s.heads = 2;
  return s;
}

}  // namespace sine::test
