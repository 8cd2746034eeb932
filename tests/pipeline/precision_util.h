#pragma once
// The tiny reference model loaded through Pipeline::load in any device/dtype, and its components'
// outputs against the diffusers/transformers fixtures: what the precision tests (CPU and CUDA) share.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "io/safetensors.h"
#include "pipeline/pipeline.h"

namespace sine::test {

inline const std::string kTinyDir = std::string(SINE_SHARED_DIR) + "/reference/tiny";

inline Pipeline load_tiny_pipeline(torch::Device device, torch::ScalarType dtype) {
  LoadOptions o;
  o.model = kTinyDir + "/tiny_sd15_original.safetensors";
  o.config_json = kTinyDir + "/tiny_config.json";
  o.tokenizer = std::string(SINE_SHARED_DIR) + "/data/clip/bpe_simple_vocab_16e6.txt.gz";
  o.device = device;
  o.dtype = dtype;
  return Pipeline::load(o);
}

// max|a − ref| / max(1, max|ref|), printed; NaN/Inf anywhere gives +inf.
inline double relative_error(const torch::Tensor& actual, const torch::Tensor& ref, const std::string& what) {
  auto a = actual.detach().to(torch::kCPU, torch::kFloat64);
  auto r = ref.detach().to(torch::kCPU, torch::kFloat64);
  EXPECT_EQ(a.sizes(), r.sizes()) << what;
  if (!torch::isfinite(a).all().item<bool>()) {
    std::printf("  %-28s NaN/Inf in the output\n", what.c_str());
    return INFINITY;
  }
  const double scale = std::max(1.0, r.abs().max().item<double>());
  const double err = (a - r).abs().max().item<double>() / scale;
  std::printf("  %-28s relative error %.3e\n", what.c_str(), err);
  return err;
}

struct ComponentErrors {
  double text = 0, unet = 0, vae_decode = 0, txt2img = 0;
};

// Every component within `bound`.
inline void expect_within(const ComponentErrors& e, double bound, const std::string& what) {
  EXPECT_LE(e.text, bound) << what << ": text encoder";
  EXPECT_LE(e.unet, bound) << what << ": UNet";
  EXPECT_LE(e.vae_decode, bound) << what << ": VAE decode";
  EXPECT_LE(e.txt2img, bound) << what << ": txt2img";
}

// Text encoder, UNet (B2), VAE decode and the 5-step guided txt2img of the fixtures, each as the
// relative error against the fp32 reference outputs.
inline ComponentErrors tiny_component_errors(torch::Device device, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  Pipeline pipe = load_tiny_pipeline(device, dtype);
  auto& m = pipe.model();
  const auto on = [&](const torch::Tensor& t) { return t.to(device, dtype); };
  ComponentErrors e;
  auto text = load_safetensors(kTinyDir + "/clip_text_io.safetensors");
  e.text = relative_error(m->text_encoder->encode(text.at("input_ids").to(device)).last_hidden_state,
                          text.at("last_hidden_state"), "text encoder");
  auto unet = load_safetensors(kTinyDir + "/unet_io.safetensors");
  e.unet = relative_error(
      m->unet->forward(on(unet.at("latent_b2")), unet.at("timestep_b2").to(device), on(unet.at("context_b2"))),
      unet.at("eps_b2"), "UNet eps (B2)");
  auto vae = load_safetensors(kTinyDir + "/vae_io.safetensors");
  e.vae_decode = relative_error(m->vae->decode(on(vae.at("mean"))), vae.at("decoded_mean"), "VAE decode");
  auto fx = load_safetensors(kTinyDir + "/pipeline_txt2img.safetensors");
  GenerateOptions g;
  g.prompt = "a photograph of an astronaut riding a horse";
  g.steps = 5;
  g.cfg_scale = 7.5;
  g.width = g.height = 128;
  g.init_latents = fx.at("init_latents");
  e.txt2img = relative_error(pipe.generate_latents(g), fx.at("final_latents"), "txt2img final latents");
  return e;
}

}  // namespace sine::test
