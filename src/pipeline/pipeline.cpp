#include "pipeline/pipeline.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/validate.h"
#include "core/runtime.h"
#include "diffusion/ddim.h"
#include "diffusion/guidance.h"
#include "diffusion/noise_schedule.h"
#include "io/image.h"
#include "io/model_hash.h"
#include "models/unet_graph.h"
#include "models/weights.h"
#include "pipeline/deferred_networks.h"
#include "pipeline/memory_estimate.h"
#include "core/torch_compat.h"

namespace sine {

namespace fs = std::filesystem;

std::string default_model_path() {
  if (const char* env = std::getenv("SINE_MODEL")) return env;
#ifdef SINE_DEFAULT_MODEL
  if (fs::exists(SINE_DEFAULT_MODEL)) return SINE_DEFAULT_MODEL;
#endif
  return "";
}

std::shared_ptr<ClipTokenizer> find_tokenizer(const std::string& model_path, const std::string& explicit_path,
                                              const std::map<std::string, std::string>& metadata) {
  auto from_path = [](const std::string& p) {
    if (fs::is_directory(p)) return std::make_shared<ClipTokenizer>(ClipTokenizer::from_dir(p));
    if (p.size() > 3 && p.compare(p.size() - 3, 3, ".gz") == 0)
      return std::make_shared<ClipTokenizer>(ClipTokenizer::from_bpe_gz(p));
    throw Error("tokenizer: " + p + ": expected a folder with vocab.json + merges.txt or a bpe_simple_vocab_16e6.txt.gz file");
  };
  if (!explicit_path.empty()) {
    if (!fs::exists(explicit_path)) throw Error("tokenizer: " + explicit_path + ": no such file or folder");
    return from_path(explicit_path);
  }
  auto has_tokenizer = [](const fs::path& dir) {
    return fs::exists(dir / "vocab.json") || fs::exists(dir / "bpe_simple_vocab_16e6.txt.gz");
  };
  fs::path model(model_path);
  std::vector<fs::path> candidates;
  if (fs::is_directory(model)) {
    candidates = {model / "tokenizer", model};
  } else {
    fs::path dir = model.parent_path().empty() ? fs::path(".") : model.parent_path();
    candidates = {dir / (model.stem().string() + ".tokenizer"), dir / "tokenizer", dir};
  }
  for (const auto& c : candidates)
    if (fs::is_directory(c) && has_tokenizer(c)) return from_path(c.string());
  auto vocab = metadata.find("sine.tokenizer.vocab");
  auto merges = metadata.find("sine.tokenizer.merges");
  if (vocab != metadata.end() && merges != metadata.end())
    return std::make_shared<ClipTokenizer>(ClipTokenizer::from_strings(vocab->second, merges->second));
  throw Error(model_path + ": no tokenizer found beside the model; pass --tokenizer DIR (a folder with vocab.json + "
              "merges.txt, or bpe_simple_vocab_16e6.txt.gz)");
}

namespace {

// --model-config: a JSON file, or JSON text given inline.
ConfigOverrides parse_config_flag(const std::string& value) {
  if (value.empty()) return {};
  if (fs::exists(value)) return ConfigOverrides::from_file(value);
  return ConfigOverrides::parse_text(value, "--model-config");
}

std::string resolve_model_path(const LoadOptions& options) {
  std::string path = options.model.empty() ? default_model_path() : options.model;
  if (path.empty()) throw Error("model: no model given and no bundled default model found (set SINE_MODEL or pass -m)");
  if (!fs::exists(path)) throw Error("model: " + path + ": no such file or folder");
  return path;
}

// The inpainting mask at the output's size, [1,1,H,W] in [0,1]: fitted to the output like the init
// image, feathered by a Gaussian of σ = blur px (A1111's mask_blur).
torch::Tensor pixel_mask(const torch::Tensor& mask, const torch::Tensor& init_image, int64_t height, int64_t width,
                         int64_t blur) {
  if (mask.dim() != 2 || mask.size(0) != init_image.size(0) || mask.size(1) != init_image.size(1))
    throw Error("mask: shape " + c10::str(mask.sizes()) + " does not match the init image (" +
                std::to_string(init_image.size(1)) + "x" + std::to_string(init_image.size(0)) + ")");
  if (blur < 0) throw Error("mask_blur: must be >= 0 (got " + std::to_string(blur) + ")");
  auto m8 = (mask.to(torch::kFloat32).clamp(0, 1) * 255).round().to(torch::kUInt8).unsqueeze(-1).expand({-1, -1, 3});
  auto m = fit_image(m8.contiguous(), height, width, FitPolicy::CenterCrop)
               .select(2, 0).to(torch::kFloat32).div(255).view({1, 1, height, width});
  if (blur > 0) {
    const int64_t radius = 3 * blur;
    auto x = torch::arange(-radius, radius + 1, torch::kFloat32);
    auto g = torch::exp(-(x * x) / (2.0 * static_cast<double>(blur * blur)));
    g = g / g.sum();
    namespace F = torch::nn::functional;
    m = F::pad(m, F::PadFuncOptions({radius, radius, radius, radius}).mode(torch::kReplicate));
    m = F::conv2d(m, g.view({1, 1, 1, -1}));
    m = F::conv2d(m, g.view({1, 1, -1, 1}));
  }
  return m;
}

// Masked content "fill": the masked pixels (mask >= 0.5) take the mean colour of the kept ones
// (A1111 spreads neighbouring colours in by repeated blurs; the mean is what that tends to).
torch::Tensor fill_masked(const torch::Tensor& rgb_u8, const torch::Tensor& mask_11hw) {
  auto img = rgb_u8.to(torch::kFloat32);
  auto keep = (mask_11hw[0][0] < 0.5).to(torch::kFloat32).unsqueeze(-1);
  if (keep.sum().item<double>() < 1) return rgb_u8;
  auto mean = (img * keep).sum(std::vector<int64_t>{0, 1}) / keep.sum();
  return (img * keep + mean * (1 - keep)).round().clamp(0, 255).to(torch::kUInt8).contiguous();
}

// The same mask area-averaged per latent pixel, [1,1,h,w].
torch::Tensor latent_mask(const torch::Tensor& mask, const torch::Tensor& init_image, int64_t height, int64_t width,
                          int64_t blur, int64_t factor) {
  return torch::avg_pool2d(pixel_mask(mask, init_image, height, width, blur), factor);
}

}  // namespace

namespace {

// Built in the asked dtype on the CPU (a random init LibTorch lacks for that dtype falls back to
// fp32), so the peak is one model in that dtype, not an fp32 one and its conversion.
StableDiffusion build_model(const ModelConfig& config, torch::ScalarType dtype,
                            const StableDiffusionImpl::OnBuilt& on_built = {}) {
  try {
    ScopedDefaultDtype build_in(dtype);
    return StableDiffusion(config, on_built);
  } catch (const c10::Error&) {
    return StableDiffusion(config, on_built);
  }
}

}  // namespace

StableDiffusion load_model(const LoadOptions& options, CheckpointData* info) {
  const std::string path = resolve_model_path(options);
  CheckpointData ckpt = load_checkpoint(path, parse_config_flag(options.config_json));
  // Peak memory is one model in the asked dtype: moved to the device while its weights are still
  // the random ones, then filled one tensor at a time from the memory map (whose pages are handed
  // back as it goes).
  StableDiffusion model = build_model(ckpt.config, options.dtype);
  model->to(options.device, options.dtype);
  take_module_weights(*model, ckpt.tensors, "", path);
  model->eval();
  if (info) *info = std::move(ckpt);
  return model;
}

Pipeline Pipeline::load(const LoadOptions& options) {
  const std::string path = resolve_model_path(options);
  if (!options.defer_weights) {
    CheckpointData info;
    StableDiffusion model = load_model(options, &info);
    if (options.channels_last) model->unet->set_channels_last(true);
    auto tokenizer = find_tokenizer(path, options.tokenizer, info.metadata);
    return Pipeline(model, tokenizer, options.device, options.dtype, path);
  }
  // Each network checked and freed as soon as it is built: the peak while building is the largest
  // network's random init, and loading waits for first use.
  auto deferred = std::make_shared<DeferredNetworks>(load_checkpoint(path, parse_config_flag(options.config_json)));
  StableDiffusion model = build_model(deferred->checkpoint().config, options.dtype,
                                      [&](torch::nn::Module& network, const std::string& prefix) {
                                        deferred->defer(network, prefix);
                                      });
  model->to(options.device, options.dtype);
  model->eval();
  if (options.channels_last) model->unet->set_channels_last(true);  // takes effect when it is loaded
  auto tokenizer = find_tokenizer(path, options.tokenizer, deferred->checkpoint().metadata);
  Pipeline pipeline(model, tokenizer, options.device, options.dtype, path);
  pipeline.deferred_ = std::move(deferred);
  return pipeline;
}

Pipeline::Pipeline(StableDiffusion model, std::shared_ptr<ClipTokenizer> tokenizer, torch::Device device,
                   torch::ScalarType dtype, std::string source)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), device_(device), dtype_(dtype), source_(std::move(source)) {}

