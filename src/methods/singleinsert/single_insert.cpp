#include "methods/singleinsert/single_insert.h"

#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "diffusion/guidance.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/sampler.h"
#include "io/image.h"
#include "models/attention_hook.h"

namespace sine {

namespace F = torch::nn::functional;

// ------------------------------------------------------------------------------------ losses

torch::Tensor foreground_loss(const torch::Tensor& x0_concept, const torch::Tensor& z0, const torch::Tensor& M) {
  return (M * (x0_concept - z0).pow(2)).mean();
}

torch::Tensor background_loss(const torch::Tensor& x0_concept, const torch::Tensor& x0_frozen_class,
                              const torch::Tensor& M) {
  return ((1 - M) * (x0_concept - x0_frozen_class).pow(2)).mean();
}

torch::Tensor semantic_loss(const torch::Tensor& x0_trained_class, const torch::Tensor& x0_frozen_class) {
  return (x0_trained_class - x0_frozen_class).pow(2).mean();
}

torch::Tensor latent_mask(const torch::Tensor& mask, int64_t h, int64_t w) {
  torch::Tensor m = mask.to(torch::kFloat32);
  while (m.dim() < 4) m = m.unsqueeze(0);
  if (m.size(1) != 1) m = m.mean(1, true);
  if (m.size(0) != 1 || m.min().item<double>() < 0 || m.max().item<double>() > 1)
    throw Error("mask: expected one mask with values in [0, 1]");
  return F::adaptive_avg_pool2d(m, F::AdaptiveAvgPool2dFuncOptions({h, w}));
}

// ---------------------------------------------------------------------------- token override

PlaceholderPrompt tokenize_with_placeholders(const ClipTokenizer& tokenizer, const std::string& prompt,
                                             const std::vector<std::string>& placeholders) {
  ClipTokenizer tok = tokenizer;
  std::vector<int64_t> added;
  for (const std::string& p : placeholders) added.push_back(tok.add_token(p));
  std::vector<int64_t> ids = tok.encode(prompt);
  PlaceholderPrompt out;
  for (size_t i = 0; i < ids.size(); ++i)
    for (size_t k = 0; k < added.size(); ++k)
      if (ids[i] == added[k]) {
        out.slots.emplace_back(static_cast<int64_t>(i), k);
        ids[i] = tokenizer.sot_id() == 0 ? 1 : 0;  // any in-vocabulary id; the row is replaced
      }
  out.ids = torch::tensor(ids, torch::kLong).view({1, -1});
  return out;
}

torch::Tensor encode_with_override(CLIPTextModel& text_encoder, const PlaceholderPrompt& prompt,
                                   const std::vector<torch::Tensor>& vectors) {
  const auto device = text_encoder->text_model->embeddings->token_embedding->weight.device();
  torch::Tensor ids = prompt.ids.to(device);
  torch::Tensor embeds = text_encoder->token_embeddings(ids);
  const int64_t L = embeds.size(1), C = embeds.size(2);
  for (const auto& [pos, k] : prompt.slots) {
    if (k >= vectors.size()) throw Error("token override: no vector for placeholder " + std::to_string(k));
    torch::Tensor v = vectors[k].reshape({1, 1, C}).to(embeds.device(), embeds.scalar_type());
    torch::Tensor at = (torch::arange(L, torch::TensorOptions().device(device)) == pos).view({1, L, 1});
    embeds = torch::where(at, v.expand({1, L, C}), embeds);
  }
  return text_encoder->forward_embeddings(embeds, ids).last_hidden_state;
}

// ----------------------------------------------------------------------------------- config

InsertObjective parse_insert_objective(const std::string& name) {
  if (name == "recon" || name == "baseline") return InsertObjective::Reconstruction;
  if (name == "fg") return InsertObjective::Foreground;
  if (name == "fg+bg") return InsertObjective::ForegroundBackground;
  throw Error("objective: unknown objective '" + name + "' (known: recon, fg, fg+bg)");
}

const char* insert_objective_name(InsertObjective objective) {
  switch (objective) {
    case InsertObjective::Reconstruction: return "recon";
    case InsertObjective::Foreground: return "fg";
    case InsertObjective::ForegroundBackground: return "fg+bg";
  }
  return "?";
}

std::pair<std::string, std::string> insert_training_prompts(const std::string& prompt_template,
                                                           const std::string& class_word,
                                                           const std::string& placeholder) {
  if (prompt_template.find("{class}") == std::string::npos)
    throw Error("prompt_template: '" + prompt_template + "' has no {class}");
  std::string concept_text = prompt_template;
  for (size_t at; (at = concept_text.find("{class}")) != std::string::npos;) concept_text.replace(at, 7, class_word);
  // The class prompt: the same words without the placeholder word.
  std::istringstream words(concept_text);
  std::string word, class_text;
  int placeholders = 0;
  while (words >> word) {
    if (word == placeholder) {
      ++placeholders;
      continue;
    }
    class_text += (class_text.empty() ? "" : " ") + word;
  }
  if (placeholders != 1)
    throw Error("prompt_template: '" + prompt_template + "' must hold the placeholder '" + placeholder +
                "' exactly once, as a word of its own");
  return {concept_text, class_text};
}

nlohmann::json SingleInsertConfig::to_json() const {
  return {{"class_word", class_word},
          {"placeholder", placeholder},
          {"prompt_template", prompt_template},
          {"objective", insert_objective_name(objective)},
          {"batch", batch},
          {"stage1_steps", stage1_steps},
          {"stage2_steps", stage2_steps},
          {"stage1_lr", stage1_lr},
          {"stage2_lr", stage2_lr},
          {"gamma", gamma},
          {"eta", eta},
          {"use_semantic_loss", use_semantic_loss},
          {"frozen_text_target", frozen_text_target},
          {"weight_decay", weight_decay},
          {"grad_clip", grad_clip},
          {"lora_rank", lora_rank},
          {"seed", seed}};
}

// ---------------------------------------------------------------------------------- trainer

SingleInsertTrainer::SingleInsertTrainer(Pipeline& pipeline, const torch::Tensor& image_u8,
                                         const torch::Tensor& mask, SingleInsertConfig config)
    : pipeline_(pipeline), config_(std::move(config)) {
  if (config_.class_word.empty()) throw Error("class_word: a class word is required (e.g. cube)");
  if (config_.batch < 1) throw Error("batch: must be at least 1");
  if (config_.stage1_steps < 0) throw Error("stage1_steps: must not be negative");
  if (config_.stage2_steps < 0) throw Error("stage2_steps: must not be negative");
  if (image_u8.dim() != 3 || image_u8.size(2) != 3 || image_u8.scalar_type() != torch::kUInt8)
    throw Error("SingleInsert: expected an RGB uint8 image [H, W, 3]");
  if (!config_.checkpoint_dir.empty()) std::filesystem::create_directories(config_.checkpoint_dir);
  StableDiffusion& model = pipeline_.model();
  freeze(*model);
  model->eval();

  const int64_t text_width = model->config.text.width;
  ImageEncoderConfig ec = config_.encoder.empty() ? ImageEncoderConfig::for_text_width(text_width)
                                                  : ImageEncoderConfig::preset(config_.encoder, text_width);
  torch::manual_seed(config_.seed);
  encoder_ = ImageEncoder(ec);
  if (!config_.encoder_weights.empty()) {
    const std::string note = encoder_->load_weights(config_.encoder_weights);
    if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());
  }
  encoder_->to(pipeline_.device());  // fp32 (the official code trains in fp32)
  pixels_ = encoder_->preprocess(image_u8).to(pipeline_.device());

