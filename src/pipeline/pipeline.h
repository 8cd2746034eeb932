#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "diffusion/sampler.h"
#include "io/checkpoint.h"
#include "io/generation_parameters.h"
#include "models/stable_diffusion.h"
#include "models/unet_graph.h"
#include "pipeline/prompt_syntax.h"
#include "tokenizer/clip_tokenizer.h"

namespace sine {

struct LoadOptions {
  std::string model;            // single-file .safetensors or diffusers folder; empty = bundled default
  std::string tokenizer;        // folder or file; empty = next to the model / inside it
  std::string config_json;      // optional JSON (file or literal) overriding heads/groups/...
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  // Each network's weights stay in the (memory-mapped) file until the pipeline first uses that
  // network (pipeline/deferred_networks.h); keys and shapes are still checked at load. With
  // GenerateOptions::release_after_use a txt2img then peaks at about one network, not three.
  bool defer_weights = false;
  // The UNet in channels-last (NHWC) memory (UNetModelImpl::set_channels_last).
  bool channels_last = false;
};

// Inpainting: what the masked region starts from before it is re-noised, as A1111's "Masked
// content" (inpainting_fill): fill (the mean colour of the kept pixels), original (the init image),
// latent noise (fresh unit noise in latent space), latent nothing (zero latents).
enum class MaskedContent { fill = 0, original = 1, latent_noise = 2, latent_nothing = 3 };
MaskedContent parse_masked_content(const std::string& name);  // fill, original, latent-noise, latent-nothing
const char* masked_content_name(MaskedContent content);

struct GenerateOptions {
  std::string prompt;
  std::string negative_prompt;
  int64_t width = 0, height = 0;  // 0 = the model's native size
  int64_t steps = 50;
  double cfg_scale = 7.5;
  // The sampling method (diffusion/sampler.h): ddim, euler, euler_a, heun, dpmpp_2m, and the sigma
  // schedule the k-diffusion methods step through (default or Karras).
  std::string sampler = "ddim";
  SigmaSchedule schedule = SigmaSchedule::standard;
  double eta = 0.0;               // DDIM only
  uint64_t seed = 42;
  int64_t clip_skip = 1;
  torch::Tensor init_image;       // uint8 [H,W,3]: img2img when defined
  double strength = 0.75;         // img2img: fraction of the schedule that is re-noised
  torch::Tensor init_latents;     // optional starting noise [1,4,h,w] (scaled latent space)
  std::string init_latents_name;  // where they came from (a file name), for the PNG parameters
  // Inpainting with init_image: float [H,W] in [0,1] at the init image's size, 1 = repaint. After
  // every step the kept region is the init latent re-noised to that step's level, blended in latent
  // space (A1111's masked img2img with a normal model); mask_blur feathers the mask (Gaussian, px).
  torch::Tensor mask;
  int64_t mask_blur = 0;
  // What the masked region starts from (A1111's "Masked content", inpainting_fill 0-3).
  MaskedContent masked_content = MaskedContent::original;
  // Called after every step with the current (scaled) latents, e.g. for a preview; may throw to
  // cancel the run (the exception propagates out of generate).
  std::function<void(int64_t step, int64_t total, const torch::Tensor& latents)> on_latents;
  bool cuda_graph = false;        // CUDA: replay the UNet call as a CUDA graph (models/unet_graph.h)
  // A one-shot run (the CLI's last image): each network's weights are freed as soon as this run no
  // longer needs them (text encoder after the prompts, UNet before the decode), like
  // stable-diffusion.cpp's free_params_immediately; peak memory is then about UNet + VAE, not all
  // three plus the decoder's activations. The pipeline cannot generate again afterwards.
  bool release_after_use = false;
  // Skip the memory estimate (pipeline/memory_estimate.h) and try a size that looks too large.
  bool force = false;
  // AUTOMATIC1111's prompt syntax (pipeline/prompt_syntax.h) in prompt and negative prompt:
  // (emphasis:1.2), [less], BREAK and prompts past 77 tokens in 75-token chunks. The methods keep
  // prompts literal; sine generate and sine serve turn this on.
  bool prompt_syntax = false;
  // With prompt_syntax, <lora:NAME:TE[:UNET]> tags are taken out of the prompts and handed to this
  // before the prompts are encoded, then an empty list after sampling (also when it fails), so the
  // networks are attached for this generation only. Unset, a tag is an error naming it.
  std::function<void(const std::vector<LoraReference>&)> apply_loras;

  // Ranges that hold for every model (NaN/Inf refused); errors name the field ("cfg_scale: ...").
  // Model-dependent checks (sizes a multiple of the VAE factor, clip_skip within the text
  // encoder's layers, memory) happen in Pipeline::generate_latents before anything is allocated.
  void validate() const;
};

// The SD 1.x engine a C++ user calls directly; the CLI and every method wrap it.
class Pipeline {
 public:
  static Pipeline load(const LoadOptions& options);
  Pipeline(StableDiffusion model, std::shared_ptr<ClipTokenizer> tokenizer, torch::Device device,
           torch::ScalarType dtype, std::string source);