StableDiffusion& Pipeline::model() {
  if (deferred_) {
    text_encoder();
    unet();
    vae();
  }
  return model_;
}

int64_t Pipeline::deferred_networks() const { return deferred_ ? deferred_->size() : 0; }

bool Pipeline::load_deferred(torch::nn::Module& network) {
  if (!deferred_) return false;
  const bool loaded = deferred_->materialize(network);
  if (deferred_->empty()) deferred_.reset();
  return loaded;
}

CLIPTextModel& Pipeline::text_encoder() {
  load_deferred(*model_->text_encoder);
  return model_->text_encoder;
}

UNetModel& Pipeline::unet() {
  if (load_deferred(*model_->unet) && model_->unet->channels_last())
    model_->unet->set_channels_last(true);  // the file's weights, in NHWC
  return model_->unet;
}

AutoencoderKL& Pipeline::vae() {
  load_deferred(*model_->vae);
  return model_->vae;
}

int64_t Pipeline::vae_factor() const { return config().vae.downsample_factor(); }
int64_t Pipeline::native_size() const { return config().unet.sample_size * vae_factor(); }

std::pair<int64_t, int64_t> Pipeline::canvas(int64_t height, int64_t width) const {
  if (height <= 0) height = native_size();
  if (width <= 0) width = native_size();
  const int64_t f = vae_factor();
  if (height % f || width % f)
    throw Error(std::string(width % f ? "width" : "height") + ": must be a multiple of " + std::to_string(f) + " (got " +
                std::to_string(width) + "x" + std::to_string(height) + ")");
  return {height, width};
}