  {
    torch::NoGradGuard no_grad;
    auto posterior = model->vae->encode(to_model_input(image_u8).to(pipeline_.device(), pipeline_.dtype()));
    posterior_mean_ = posterior.mean.to(torch::kFloat32);
    posterior_std_ = posterior.std.to(torch::kFloat32);
  }
  M_ = latent_mask(mask, posterior_mean_.size(2), posterior_mean_.size(3)).to(pipeline_.device());

  const auto [concept_text, class_text] =
      insert_training_prompts(config_.prompt_template, config_.class_word, config_.placeholder);
  concept_prompt_ = tokenize_with_placeholders(pipeline_.tokenizer(), concept_text, {config_.placeholder});
  if (concept_prompt_.slots.size() != 1)
    throw Error("prompt_template: '" + concept_text + "' must hold the placeholder '" + config_.placeholder +
                "' exactly once");
  class_prompt_ = tokenize_with_placeholders(pipeline_.tokenizer(), class_text, {});
}

SingleInsertTrainer::~SingleInsertTrainer() { detach_lora(); }

void SingleInsertTrainer::detach_lora() {
  if (unet_lora_.attached()) unet_lora_.remove();
  if (text_lora_.attached()) text_lora_.remove();
}

torch::Tensor SingleInsertTrainer::sample_z0(torch::Generator& gen) {
  // A fresh posterior sample per batch element and step (latent_dist.sample()), scaled.
  const int64_t B = config_.batch;
  auto shape = posterior_mean_.sizes().vec();
  shape[0] = B;
  torch::Tensor noise = torch::randn(shape, gen, torch::kFloat32).to(posterior_mean_.device());
  return (posterior_mean_ + posterior_std_ * noise) * pipeline_.config().vae.scaling_factor;
}

