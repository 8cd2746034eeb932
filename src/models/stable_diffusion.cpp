#include "models/stable_diffusion.h"

namespace sine {

namespace {

// Empty holders that only give the checkpoint's intermediate names ("model", "transformer").
struct NamedHolderImpl : torch::nn::Module {};
TORCH_MODULE(NamedHolder);

}  // namespace

StableDiffusionImpl::StableDiffusionImpl(const ModelConfig& cfg, const OnBuilt& on_built) : config(cfg) {
  unet = UNetModel(cfg.unet);
  if (on_built) on_built(*unet, kUNetPrefix);
  vae = AutoencoderKL(cfg.vae);
  if (on_built) on_built(*vae, kVAEPrefix);
  text_encoder = CLIPTextModel(cfg.text);
  if (on_built) on_built(*text_encoder, kTextPrefix);
  auto model = register_module("model", NamedHolder());
  model->register_module("diffusion_model", unet);
  register_module("first_stage_model", vae);
  auto cond = register_module("cond_stage_model", NamedHolder());
  cond->register_module("transformer", text_encoder);
}

}  // namespace sine