torch::Tensor Pipeline::tokenize(const std::string& prompt) const {
  return tokenizer_->encode_batch({prompt}, config().text.context_length).to(device_);
}

torch::Tensor Pipeline::encode_prompt(const std::string& prompt, int64_t clip_skip) {
  torch::NoGradGuard no_grad;
  return text_encoder()->encode(tokenize(prompt), clip_skip).last_hidden_state;
}

torch::Tensor Pipeline::encode_weighted_prompt(const std::string& prompt, int64_t clip_skip) {
  torch::NoGradGuard no_grad;
  ChunkTokens ids;  // this model's own ids (sine's shapes model has its own vocabulary)
  ids.start = tokenizer_->sot_id();
  ids.end = tokenizer_->eot_id();
  const auto comma = tokenizer_->bpe_ids(",");
  ids.comma = comma.size() == 1 ? comma[0] : -1;
  ids.chunk_length = config().text.context_length - 2;  // 75 for CLIP's 77 positions
  const auto chunks = chunk_prompt(parse_prompt_attention(prompt),
                                   [&](const std::string& text) { return tokenizer_->bpe_ids(text); }, ids);
  std::vector<torch::Tensor> parts;
  for (const auto& chunk : chunks) {
    auto tokens = torch::tensor(chunk.tokens, torch::kLong).view({1, -1}).to(device_);
    auto z = text_encoder()->encode(tokens, clip_skip).last_hidden_state;
    auto weights = torch::tensor(chunk.multipliers, torch::kFloat64).view({1, -1});
    const bool plain = std::all_of(chunk.multipliers.begin(), chunk.multipliers.end(), [](double m) { return m == 1.0; });
    parts.push_back(plain ? z : apply_emphasis(z.to(torch::kFloat32), weights).to(z.scalar_type()));
  }
  return torch::cat(parts, 1);
}