std::pair<torch::Tensor, InsertLosses> SingleInsertTrainer::step_loss(int stage, torch::Generator& gen) {
  StableDiffusion& model = pipeline_.model();
  const auto device = pipeline_.device();
  const auto dtype = pipeline_.dtype();
  const int64_t B = config_.batch;
  const NoiseSchedule& schedule = NoiseSchedule::stable_diffusion();

  torch::Tensor z0 = sample_z0(gen);
  torch::Tensor eps = torch::randn(z0.sizes(), gen, torch::kFloat32).to(device);
  torch::Tensor t = sample_timesteps(B, gen, device);
  torch::Tensor z_t = add_noise(z0, eps, t, schedule);  // shared by both branches

  // "* class" with the encoder's vector at position 1, and the bare "class".
  torch::Tensor v = encoder_->forward(pixels_).squeeze(0);
  torch::Tensor ctx_concept = encode_with_override(model->text_encoder, concept_prompt_, {v});
  torch::Tensor ctx_class = encode_with_override(model->text_encoder, class_prompt_, {});

  // One batched UNet call: [concept branch; class branch].
  torch::Tensor context = torch::cat({ctx_concept.expand({B, -1, -1}), ctx_class.expand({B, -1, -1})}).to(dtype);
  torch::Tensor eps_hat =
      model->unet->forward(torch::cat({z_t, z_t}).to(dtype), torch::cat({t, t}), context).to(torch::kFloat32);
  torch::Tensor x0_hat = pred_x0_from_eps(torch::cat({z_t, z_t}), eps_hat, torch::cat({t, t}), schedule);
  torch::Tensor x0_concept = x0_hat.slice(0, 0, B);
  torch::Tensor x0_class = x0_hat.slice(0, B, 2 * B);

  // The frozen model's x̂0 for the class prompt (the target of L_bg and L_sm).
  torch::Tensor x0_frozen;
  if (stage == 1) {
    x0_frozen = x0_class.detach();  // no LoRA yet: the class branch is the frozen model
  } else {
    torch::NoGradGuard no_grad;
    const double su = unet_lora_.scale(), st = text_lora_.scale();
    unet_lora_.set_scale(0.0);
    torch::Tensor ctx = ctx_class.detach();
    if (config_.frozen_text_target) {
      text_lora_.set_scale(0.0);
      ctx = encode_with_override(model->text_encoder, class_prompt_, {});
      text_lora_.set_scale(st);
    }
    torch::Tensor e = model->unet->forward(z_t.to(dtype), t, ctx.expand({B, -1, -1}).to(dtype)).to(torch::kFloat32);
    unet_lora_.set_scale(su);
    x0_frozen = pred_x0_from_eps(z_t, e, t, schedule);
  }

  InsertLosses parts;
  torch::Tensor loss;
  switch (config_.objective) {
    case InsertObjective::Reconstruction:
      loss = foreground_loss(x0_concept, z0, torch::ones_like(M_));
      parts.fg = loss.item<double>();
      break;
    case InsertObjective::Foreground:
      loss = foreground_loss(x0_concept, z0, M_);
      parts.fg = loss.item<double>();
      break;
    case InsertObjective::ForegroundBackground: {
      torch::Tensor fg = foreground_loss(x0_concept, z0, M_);
      torch::Tensor bg = background_loss(x0_concept, x0_frozen, M_);
      parts.fg = fg.item<double>();
      parts.bg = bg.item<double>();
      loss = fg + config_.gamma * bg;
      break;
    }
  }
  if (stage == 2 && config_.use_semantic_loss) {
    torch::Tensor sm = semantic_loss(x0_class, x0_frozen);
    parts.sm = sm.item<double>();
    loss = loss + config_.eta * sm;
  }
  parts.total = loss.item<double>();
  return {loss, parts};
}