  // The whole model (every deferred network is loaded first).
  StableDiffusion& model();
  // How many networks are still waiting in the file (LoadOptions::defer_weights), 0 to 3.
  int64_t deferred_networks() const;
  const ModelConfig& config() const { return model_->config; }
  const ClipTokenizer& tokenizer() const { return *tokenizer_; }
  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }
  const std::string& source() const { return source_; }
  int64_t native_size() const;       // pixels, e.g. 512 for SD 1.5
  int64_t vae_factor() const;        // 8 for SD 1.x
  // {height, width} in pixels, 0 meaning native_size(); throws "width: must be a multiple of F
  // (got WxH)" (or height) where a side is not a multiple of the VAE factor F.
  std::pair<int64_t, int64_t> canvas(int64_t height, int64_t width) const;

  torch::Tensor tokenize(const std::string& prompt) const;                 // I64 [1,77] on device
  torch::Tensor encode_prompt(const std::string& prompt, int64_t clip_skip = 1);  // [1,77,C]
  // A1111's syntax (prompt_syntax.h): each 75-token chunk encoded with SOT/EOT, its hidden states
  // multiplied by the token weights and rescaled to the chunk's original mean; [1, 77·chunks, C].
  // A prompt without syntax encodes exactly as encode_prompt. Extra-network tags must be gone.
  torch::Tensor encode_weighted_prompt(const std::string& prompt, int64_t clip_skip = 1);
  // Image uint8 [H,W,3] -> scaled latent (x 0.18215); sample from the posterior when `generator` is set.
  torch::Tensor encode_image(const torch::Tensor& rgb_u8, std::optional<torch::Generator> generator = std::nullopt);
  torch::Tensor decode_latents(const torch::Tensor& scaled_latents);  // -> [B,3,H,W] in [-1,1] (fp32)
  // UNet ε for scaled latents at timestep t (latents and context cast to the model dtype).
  torch::Tensor predict_eps(const torch::Tensor& latents, const torch::Tensor& t, const torch::Tensor& context);
  // ε_u + s(ε_c − ε_u) with both evaluated as one batch of 2 (uncond first, like diffusers).
  torch::Tensor predict_eps_cfg(const torch::Tensor& latents, double t, const torch::Tensor& uncond,
                                const torch::Tensor& cond, double scale);
  // The ε function of plain classifier-free guidance for the sampling loop: ε_u + s(ε_c − ε_u), one
  // UNet batch of 2 (just ε_c when s = 1). With `graph`, the UNet call is replayed as a CUDA graph
  // (models/unet_graph.h) held in *graph, where the device supports it.
  EpsFunction guided_eps(const torch::Tensor& uncond, const torch::Tensor& cond, double scale,
                         std::optional<UNetGraph>* graph = nullptr);

  // txt2img, or img2img when options.init_image is defined. Returns the final scaled latents.
  torch::Tensor generate_latents(const GenerateOptions& options, const StepCallback& on_step = {});
  // Same, decoded to uint8 [H,W,3].
  torch::Tensor generate(const GenerateOptions& options, const StepCallback& on_step = {});

  // What `options` made at height × width, as A1111's PNG "parameters" (prompt, negative prompt,
  // Steps, Sampler, Schedule type, CFG scale, Seed, Size, Model hash, Model, Denoising strength
  // and Mask blur for img2img, Clip skip). The model is named and hashed, never given by path.
  GenerationParameters describe(const GenerateOptions& options, int64_t height, int64_t width) const;
  std::string model_name() const;  // e.g. "v1-5-pruned-emaonly"
  std::string model_hash() const;  // A1111's 10-hex short hash ("" for a model without a file)

  // Another pipeline over a copy of this one's UNet and text encoder (the VAE and the tokenizer are
  // shared): what a fine-tune changes, made without reading the model file again.
  Pipeline copy_denoiser();

  torch::Generator make_generator(uint64_t seed) const;
  torch::Tensor randn(c10::IntArrayRef shape, torch::Generator& generator) const;  // fp32 on device

 private:
  // Loads `network` from the file if it is deferred; returns whether it did.
  bool load_deferred(torch::nn::Module& network);
  // The networks, each loaded from the file first if it was deferred.
  CLIPTextModel& text_encoder();
  UNetModel& unet();
  AutoencoderKL& vae();

  StableDiffusion model_;
  std::shared_ptr<class DeferredNetworks> deferred_;  // LoadOptions::defer_weights, until all are loaded
  std::shared_ptr<ClipTokenizer> tokenizer_;
  torch::Device device_;
  torch::ScalarType dtype_;
  std::string source_;
  bool released_ = false;  // a release_after_use run freed the weights
};

// Loads the networks alone (no tokenizer), cast to options.device/dtype, in eval mode.
StableDiffusion load_model(const LoadOptions& options, CheckpointData* info = nullptr);

// Finds the tokenizer belonging to a model: `explicit_path` if given, else a `tokenizer/` folder or
// vocab.json+merges.txt / bpe_simple_vocab_16e6.txt.gz beside/inside the model, else the
// vocabulary embedded in the file's metadata (sine's own models carry it).
std::shared_ptr<ClipTokenizer> find_tokenizer(const std::string& model_path, const std::string& explicit_path,
                                              const std::map<std::string, std::string>& metadata);

// The bundled default model (shapes world); empty if this installation has none.
std::string default_model_path();

}  // namespace sine