torch::Tensor Pipeline::encode_image(const torch::Tensor& rgb_u8, std::optional<torch::Generator> generator) {
  torch::NoGradGuard no_grad;
  auto x = to_model_input(rgb_u8).to(device_, dtype_);
  auto posterior = vae()->encode(x);
  auto z = generator ? posterior.sample(*generator) : posterior.mean;
  return z.to(torch::kFloat32) * config().vae.scaling_factor;
}

torch::Tensor Pipeline::decode_latents(const torch::Tensor& scaled_latents) {
  torch::NoGradGuard no_grad;
  auto z = (scaled_latents / config().vae.scaling_factor).to(device_, dtype_);
  return vae()->decode(z).to(torch::kFloat32);
}

torch::Tensor Pipeline::predict_eps(const torch::Tensor& latents, const torch::Tensor& t, const torch::Tensor& context) {
  auto ts = t.is_floating_point() ? t.to(device_) : t.to(device_, torch::kLong);
  if (ts.dim() == 0) ts = ts.expand({latents.size(0)});
  return unet()->forward(latents.to(device_, dtype_), ts, context.to(device_, dtype_)).to(torch::kFloat32);
}

torch::Tensor Pipeline::predict_eps_cfg(const torch::Tensor& latents, double t, const torch::Tensor& uncond,
                                        const torch::Tensor& cond, double scale) {
  const int64_t b = latents.size(0);
  auto context = torch::cat({uncond.expand({b, -1, -1}), cond.expand({b, -1, -1})});
  auto eps = predict_eps(torch::cat({latents, latents}), timestep_tensor(t, 2 * b, device_), context);
  auto parts = eps.chunk(2);
  return classifier_free_guidance(parts[0], parts[1], scale);
}

EpsFunction Pipeline::guided_eps(const torch::Tensor& uncond, const torch::Tensor& cond, double scale,
                                 std::optional<UNetGraph>* graph) {
  // cond+uncond in one UNet batch (uncond first, as diffusers); the context is built once and the
  // timesteps live on the host, so the loop has no device sync.
  const bool guided = scale != 1.0;
  const auto context = (guided ? torch::cat({uncond, cond}) : cond).to(device_, dtype_);
  auto network = unet();
  const torch::Device device = device_;
  const torch::ScalarType dtype = dtype_;
  return [=](const torch::Tensor& x, double t, int64_t) mutable {
    auto xs = (guided ? torch::cat({x, x}) : x).to(device, dtype);
    auto ts = timestep_tensor(t, xs.size(0), device);
    torch::Tensor eps;
    if (graph && UNetGraph::supported(network, device)) {
      if (!*graph) graph->emplace(network, xs, ts, context);
    }
    if (graph && *graph && (*graph)->matches(xs, ts, context)) {
      eps = (*graph)->forward(xs, ts, context).to(torch::kFloat32);
    } else {
      eps = network->forward(xs, ts, context).to(torch::kFloat32);
    }
    if (!guided) return eps;
    auto parts = eps.chunk(2);
    return classifier_free_guidance(parts[0], parts[1], scale);
  };
}

std::string Pipeline::model_name() const { return model_display_name(source_); }

std::string Pipeline::model_hash() const { return model_short_hash(source_); }