TrainConfig SingleInsertTrainer::train_config(int stage) const {
  TrainConfig c;
  c.steps = stage == 1 ? config_.stage1_steps : config_.stage2_steps;
  c.lr = stage == 1 ? config_.stage1_lr : config_.stage2_lr;
  c.weight_decay = config_.weight_decay;
  c.grad_clip = config_.grad_clip;
  c.seed = config_.seed * 2 + static_cast<uint64_t>(stage);
  c.log_every = 5;
  c.label = stage == 1 ? "insert stage I" : "insert stage II";
  c.checkpoint_every = config_.checkpoint_every;
  if (!config_.checkpoint_dir.empty())
    c.checkpoint_path = config_.checkpoint_dir + (stage == 1 ? "/stage1.ckpt" : "/stage2.ckpt");
  return c;
}

void SingleInsertTrainer::run_stage1(int64_t stop_at) {
  if (stage_ == 0) {
    encoder_->train();
    trainer_ = std::make_unique<Trainer>(encoder_->named_trainables(), train_config(1));
    if (!config_.checkpoint_dir.empty()) trainer_->resume(train_config(1).checkpoint_path);
    stage_ = 1;
  }
  if (stage_ != 1) throw Error("SingleInsert: stage I has already ended");
  if (config_.stage1_steps == 0) return;
  const auto start = std::chrono::steady_clock::now();
  trainer_->run(
      [&](int64_t, torch::Generator& gen) {
        auto [loss, parts] = step_loss(1, gen);
        history1_.push_back(parts);
        return loss;
      },
      stop_at);
  seconds_[0] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void SingleInsertTrainer::begin_stage2() {
  if (stage_ == 2) return;
  StableDiffusion& model = pipeline_.model();
  LoRAConfig lc;
  lc.rank = config_.lora_rank;
  lc.name = "singleinsert";
  lc.seed = config_.seed + 1000;
  lc.unet = true;
  lc.text_encoder = false;
  unet_lora_ = LoRANetwork::attach(model, lc);
  lc.unet = false;
  lc.text_encoder = true;
  lc.seed = config_.seed + 2000;
  text_lora_ = LoRANetwork::attach(model, lc);
  NamedTensors params = encoder_->named_trainables();
  for (auto& p : unet_lora_.parameters()) params.push_back(p);
  for (auto& p : text_lora_.parameters()) params.push_back(p);
  trainer_ = std::make_unique<Trainer>(params, train_config(2));  // a new AdamW: moments reset
  if (!config_.checkpoint_dir.empty()) trainer_->resume(train_config(2).checkpoint_path);
  stage_ = 2;
}

void SingleInsertTrainer::run_stage2(int64_t stop_at) {
  if (stage_ != 2) begin_stage2();
  if (config_.stage2_steps == 0) return;
  const auto start = std::chrono::steady_clock::now();
  trainer_->run(
      [&](int64_t, torch::Generator& gen) {
        auto [loss, parts] = step_loss(2, gen);
        history2_.push_back(parts);
        return loss;
      },
      stop_at);
  seconds_[1] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Concept SingleInsertTrainer::train() {
  const bool stage2_saved =
      !config_.checkpoint_dir.empty() && std::filesystem::exists(config_.checkpoint_dir + "/stage2.ckpt");
  if (!stage2_saved) run_stage1();
  if (config_.stage2_steps > 0) run_stage2();
  return concept_now();
}

torch::Tensor SingleInsertTrainer::token_vector() const {
  torch::NoGradGuard no_grad;
  return encoder_->forward(pixels_).squeeze(0).to(torch::kCPU).clone();  // no dropout: train == eval
}

Concept SingleInsertTrainer::concept_now() const {
  Concept c;
  c.class_word = config_.class_word;
  c.token = config_.placeholder;
  c.vector = token_vector();
  if (stage_ == 2) {
    c.lora = unet_lora_.weights();
    for (auto& [name, m] : text_lora_.weights().modules) c.lora.modules[name] = m;
  }
  auto last = [](const std::vector<InsertLosses>& h) {
    if (h.empty()) return nlohmann::json();
    const InsertLosses& l = h.back();
    return nlohmann::json{{"total", l.total}, {"fg", l.fg}, {"bg", l.bg}, {"sm", l.sm}};
  };
  c.info = {{"config", config_.to_json()},
            {"base_model", pipeline_.source()},
            {"encoder", encoder_->config().to_json()},
            {"stage1_final_losses", last(history1_)},
            {"stage2_final_losses", last(history2_)},
            {"stage1_seconds", seconds_[0]},
            {"stage2_seconds", seconds_[1]},
            {"stages", stage_}};
  return c;
}

// --------------------------------------------------------------------------- attention mask

namespace {

// Collects the cross-attention probabilities of some token positions, per layer, as [h, w] maps.
class TokenAttentionCollector : public AttentionHook {
 public:
  explicit TokenAttentionCollector(std::vector<int64_t> tokens) : tokens_(std::move(tokens)) {}
  bool needs_probs(const AttentionSite& site) override { return site.is_cross; }
  torch::Tensor on_probs(const AttentionSite& site, torch::Tensor probs) override {
    if (!site.is_cross) return probs;
    // probs [B, heads, N, M] -> mean over heads and the selected tokens -> [h, w]
    torch::Tensor idx = torch::tensor(tokens_, torch::kLong).to(probs.device());
    torch::Tensor a = probs.index_select(3, idx).mean({1, 3}).select(0, 0).to(torch::kFloat32);
    maps.push_back(a.view({1, 1, site.height, site.width}));
    return probs;
  }
  std::vector<torch::Tensor> maps;

 private:
  std::vector<int64_t> tokens_;
};

}  // namespace

torch::Tensor attention_mask(Pipeline& pipeline, const torch::Tensor& image_u8, const std::string& class_word,
                             uint64_t seed, double threshold) {
  torch::NoGradGuard no_grad;
  const std::string prompt = "a " + class_word;
  std::vector<int64_t> tokens = pipeline.tokenizer().word_token_indices(prompt, class_word);
  if (tokens.empty()) throw Error("class_word: '" + class_word + "' is not in the prompt's tokens");
  torch::Tensor z0 = pipeline.encode_image(image_u8);
  torch::Tensor context = pipeline.encode_prompt(prompt);
  TokenAttentionCollector collector(tokens);
  auto gen = pipeline.make_generator(seed);
  const int64_t H = image_u8.size(0), W = image_u8.size(1);
  torch::Tensor sum = torch::zeros({1, 1, H, W});
  {
    ScopedAttentionHook guard(pipeline.model()->unet, &collector);
    for (int64_t t : {200, 400, 600}) {
      torch::Tensor noise = pipeline.randn(z0.sizes(), gen);
      torch::Tensor tt = torch::tensor({t}, torch::kLong).to(pipeline.device());
      torch::Tensor zt = add_noise(z0, noise, tt);
      collector.maps.clear();
      pipeline.predict_eps(zt, tt, context);
      for (const torch::Tensor& m : collector.maps) {
        torch::Tensor up = F::interpolate(m.to(torch::kCPU), F::InterpolateFuncOptions()
                                                                 .size(std::vector<int64_t>{H, W})
                                                                 .mode(torch::kBilinear)
                                                                 .align_corners(false));
        // each map normalised on its own so the coarse layers count as much as the fine ones
        const double lo = up.min().item<double>(), hi = up.max().item<double>();
        sum += (up - lo) / std::max(hi - lo, 1e-12);
      }
    }
  }
  const double lo = sum.min().item<double>(), hi = sum.max().item<double>();
  torch::Tensor a = (sum - lo) / std::max(hi - lo, 1e-12);
  return (a > threshold).to(torch::kFloat32);
}

// -------------------------------------------------------------------------------- inference

torch::Tensor encode_concept_prompt(Pipeline& pipeline, const std::string& prompt,
                                    const std::vector<Concept>& concepts) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> words;
  std::vector<torch::Tensor> vectors;
  for (const Concept& c : concepts) {
    words.push_back(c.token);
    vectors.push_back(c.vector);
  }
  PlaceholderPrompt p = tokenize_with_placeholders(pipeline.tokenizer(), prompt, words);
  return encode_with_override(pipeline.model()->text_encoder, p, vectors).to(torch::kFloat32);
}

torch::Tensor generate_with_concepts(Pipeline& pipeline, const std::vector<Concept>& concepts,
                                     const GenerateOptions& o, const StepCallback& on_step) {
  torch::NoGradGuard no_grad;
  if (o.steps < 1) throw Error("steps: must be at least 1 (got " + std::to_string(o.steps) + ")");
  const int64_t height = o.height > 0 ? o.height : pipeline.native_size();
  const int64_t width = o.width > 0 ? o.width : pipeline.native_size();
  const int64_t f = pipeline.vae_factor();
  if (height % f || width % f) throw Error("-W/-H must be multiples of " + std::to_string(f));
  auto generator = pipeline.make_generator(o.seed);
  torch::Tensor cond = encode_concept_prompt(pipeline, o.prompt, concepts);
  torch::Tensor uncond = pipeline.encode_prompt(o.negative_prompt);
  SamplerConfig ddim;
  ddim.steps = o.steps;
  ddim.eta = o.eta;
  auto sampler = make_sampler(ddim);
  torch::Tensor latents = o.init_latents.defined()
                              ? o.init_latents.to(pipeline.device(), torch::kFloat32)
                              : pipeline.randn({1, pipeline.config().unet.in_channels, height / f, width / f}, generator);
  SampleLoopOptions loop;
  loop.unet = pipeline.model()->unet;
  loop.generator = generator;  // η > 0: the step noise continues the seed's stream
  loop.on_step = on_step;
  latents = sample(*sampler, latents, pipeline.guided_eps(uncond, cond, o.cfg_scale), loop);
  return from_model_output(pipeline.decode_latents(latents));
}

std::vector<torch::Tensor> generate_batch_with_concepts(Pipeline& pipeline, const std::vector<Concept>& concepts,
                                                        const std::vector<std::string>& prompts,
                                                        const std::vector<uint64_t>& seeds, int64_t steps,
                                                        double cfg_scale, const std::string& negative_prompt,
                                                        int64_t size) {
  torch::NoGradGuard no_grad;
  if (prompts.empty() || prompts.size() != seeds.size()) throw Error("generate: one seed per prompt is needed");
  if (steps < 1) throw Error("steps: must be at least 1 (got " + std::to_string(steps) + ")");
  const int64_t n = static_cast<int64_t>(prompts.size());
  const int64_t f = pipeline.vae_factor();
  size = pipeline.canvas(size, size).first;
  std::vector<torch::Tensor> conds, noises;
  for (int64_t i = 0; i < n; ++i) {
    conds.push_back(encode_concept_prompt(pipeline, prompts[i], concepts));
    auto gen = pipeline.make_generator(seeds[i]);
    noises.push_back(pipeline.randn({1, pipeline.config().unet.in_channels, size / f, size / f}, gen));
  }
  torch::Tensor cond = torch::cat(conds);
  torch::Tensor uncond = pipeline.encode_prompt(negative_prompt).expand({n, -1, -1});
  torch::Tensor context = torch::cat({uncond, cond});
  // One UNet batch [u × n, c_1..c_n] per step, guided even at scale 1.
  auto eps = [&](const torch::Tensor& x, double t, int64_t) {
    torch::Tensor e = pipeline.predict_eps(torch::cat({x, x}), timestep_tensor(t, 2 * n, pipeline.device()), context);
    return classifier_free_guidance(e.slice(0, 0, n), e.slice(0, n, 2 * n), cfg_scale);
  };
  SamplerConfig ddim;
  ddim.steps = steps;
  auto sampler = make_sampler(ddim);
  SampleLoopOptions loop;
  loop.unet = pipeline.model()->unet;
  torch::Tensor latents = sample(*sampler, torch::cat(noises), eps, loop);
  torch::Tensor images = pipeline.decode_latents(latents);
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(from_model_output(images[i]));
  return out;
}

}  // namespace sine