GenerationParameters Pipeline::describe(const GenerateOptions& o, int64_t height, int64_t width) const {
  GenerationParameters p;
  p.prompt = o.prompt;
  p.negative_prompt = o.negative_prompt;
  p.set("Steps", o.steps);
  p.set("Sampler", sampler_display_name(canonical_sampler_name(o.sampler)));
  p.set("Schedule type", o.schedule == SigmaSchedule::karras ? "Karras" : "Automatic");
  p.set("CFG scale", o.cfg_scale);
  p.set("Seed", static_cast<int64_t>(o.seed));  // with init_latents, x_T came from them, not the seed
  p.set("Size", std::to_string(width) + "x" + std::to_string(height));
  if (const auto hash = model_hash(); !hash.empty()) p.set("Model hash", hash);
  p.set("Model", model_name());
  if (o.eta != 0.0) p.set("Eta DDIM", o.eta);
  if (o.init_image.defined()) {
    p.set("Denoising strength", o.strength);
    if (o.mask.defined()) p.set("Mask blur", o.mask_blur);
    if (o.mask.defined() && o.masked_content != MaskedContent::original)
      p.set("Masked content", masked_content_name(o.masked_content));
  }
  p.set("Clip skip", o.clip_skip);
  if (o.init_latents.defined()) p.set("Init noise", o.init_latents_name.empty() ? "given" : o.init_latents_name);
  p.set("Version", std::string("sine ") + SINE_VERSION);
  return p;
}

Pipeline Pipeline::copy_denoiser() {
  if (released_) throw Error("pipeline: its weights were released after use");
  model();  // every deferred network loaded
  StableDiffusion copy(model_->config);
  copy->vae = copy->replace_module("first_stage_model", model_->vae);
  copy->unet->to(device_, dtype_);
  copy->text_encoder->to(device_, dtype_);
  torch::NoGradGuard no_grad;
  auto copy_all = [](torch::nn::Module& to, torch::nn::Module& from) {
    auto src_p = from.named_parameters(), dst_p = to.named_parameters();
    for (const auto& item : src_p) dst_p[item.key()].copy_(item.value());
    auto src_b = from.named_buffers(), dst_b = to.named_buffers();
    for (const auto& item : src_b) dst_b[item.key()].copy_(item.value());
  };
  copy_all(*copy->unet, *model_->unet);
  copy->unet->set_channels_last(model_->unet->channels_last());
  copy_all(*copy->text_encoder, *model_->text_encoder);
  copy->eval();
  return Pipeline(copy, tokenizer_, device_, dtype_, source_);
}

torch::Generator Pipeline::make_generator(uint64_t seed) const {
  return at::detail::createCPUGenerator(seed);
}

torch::Tensor Pipeline::randn(c10::IntArrayRef shape, torch::Generator& generator) const {
  // Noise is always drawn on the CPU so a seed gives the same image on every device.
  return torch::randn(shape, generator, torch::TensorOptions().dtype(torch::kFloat32)).to(device_);
}

MaskedContent parse_masked_content(const std::string& name) {
  if (name == "fill") return MaskedContent::fill;
  if (name == "original") return MaskedContent::original;
  if (name == "latent-noise" || name == "latent noise") return MaskedContent::latent_noise;
  if (name == "latent-nothing" || name == "latent nothing") return MaskedContent::latent_nothing;
  throw Error("masked_content: unknown '" + name + "' (known: fill, original, latent-noise, latent-nothing)");
}

const char* masked_content_name(MaskedContent content) {
  switch (content) {
    case MaskedContent::fill: return "fill";
    case MaskedContent::original: return "original";
    case MaskedContent::latent_noise: return "latent noise";
    case MaskedContent::latent_nothing: return "latent nothing";
  }
  return "?";
}

void GenerateOptions::validate() const {
  require_finite("cfg_scale", cfg_scale);
  require_finite("eta", eta);
  require_finite("strength", strength);
  if (cfg_scale < 0 || cfg_scale > 100) throw Error("cfg_scale: must be in [0, 100] (got " + std::to_string(cfg_scale) + ")");
  if (steps < 1 || steps > 1000) throw Error("steps: must be in [1, 1000] (got " + std::to_string(steps) + ")");
  if (width < 0 || width > 65536) throw Error("width: must be in [0, 65536] (got " + std::to_string(width) + ")");
  if (height < 0 || height > 65536) throw Error("height: must be in [0, 65536] (got " + std::to_string(height) + ")");
  if (init_image.defined() && (strength <= 0.0 || strength > 1.0))
    throw Error("strength: must be in (0, 1] (got " + std::to_string(strength) + ")");
  if (mask.defined() && !init_image.defined()) throw Error("mask: inpainting needs an init image");
  if (mask_blur < 0 || mask_blur > 256) throw Error("mask_blur: must be in [0, 256] (got " + std::to_string(mask_blur) + ")");
  if (clip_skip < 1) throw Error("clip_skip: must be at least 1 (got " + std::to_string(clip_skip) + ")");
  SamplerConfig sampling;
  sampling.method = sampler;
  sampling.schedule = schedule;
  sampling.steps = steps;
  sampling.eta = eta;
  sampling.validate();
}

torch::Tensor Pipeline::generate_latents(const GenerateOptions& o, const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  o.validate();
  const std::pair<int64_t, int64_t> size = canvas(o.height, o.width);
  const int64_t height = size.first, width = size.second, f = vae_factor();
  if (o.clip_skip > config().text.layers)
    throw Error("clip_skip: the text encoder has " + std::to_string(config().text.layers) + " layers (got " +
                std::to_string(o.clip_skip) + ")");
  if (released_)
    throw Error("generate: this pipeline freed its weights after a one-shot run (GenerateOptions::release_after_use)");
  if (!o.force)
    check_fits(estimate_generation_memory(config(), dtype_, height, width, o.cfg_scale != 1.0 ? 2 : 1, compat::has_sdpa),
               device_, "width: an image of " + std::to_string(width) + "x" + std::to_string(height));
  auto generator = make_generator(o.seed);
  torch::Tensor cond, uncond;
  // <lora:...> tags: attached for this generation only (detached however it ends).
  struct LoraScope {
    const GenerateOptions& o;
    bool applied = false;
    ~LoraScope() {
      if (applied) o.apply_loras({});
    }
  } lora_scope{o};
  if (!o.prompt_syntax) {
    cond = encode_prompt(o.prompt, o.clip_skip);
    uncond = encode_prompt(o.negative_prompt, o.clip_skip);
  } else {
    auto positive = extract_extra_networks(o.prompt), negative = extract_extra_networks(o.negative_prompt);
    auto loras = positive.loras;
    loras.insert(loras.end(), negative.loras.begin(), negative.loras.end());
    for (const auto& tag : positive.unsupported)
      throw Error("prompt: " + tag + ": only <lora:...> extra networks are supported");
    if (!loras.empty()) {
      if (!o.apply_loras)
        throw Error("prompt: <lora:" + loras[0].name + ">: no LoRA folder to load it from (--lora-dir)");
      model();  // a deferred network is loaded before adapters are attached to it
      lora_scope.applied = true;
      o.apply_loras(loras);
    }
    cond = encode_weighted_prompt(positive.prompt, o.clip_skip);
    uncond = encode_weighted_prompt(negative.prompt, o.clip_skip);
    // Both branches of CFG need as many tokens: the shorter is padded with empty-prompt chunks,
    // as A1111 pads its conditionings.
    const int64_t n = std::max(cond.size(1), uncond.size(1));
    if (cond.size(1) != uncond.size(1)) {
      auto empty = encode_weighted_prompt("", o.clip_skip);
      auto pad = [&](torch::Tensor t) {
        const int64_t missing = (n - t.size(1)) / empty.size(1);
        return missing > 0 ? torch::cat({t, empty.repeat({1, missing, 1})}, 1) : t;
      };
      cond = pad(cond);
      uncond = pad(uncond);
    }
  }
  if (o.release_after_use) {
    released_ = true;
    release_weights(*text_encoder());
  }

  SamplerConfig sampling;
  sampling.method = o.sampler;
  sampling.schedule = o.schedule;
  sampling.steps = o.steps;
  sampling.eta = o.eta;
  auto sampler = make_sampler(sampling);
  SampleLoopOptions loop;
  loop.unet = unet();
  loop.generator = generator;
  loop.on_step = on_step;
  loop.on_latents = o.on_latents;
  torch::Tensor latents;
  const std::vector<int64_t> shape{1, config().unet.in_channels, height / f, width / f};
  // x_T: the caller's (diffusers' latents=) or drawn from the seed.
  auto start_noise = [&]() {
    if (!o.init_latents.defined()) return randn(shape, generator);
    if (o.init_latents.sizes() != c10::IntArrayRef(shape)) {
      std::ostringstream msg;
      msg << "init_latents: the latents are " << o.init_latents.sizes() << ", a " << width << "x" << height
          << " image needs " << c10::IntArrayRef(shape);
      throw Error(msg.str());
    }
    return o.init_latents.to(device_, torch::kFloat32);
  };
  if (o.init_image.defined()) {
    auto image = fit_image(o.init_image, height, width, FitPolicy::CenterCrop);
    if (o.mask.defined() && o.masked_content == MaskedContent::fill)
      image = fill_masked(image, pixel_mask(o.mask, o.init_image, height, width, 0));
    auto init = encode_image(image, generator);
    if (o.mask.defined() && (o.masked_content == MaskedContent::latent_noise ||
                             o.masked_content == MaskedContent::latent_nothing)) {
      // A1111: init_latent · (1 − m) + {unit noise | 0} · m, with m the feathered latent mask.
      auto m = latent_mask(o.mask, o.init_image, height, width, o.mask_blur, f).to(device_);
      auto content = o.masked_content == MaskedContent::latent_noise ? randn(shape, generator) : torch::zeros_like(init);
      init = init * (1 - m) + content * m;
    }
    // diffusers' img2img: skip the first (1 − strength) of the schedule and noise to that level
    // (Heun evaluates twice per step).
    const int64_t kept = std::min<int64_t>(static_cast<int64_t>(o.steps * o.strength), o.steps);
    if (kept == 0) return init;
    loop.first = sampler->evaluation_of_step(o.steps - kept);
    auto noise = start_noise();
    latents = sampler->add_noise(init, noise, loop.first);
    if (o.mask.defined()) {
      // Inpainting: after each step the kept region is the init latent at the next step's noise
      // level (clean after the last), so only the masked region is generated.
      auto repaint = latent_mask(o.mask, o.init_image, height, width, o.mask_blur, f).to(device_);
      const int64_t n = sampler->num_evaluations();
      Sampler* s = sampler.get();
      loop.after_step = [=](int64_t i, torch::Tensor x) {
        auto known = i + 1 < n ? s->add_noise(init, noise, i + 1) : init;
        return known + repaint * (x - known);
      };
    }
  } else {
    latents = start_noise();
    latents = latents * sampler->init_noise_sigma();
  }
  std::optional<UNetGraph> graph;
  latents = sample(*sampler, latents, guided_eps(uncond, cond, o.cfg_scale, o.cuda_graph ? &graph : nullptr), loop);
  if (o.release_after_use) {
    graph.reset();
    release_weights(*unet());
  }
  return latents;
}

torch::Tensor Pipeline::generate(const GenerateOptions& options, const StepCallback& on_step) {
  auto image = from_model_output(decode_latents(generate_latents(options, on_step)));
  if (!options.mask.defined() || !options.init_image.defined()) return image;
  // Inpainting, as A1111 overlays it: outside the (feathered) mask the pixels are the init image's
  // own, so the kept region does not go through the VAE's lossy round trip.
  const int64_t h = image.size(0), w = image.size(1);
  auto alpha = pixel_mask(options.mask, options.init_image, h, w, options.mask_blur).view({h, w, 1});
  auto init = fit_image(options.init_image, h, w, FitPolicy::CenterCrop).to(torch::kFloat32);
  return (init + alpha * (image.to(torch::kFloat32) - init)).round().clamp(0, 255).to(torch::kUInt8).contiguous();
}

}  // namespace sine
