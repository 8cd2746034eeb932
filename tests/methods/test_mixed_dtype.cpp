// Every method end to end with the tiny random-weight model in bf16 on the CPU (a dtype other than
// the default fp32): nothing a method creates may meet the networks in another dtype or on another
// device. Most bf16/fp32 mixes throw in LibTorch (matmul, conv), but elementwise ops promote
// silently, so each test also watches what reaches the UNet:
//   - a UNet tap checks every intermediate (time embedding, conv_in, each block, conv_out) is in the
//     model's dtype, on its device and finite;
//   - an attention hook checks q, k, v, the probabilities and the outputs at every attention call.
//     Where a method installs its own hook (P2P), the checking hook wraps it and also checks what
//     the method's hook returns; where a method's hooks are internal (SpecRef), the tap alone
//     watches and the hooked pieces are checked directly;
// and afterwards every parameter and buffer of the model, and of the LoRA adapters and image
// encoder a method creates, is in the model's dtype. The sampler state (latents, noise), decoded
// images and the stored attention maps and masks stay fp32 by design (pipeline.h, attention_store.h);
// those are checked to be fp32, on the model's device, finite and of the right shape.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "diffusion/ddim.h"
#include "io/image.h"
#include "methods/attention_layout.h"
#include "methods/singleinsert/concept_file.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/p2p/local_blend.h"
#include "models/lora.h"
#include "methods/inversion/null_text_inversion.h"
#include "methods/sine/positional_grid.h"
#include "methods/p2p/prompt_to_prompt.h"
#include "methods/sine/sine_edit.h"
#include "methods/sine/sine_finetune.h"
#include "methods/singleinsert/single_insert.h"
#include "methods/specref/specref.h"
#include "methods/p2p/word_alignment.h"
#include "specref_test_util.h"

namespace sine {
namespace {

struct Quiet : ::testing::Environment {
  void SetUp() override {
    set_progress_enabled(false);
    torch::set_num_threads(1);
  }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

// The dtype under test, and the one the fp32-by-design tensors (latents, images, masks) keep.
constexpr torch::ScalarType kModelDtype = torch::kBFloat16;
// Trainable tensors a method adds beside a frozen model (LoRA adapters, the SingleInsert image
// encoder) are fp32 master weights (mixed-precision training): on the model's device, in fp32.
constexpr torch::ScalarType kMasterDtype = torch::kFloat32;
constexpr torch::ScalarType kFp32 = torch::kFloat32;

const std::string kSource = "a red circle in the center on a white background";
const std::string kTarget = "a blue star in the center on a white background";

bool all_finite(const torch::Tensor& t) { return torch::isfinite(t.detach()).all().item<bool>(); }

std::string describe(const torch::Tensor& t) {
  return std::string(c10::toString(t.scalar_type())) + " on " + t.device().str();
}

// Collects what was not as expected (the first few in full, then a count).
class Problems {
 public:
  // Notes `t` unless it is defined, in `dtype` on `device`, and finite.
  void check(const std::string& what, const torch::Tensor& t, torch::ScalarType dtype, torch::Device device) {
    if (!t.defined()) {
      add(what + ": undefined");
      return;
    }
    if (t.scalar_type() != dtype || t.device() != device)
      add(what + ": " + describe(t) + ", expected " + c10::toString(dtype) + " on " + device.str());
    if (torch::isFloatingType(t.scalar_type()) && t.numel() > 0 && !all_finite(t)) add(what + ": not finite");
  }
  void add(const std::string& problem) {
    if (list_.size() < 12) list_.push_back(problem);
    ++count_;
  }
  bool empty() const { return count_ == 0; }
  std::string report() const {
    std::string out;
    for (const auto& p : list_) out += "\n  " + p;
    if (count_ > static_cast<int64_t>(list_.size()))
      out += "\n  (+" + std::to_string(count_ - static_cast<int64_t>(list_.size())) + " more)";
    return out;
  }

 private:
  std::vector<std::string> list_;
  int64_t count_ = 0;
};

std::string site_name(const AttentionSite& site) {
  return std::string(site.is_cross ? "cross" : "self") + " layer " + std::to_string(site.layer) + " step " +
         std::to_string(site.step);
}

// Checks every tensor of every attention call: q, k, v, the probabilities and the output, before
// and after `inner` (the method's own hook, if any), which it otherwise leaves to do its work.
// Alone it takes the probability path on cross-attention and the fused path on self-attention, so
// both are exercised.
class DtypeCheckHook : public AttentionHook {
 public:
  DtypeCheckHook(torch::Device device, torch::ScalarType dtype, AttentionHook* inner = nullptr)
      : device_(device), dtype_(dtype), inner_(inner) {}

  bool needs_probs(const AttentionSite& site) override { return inner_ ? inner_->needs_probs(site) : site.is_cross; }
  void on_qkv(const AttentionSite& site, torch::Tensor& q, torch::Tensor& k, torch::Tensor& v) override {
    ++calls_;
    check(site, "q", q);
    check(site, "k", k);
    check(site, "v", v);
    if (!inner_) return;
    inner_->on_qkv(site, q, k, v);
    check(site, "q from the method's hook", q);
    check(site, "k from the method's hook", k);
    check(site, "v from the method's hook", v);
  }
  torch::Tensor on_probs(const AttentionSite& site, torch::Tensor probs) override {
    ++prob_calls_;
    check(site, "probs", probs);
    if (!inner_) return probs;
    probs = inner_->on_probs(site, probs);
    check(site, "probs from the method's hook", probs);
    return probs;
  }
  torch::Tensor on_output(const AttentionSite& site, torch::Tensor out, const torch::Tensor& q, const torch::Tensor& k,
                          const torch::Tensor& v) override {
    check(site, "attention output", out);
    if (!inner_) return out;
    out = inner_->on_output(site, out, q, k, v);
    check(site, "attention output from the method's hook", out);
    return out;
  }

  int64_t calls() const { return calls_; }
  int64_t prob_calls() const { return prob_calls_; }
  const Problems& problems() const { return problems_; }

 private:
  void check(const AttentionSite& site, const std::string& what, const torch::Tensor& t) {
    problems_.check(what + " at " + site_name(site), t, dtype_, device_);
  }
  torch::Device device_;
  torch::ScalarType dtype_;
  AttentionHook* inner_;
  int64_t calls_ = 0, prob_calls_ = 0;
  Problems problems_;
};

// For its lifetime: a tap on the pipeline's UNet that checks every intermediate, and (unless told
// otherwise) the checking attention hook. Methods that install their own hook put the previous one
// (this) back afterwards; the tap no method touches.
class DtypeWatch {
 public:
  explicit DtypeWatch(Pipeline& pipe, bool install_hook = true)
      : unet_(pipe.model()->unet), hook_(pipe.device(), pipe.dtype()), installed_(install_hook) {
    const torch::Device device = pipe.device();
    const torch::ScalarType dtype = pipe.dtype();
    unet_->set_tap([this, device, dtype](const std::string& name, const torch::Tensor& value) {
      ++tap_calls_;
      tap_problems_.check("UNet " + name, value, dtype, device);
    });
    if (installed_) unet_->set_attention_hook(&hook_);
  }
  ~DtypeWatch() {
    unet_->set_tap(UNetTap());
    if (unet_->attention_hook() == &hook_) unet_->set_attention_hook(nullptr);
  }
  DtypeWatch(const DtypeWatch&) = delete;
  DtypeWatch& operator=(const DtypeWatch&) = delete;

  DtypeCheckHook* hook() { return &hook_; }
  int64_t tap_calls() const { return tap_calls_; }

  // The UNet ran under the watch and saw nothing but the model's dtype and device.
  void expect_clean(const std::string& what) const {
    EXPECT_GT(tap_calls_, 0) << what << ": the UNet never ran under the watch";
    EXPECT_TRUE(tap_problems_.empty()) << what << ", UNet intermediates:" << tap_problems_.report();
    if (installed_) {
      EXPECT_GT(hook_.calls(), 0) << what << ": no attention call reached the checking hook";
      EXPECT_TRUE(hook_.problems().empty()) << what << ", attention:" << hook_.problems().report();
    }
  }

 private:
  UNetModel unet_;
  DtypeCheckHook hook_;
  bool installed_;
  int64_t tap_calls_ = 0;
  Problems tap_problems_;
};

// Every parameter and buffer of `module` in `dtype` on `device` (and finite).
void expect_module_in(const torch::nn::Module& module, const std::string& what, torch::ScalarType dtype,
                      torch::Device device) {
  Problems p;
  int64_t n = 0;
  for (const auto& item : module.named_parameters()) {
    p.check(what + " parameter " + item.key(), item.value(), dtype, device);
    ++n;
  }
  for (const auto& item : module.named_buffers()) p.check(what + " buffer " + item.key(), item.value(), dtype, device);
  EXPECT_GT(n, 0) << what << " has no parameters";
  EXPECT_TRUE(p.empty()) << what << ":" << p.report();
}

void expect_tensors_in(const NamedTensors& tensors, const std::string& what, torch::ScalarType dtype,
                       torch::Device device) {
  Problems p;
  for (const auto& [name, t] : tensors) p.check(what + " " + name, t, dtype, device);
  EXPECT_FALSE(tensors.empty()) << what << ": no tensors";
  EXPECT_TRUE(p.empty()) << what << ":" << p.report();
}

// One tensor: dtype, device, shape and finiteness.
void expect_tensor(const torch::Tensor& t, const std::string& what, torch::ScalarType dtype, torch::Device device,
                   const std::vector<int64_t>& shape) {
  ASSERT_TRUE(t.defined()) << what << " is undefined";
  Problems p;
  p.check(what, t, dtype, device);
  EXPECT_TRUE(p.empty()) << p.report();
  EXPECT_EQ(t.sizes(), shape) << what;
}

// A decoded image: uint8 [H, W, 3] (from_model_output always returns it on the CPU).
void expect_image(const torch::Tensor& img, const std::string& what, int64_t h, int64_t w) {
  ASSERT_TRUE(img.defined()) << what << " is undefined";
  EXPECT_EQ(img.scalar_type(), torch::kUInt8) << what;
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{h, w, 3})) << what;
}

// 64x64 (the tiny model's size): a red square in the center on a white background, and its mask.
std::pair<torch::Tensor, torch::Tensor> scene() {
  torch::Tensor img = torch::full({64, 64, 3}, 255, torch::kUInt8);
  auto square = img.slice(0, 16, 48).slice(1, 16, 48);
  square.select(2, 0).fill_(220);
  square.select(2, 1).fill_(30);
  square.select(2, 2).fill_(30);
  torch::Tensor mask = torch::zeros({1, 1, 64, 64});
  mask.slice(2, 16, 48).slice(3, 16, 48).fill_(1.0);
  return {img, mask};
}

// A blue bar on the left on a gray background: SpecRef's reference.
torch::Tensor reference_image() {
  torch::Tensor img = torch::full({64, 64, 3}, 128, torch::kUInt8);
  auto bar = img.slice(0, 8, 56).slice(1, 8, 28);
  bar.select(2, 0).fill_(20);
  bar.select(2, 1).fill_(40);
  bar.select(2, 2).fill_(230);
  return img;
}

torch::TensorOptions model_options(const Pipeline& pipe) {
  return torch::TensorOptions().device(pipe.device()).dtype(pipe.dtype());
}

// ---------------------------------------------------------------------------------------------

// The engine: txt2img (with and without CFG, with η > 0, given starting noise, another aspect) and
// img2img run in bf16 with every UNet call in bf16; the text encoder's states are bf16, latents and
// decoded images fp32 as documented.
TEST(MixedDtype, GenerateTxt2ImgAndImg2ImgInBf16) {
  Pipeline pipe = test::tiny_pipeline(61, kModelDtype);
  const torch::Device dev = pipe.device();
  ASSERT_EQ(pipe.dtype(), kModelDtype);
  expect_module_in(*pipe.model(), "model", kModelDtype, dev);
  DtypeWatch watch(pipe);

  expect_tensor(pipe.encode_prompt(kSource), "encode_prompt", kModelDtype, dev, {1, 77, 16});
  auto [img, mask] = scene();
  torch::Tensor z0 = pipe.encode_image(img);
  expect_tensor(z0, "encode_image", kFp32, dev, {1, 4, 16, 16});
  auto gen = pipe.make_generator(3);
  expect_tensor(pipe.encode_image(img, gen), "encode_image (posterior sample)", kFp32, dev, {1, 4, 16, 16});
  expect_tensor(pipe.decode_latents(z0), "decode_latents", kFp32, dev, {1, 3, 64, 64});
  expect_tensor(pipe.predict_eps(z0, torch::tensor(500), pipe.encode_prompt("")), "predict_eps", kFp32, dev,
                {1, 4, 16, 16});

  GenerateOptions o;
  o.prompt = kSource;
  o.steps = 3;
  o.seed = 7;
  expect_tensor(pipe.generate_latents(o), "txt2img latents", kFp32, dev, {1, 4, 16, 16});
  o.cfg_scale = 1.0;
  expect_tensor(pipe.generate_latents(o), "txt2img latents without CFG", kFp32, dev, {1, 4, 16, 16});
  o.cfg_scale = 7.5;
  o.eta = 0.5;  // DDIM variance noise
  expect_image(pipe.generate(o), "txt2img image", 64, 64);
  o.eta = 0.0;
  o.init_latents = torch::randn({1, 4, 16, 16}).to(kModelDtype);  // given noise in another dtype is converted
  expect_tensor(pipe.generate_latents(o), "txt2img from given latents", kFp32, dev, {1, 4, 16, 16});
  o.init_latents = torch::Tensor();
  o.width = 128;
  expect_tensor(pipe.generate_latents(o), "txt2img 128x64", kFp32, dev, {1, 4, 16, 32});
  o.width = 0;

  o.init_image = img;
  o.strength = 0.6;
  o.steps = 4;
  expect_tensor(pipe.generate_latents(o), "img2img latents", kFp32, dev, {1, 4, 16, 16});
  expect_image(pipe.generate(o), "img2img image", 64, 64);

  watch.expect_clean("generate");
  expect_module_in(*pipe.model(), "model after generating", kModelDtype, dev);
}

// SINE: the whole-image, patch (positional grid) and LoRA fine-tunes train in bf16, and the edit
// with model-based guidance over two fine-tuned models (one with its grid), at another aspect and
// in the no-guidance ablation, samples in bf16. Weights, trained tensors and the LoRA adapters
// stay bf16, the grid slices fed to the UNet come in the model's dtype, every loss is finite.
TEST(MixedDtype, SineFinetuneAndEditInBf16) {
  auto [img, mask] = scene();
  SineFinetuneConfig c;
  c.class_word = "circle";
  c.steps = 2;
  c.lr = 1e-3;
  c.seed = 5;

  auto check_losses = [](SineFinetuner& ft, const std::string& what) {
    for (double l : ft.trainer().loss_history()) EXPECT_TRUE(std::isfinite(l)) << what << " loss " << l;
    EXPECT_EQ(ft.trainer().loss_history().size(), 2u) << what;
    torch::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    SineLossParts parts = ft.loss(gen);
    EXPECT_TRUE(std::isfinite(parts.total.item<double>())) << what;
    EXPECT_TRUE(std::isfinite(parts.eps_loss.item<double>())) << what;
    EXPECT_TRUE(std::isfinite(parts.recon_loss.item<double>())) << what;
  };

  // Whole image: every UNet and text-encoder tensor trains, in bf16.
  Pipeline whole = test::tiny_pipeline(21, kModelDtype);
  const torch::Device dev = whole.device();
  DtypeWatch watch_whole(whole);
  c.mode = SineMode::Whole;
  SineFinetuner ftw(whole, img, c);
  ftw.train();
  check_losses(ftw, "whole");
  expect_tensors_in(ftw.trained_parameters(), "whole: trained", kModelDtype, dev);
  expect_module_in(*whole.model(), "whole: model", kModelDtype, dev);
  watch_whole.expect_clean("sine finetune (whole)");

  // Patch: the grid crop goes to the UNet in the model's dtype.
  Pipeline patch = test::tiny_pipeline(21, kModelDtype);
  DtypeWatch watch_patch(patch);
  c.mode = SineMode::Patch;
  SineFinetuner ftp(patch, img, c);
  ASSERT_NE(ftp.grid(), nullptr);
  const int64_t channels = patch.config().unet.model_channels;
  expect_tensor(ftp.grid()->crop({0, 0, 8, 8}, 16, 16, model_options(patch)), "grid crop", kModelDtype, dev,
                {1, channels, 16, 16});
  expect_tensor(ftp.grid()->stretched(16, 32, model_options(patch)), "grid stretched", kModelDtype, dev,
                {1, channels, 16, 32});
  ftp.train();
  check_losses(ftp, "patch");
  expect_tensors_in(ftp.trained_parameters(), "patch: trained", kModelDtype, dev);
  expect_module_in(*patch.model(), "patch: model", kModelDtype, dev);
  watch_patch.expect_clean("sine finetune (patch)");

  // LoRA: the adapters it creates are in the model's dtype and device; the base stays bf16.
  Pipeline lora = test::tiny_pipeline(21, kModelDtype);
  DtypeWatch watch_lora(lora);
  c.lora_rank = 2;
  SineFinetuner ftl(lora, img, c);
  ASSERT_NE(ftl.lora(), nullptr);
  expect_tensors_in(ftl.lora()->parameters(), "LoRA adapters (fresh)", kMasterDtype, dev);
  ftl.train();
  check_losses(ftl, "lora");
  expect_tensors_in(ftl.lora()->parameters(), "LoRA adapters (trained)", kMasterDtype, dev);
  expect_tensors_in(ftl.trained_parameters(), "lora: trained", kMasterDtype, dev);
  expect_module_in(*lora.model(), "lora: base model", kModelDtype, dev);
  watch_lora.expect_clean("sine finetune (LoRA)");

  // Edit: the pre-trained model guided by the patch model (with its grid) and the whole model.
  Pipeline pre = test::tiny_pipeline(21, kModelDtype);
  DtypeWatch watch_pre(pre);
  SineEditConfig e;
  e.edit_prompt = kTarget;
  e.steps = 3;  // LDM timesteps 667, 334, 1: the first is guided (K = 400)
  e.seed = 3;
  SineBranch bp;
  bp.pipeline = &patch;
  bp.grid = ftp.grid();
  bp.prompt = ftp.prompt();
  bp.beta = 0.2;
  SineBranch bw;
  bw.pipeline = &whole;
  bw.prompt = ftw.prompt();
  bw.beta = 0.2;
  expect_tensor(sine_edit_latents(pre, {bp, bw}, e), "sine edit latents", kFp32, dev, {1, 4, 16, 16});
  e.width = 128;  // the grid stretched to a 16x32 latent
  expect_image(sine_edit(pre, {bp}, e), "sine edit 128x64", 64, 128);
  e.width = 0;
  SineBranch bl;
  bl.pipeline = &lora;
  bl.grid = ftl.grid();
  bl.prompt = ftl.prompt();
  e.mode = SineEditMode::NoGuidance;
  expect_tensor(sine_edit_latents(pre, {bl}, e), "no-guidance latents", kFp32, dev, {1, 4, 16, 16});
  watch_pre.expect_clean("sine edit (pre-trained)");
  watch_patch.expect_clean("sine edit (patch branch)");
  watch_whole.expect_clean("sine edit (whole branch)");
  watch_lora.expect_clean("sine edit (LoRA branch)");
}

// SingleInsert: stage I (image encoder) and stage II (encoder + LoRA) train in bf16; the image
// encoder and the LoRA it creates are in the model's dtype; the token override reaches the text
// encoder in its dtype; the latent mask and the attention mask are fp32 on the device; generation
// with the trained concept (single and batched) runs in bf16.
TEST(MixedDtype, SingleInsertTrainAndGenerateInBf16) {
  Pipeline pipe = test::tiny_pipeline(11, kModelDtype);
  const torch::Device dev = pipe.device();
  DtypeWatch watch(pipe);
  auto [img, mask] = scene();
  SingleInsertConfig c;
  c.class_word = "circle";
  c.batch = 2;
  c.stage1_steps = 2;
  c.stage2_steps = 2;
  c.seed = 5;
  SingleInsertTrainer trainer(pipe, img, mask, c);
  expect_module_in(*trainer.encoder(), "image encoder", kMasterDtype, dev);
  expect_tensor(latent_mask(mask, 16, 16), "latent mask", kFp32, torch::kCPU, {1, 1, 16, 16});

  trainer.run_stage1();
  ASSERT_EQ(trainer.history(1).size(), 2u);
  for (const InsertLosses& l : trainer.history(1)) {
    EXPECT_TRUE(std::isfinite(l.total)) << "stage I loss";
    EXPECT_TRUE(std::isfinite(l.fg) && std::isfinite(l.bg)) << "stage I parts";
  }
  {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
    auto [loss, parts] = trainer.step_loss(1, gen);
    EXPECT_TRUE(std::isfinite(loss.item<double>()));
  }

  trainer.begin_stage2();
  ASSERT_TRUE(trainer.unet_lora().attached());
  expect_tensors_in(trainer.unet_lora().parameters(), "UNet LoRA", kMasterDtype, dev);
  expect_tensors_in(trainer.text_lora().parameters(), "text LoRA", kMasterDtype, dev);
  trainer.run_stage2();
  ASSERT_EQ(trainer.history(2).size(), 2u);
  for (const InsertLosses& l : trainer.history(2))
    EXPECT_TRUE(std::isfinite(l.total) && std::isfinite(l.sm)) << "stage II loss";
  {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
    auto [loss, parts] = trainer.step_loss(2, gen);
    EXPECT_TRUE(std::isfinite(loss.item<double>()));
  }
  expect_module_in(*trainer.encoder(), "image encoder after stage II", kMasterDtype, dev);
  expect_tensors_in(trainer.unet_lora().parameters(), "UNet LoRA (trained)", kMasterDtype, dev);
  expect_module_in(*pipe.model(), "model after training", kModelDtype, dev);

  // The token override: the concept's vector replaces the '*' row in the text encoder's dtype.
  Concept trained = trainer.concept_now();
  ASSERT_TRUE(trained.vector.defined());
  EXPECT_EQ(trained.vector.sizes(), (std::vector<int64_t>{pipe.config().text.width}));
  EXPECT_TRUE(all_finite(trained.vector));
  EXPECT_FALSE(trained.lora.modules.empty());
  {
    torch::NoGradGuard no_grad;
    PlaceholderPrompt p = tokenize_with_placeholders(pipe.tokenizer(), "* circle", {"*"});
    expect_tensor(encode_with_override(pipe.model()->text_encoder, p, {trained.vector}), "token override states",
                  kModelDtype, dev, {1, 77, pipe.config().text.width});
    torch::Tensor states = encode_concept_prompt(pipe, "* circle in the center", {trained});
    EXPECT_EQ(states.sizes(), (std::vector<int64_t>{1, 77, pipe.config().text.width}));
    EXPECT_TRUE(all_finite(states));
  }
  trainer.detach_lora();
  watch.expect_clean("singleinsert training");

  // Generation with the concept: its LoRA attached again (copies in the model's dtype).
  auto nets = attach_concepts(pipe.model(), {trained}, {1.0});
  ASSERT_EQ(nets.size(), 1u);
  expect_tensors_in(nets[0].parameters(), "concept LoRA", kModelDtype, dev);
  GenerateOptions o;
  o.prompt = "* circle on a white background";
  o.steps = 2;
  o.seed = 3;
  expect_image(generate_with_concepts(pipe, {trained}, o), "concept image", 64, 64);
  auto batch = generate_batch_with_concepts(pipe, {trained}, {"* circle in the center", o.prompt}, {9, 3}, 2, 7.5);
  ASSERT_EQ(batch.size(), 2u);
  for (const auto& b : batch) expect_image(b, "batched concept image", 64, 64);
  for (auto& n : nets) n.remove();

  // The cross-attention mask of the class word (its own hook; ours is put back).
  torch::Tensor m = attention_mask(pipe, img, "circle");
  expect_tensor(m, "attention mask", kFp32, dev, {1, 1, 64, 64});
  EXPECT_EQ(pipe.model()->unet->attention_hook(), watch.hook());
  watch.expect_clean("singleinsert generation and mask");
  expect_module_in(*pipe.model(), "model at the end", kModelDtype, dev);
}

// DDIM inversion (both timestep conventions, guided, and a batch of two as SpecRef inverts) and
// DDIM sampling back: every UNet call in bf16, the latents z_0..z_T fp32 and finite.
TEST(MixedDtype, DdimInversionInBf16) {
  Pipeline pipe = test::tiny_pipeline(51, kModelDtype);
  const torch::Device dev = pipe.device();
  DtypeWatch watch(pipe);
  auto [img, mask] = scene();
  torch::Tensor z0 = pipe.encode_image(img);
  torch::Tensor cond = pipe.encode_prompt(kSource), uncond = pipe.encode_prompt("");
  expect_tensor(cond, "cond", kModelDtype, dev, {1, 77, 16});

  for (const auto& ddim : {DDIMConfig::null_text_inversion(), DDIMConfig::specref()}) {
    InversionOptions o;
    o.steps = 4;
    o.ddim = ddim;
    auto latents = ddim_invert(pipe, z0, cond, o);
    ASSERT_EQ(latents.size(), 5u);
    for (size_t i = 0; i < latents.size(); ++i)
      expect_tensor(latents[i], "z_" + std::to_string(i), kFp32, dev, {1, 4, 16, 16});
    torch::Tensor rec = ddim_sample(pipe, latents.back(), cond, uncond, 1.0, o);
    expect_tensor(rec, "sampled back", kFp32, dev, {1, 4, 16, 16});
    EXPECT_TRUE(std::isfinite(psnr(pipe.decode_latents(rec), pipe.decode_latents(z0))));
    expect_tensor(ddim_sample(pipe, latents.back(), cond, uncond, 7.5, o), "sampled with CFG", kFp32, dev,
                  {1, 4, 16, 16});
  }
  InversionOptions guided;
  guided.steps = 3;
  guided.guidance = 2.0;
  auto g = ddim_invert(pipe, z0, cond, guided, uncond);
  ASSERT_EQ(g.size(), 4u);
  expect_tensor(g.back(), "guided z_T", kFp32, dev, {1, 4, 16, 16});
  InversionOptions joint;
  joint.steps = 3;
  auto b = ddim_invert(pipe, torch::cat({z0, z0 * 0.5}), torch::cat({cond, uncond}), joint);
  expect_tensor(b.back(), "batched z_T", kFp32, dev, {2, 4, 16, 16});
  watch.expect_clean("ddim inversion");
  expect_module_in(*pipe.model(), "model", kModelDtype, dev);
}

// Null-text inversion: φ is optimised through the bf16 UNet (grad through bf16 weights into the
// embedding); the embeddings are finite, on the device, of the "" embedding's shape, and drive DDIM
// sampling and a P2P edit (the notebook's flow) with every UNet call in bf16. The UNet stays bf16
// and its requires_grad flags are restored.
TEST(MixedDtype, NullTextInversionInBf16) {
  Pipeline pipe = test::tiny_pipeline(41, kModelDtype);
  const torch::Device dev = pipe.device();
  DtypeWatch watch(pipe);
  auto [img, mask] = scene();
  torch::Tensor z0 = pipe.encode_image(img);
  torch::Tensor cond = pipe.encode_prompt(kSource), uncond = pipe.encode_prompt("");
  InversionOptions o;
  o.steps = 3;
  auto latents = ddim_invert(pipe, z0, cond, o);
  std::vector<bool> grad_before;
  for (const auto& p : pipe.model()->unet->parameters()) grad_before.push_back(p.requires_grad());

  NullTextOptions nt;
  nt.inner_steps = 2;
  NullTextResult r = null_text_inversion(pipe, latents, cond, uncond, o, nt);
  ASSERT_EQ(r.embeddings.size(), 3u);
  for (size_t i = 0; i < r.embeddings.size(); ++i) {
    const torch::Tensor& phi = r.embeddings[i];
    EXPECT_EQ(phi.sizes(), uncond.sizes()) << i;
    EXPECT_EQ(phi.device(), dev) << i;
    EXPECT_TRUE(torch::isFloatingType(phi.scalar_type())) << i;
    EXPECT_TRUE(all_finite(phi)) << "phi_" << i;
    EXPECT_FALSE(phi.requires_grad()) << i;
    EXPECT_TRUE(std::isfinite(r.final_loss[i])) << i;
    EXPECT_GE(r.iterations[i], 1);
    EXPECT_LE(r.iterations[i], nt.inner_steps);
  }
  size_t k = 0;
  for (const auto& p : pipe.model()->unet->parameters()) {
    const bool before = grad_before[k++];
    EXPECT_EQ(p.requires_grad(), before) << "requires_grad of a UNet parameter not restored";
  }
  expect_module_in(*pipe.model(), "model after null-text", kModelDtype, dev);

  expect_tensor(ddim_sample(pipe, latents.back(), cond, uncond, nt.guidance, o, r.embeddings), "null-text sample",
                kFp32, dev, {1, 4, 16, 16});

  const auto rules = edit_layer_rules(pipe.config().unet, 16, 16);
  p2p::ControllerConfig cc;
  cc.num_steps = o.steps;
  p2p::Controller ctl(pipe.tokenizer(), kSource, kTarget, cc, rules.store_max_pixels);
  DtypeCheckHook checked(dev, pipe.dtype(), &ctl);
  p2p::ReconstructionPath path;
  path.null_embeddings = r.embeddings;
  p2p::EditOptions eo;
  eo.steps = o.steps;
  eo.cfg_scale = nt.guidance;
  eo.ddim = o.ddim;
  torch::Tensor x = p2p::edit_latents(pipe, kSource, kTarget, latents.back(), &checked, &ctl.store(), nullptr, path, eo);
  expect_tensor(x, "null-text P2P latents", kFp32, dev, {2, 4, 16, 16});
  EXPECT_GT(checked.calls(), 0);
  EXPECT_TRUE(checked.problems().empty()) << "null-text P2P attention:" << checked.problems().report();
  EXPECT_EQ(pipe.model()->unet->attention_hook(), watch.hook());
  watch.expect_clean("null-text inversion");
}

// Prompt-to-Prompt on a real (inverted) image: word swap with a reweighted word, LocalBlend and the
// inversion latents as the source path, then refine. The controller's edited probabilities are
// bf16 (its mappers, alphas and equalizer are converted to the maps' dtype); the store keeps fp32
// head means on the device; LocalBlend's mask is bool on the device; the latents are fp32.
TEST(MixedDtype, PromptToPromptEditInBf16) {
  Pipeline pipe = test::tiny_pipeline(31, kModelDtype);
  const torch::Device dev = pipe.device();
  DtypeWatch watch(pipe, /*install_hook=*/false);  // the controller is wrapped instead
  auto [img, mask] = scene();
  const int64_t n = 4;
  InversionOptions inv;
  inv.steps = n;
  auto latents = ddim_invert(pipe, pipe.encode_image(img), pipe.encode_prompt(kSource), inv);
  const auto rules = edit_layer_rules(pipe.config().unet, 16, 16);

  p2p::ControllerConfig cc;
  cc.num_steps = n;
  cc.equalizer = {{"star", 2.0f}};
  p2p::Controller ctl(pipe.tokenizer(), kSource, kTarget, cc, rules.store_max_pixels);
  DtypeCheckHook checked(dev, pipe.dtype(), &ctl);
  p2p::LocalBlendConfig bc;
  bc.source_words = {"red", "circle"};
  bc.target_words = {"blue", "star"};
  p2p::LocalBlend blend(pipe.tokenizer(), kSource, kTarget, bc, rules, n);
  p2p::ReconstructionPath path;
  path.inversion_latents = latents;
  p2p::EditOptions eo;
  eo.steps = n;
  eo.ddim = inv.ddim;
  torch::Tensor x =
      p2p::edit_latents(pipe, kSource, kTarget, latents.back(), &checked, &ctl.store(), &blend, path, eo);
  expect_tensor(x, "P2P latents", kFp32, dev, {2, 4, 16, 16});
  EXPECT_GT(checked.prob_calls(), 0);
  EXPECT_TRUE(checked.problems().empty()) << "P2P attention:" << checked.problems().report();
  EXPECT_EQ(pipe.model()->unet->attention_hook(), nullptr);  // restored
  EXPECT_EQ(ctl.store().steps(), n);
  ASSERT_FALSE(ctl.store().sums().empty());
  Problems stored;
  for (const auto& [key, sum] : ctl.store().sums())
    stored.check("store " + std::string(key.is_cross ? "cross" : "self") + " " + std::to_string(key.layer), sum, kFp32,
                 dev);
  EXPECT_TRUE(stored.empty()) << stored.report();
  ASSERT_TRUE(blend.last_mask().defined());
  EXPECT_EQ(blend.last_mask().scalar_type(), torch::kBool);
  EXPECT_EQ(blend.last_mask().device(), dev);
  EXPECT_EQ(blend.last_mask().sizes(), (std::vector<int64_t>{2, 1, 16, 16}));
  expect_tensor(pipe.decode_latents(x), "P2P images", kFp32, dev, {2, 3, 64, 64});

  // Refine ("a big red circle ..." adds a word), no LocalBlend, plain uncond.
  p2p::ControllerConfig rc;
  rc.kind = p2p::EditKind::refine;
  rc.num_steps = 2;
  const std::string refined = "a big red circle in the center on a white background";
  p2p::Controller refine(pipe.tokenizer(), kSource, refined, rc, rules.store_max_pixels);
  DtypeCheckHook checked_refine(dev, pipe.dtype(), &refine);
  p2p::EditOptions ro;
  ro.steps = 2;
  torch::Tensor xr = p2p::edit_latents(pipe, kSource, refined, torch::randn({1, 4, 16, 16}), &checked_refine,
                                       &refine.store(), nullptr, {}, ro);
  expect_tensor(xr, "refine latents", kFp32, dev, {2, 4, 16, 16});
  EXPECT_TRUE(checked_refine.problems().empty()) << "refine attention:" << checked_refine.problems().report();
  watch.expect_clean("prompt-to-prompt");
  expect_module_in(*pipe.model(), "model", kModelDtype, dev);
}

// SpecRef: joint inversion (K/V recorder), M_s derived from the reference's cross-attention, and
// the edit with SR-attention, all with every UNet intermediate bf16 (its hooks are internal, so the
// tap watches). The cached K/V are fp16 for storage (by design) and finite; what SR-attention makes
// of them reaches the attention output in the model's dtype and finite, also with an empty M_s
// (fp32's -FLT_MAX bias must not become -inf and a NaN softmax in bf16). Masks are fp32 on the
// device in [0, 1].
TEST(MixedDtype, SpecRefEditInBf16) {
  Pipeline pipe = test::tiny_pipeline(8, kModelDtype);
  const torch::Device dev = pipe.device();
  DtypeWatch watch(pipe, /*install_hook=*/false);  // SpecRef's own hooks replace any for each stage
  auto [img, mask] = scene();
  specref::SpecRefInputs in;
  in.source = img;
  in.reference = reference_image();
  in.source_prompt = kSource;
  in.target_prompt = kTarget;
  in.edit_words = {"star"};
  in.ms_pixels = torch::zeros({64, 64});
  in.ms_pixels.narrow(0, 8, 48).narrow(1, 8, 20).fill_(1.0);
  specref::SpecRefConfig c;
  c.steps = 4;
  c.sr.sr_start = 1;
  c.sr.sr_end = 4;
  c.blend.source_words = {"red", "circle"};
  c.blend.target_words = {"blue", "star"};

  auto joint = specref::invert_jointly(pipe, in, c, false);
  ASSERT_EQ(joint.source_latents.size(), 5u);
  ASSERT_EQ(joint.reference_latents.size(), 5u);
  for (size_t i = 0; i < joint.source_latents.size(); ++i) {
    expect_tensor(joint.source_latents[i], "source z_" + std::to_string(i), kFp32, dev, {1, 4, 16, 16});
    expect_tensor(joint.reference_latents[i], "reference z_" + std::to_string(i), kFp32, dev, {1, 4, 16, 16});
  }
  ASSERT_FALSE(joint.rules.sr_layers.empty());
  EXPECT_EQ(joint.cache.entries(), joint.rules.sr_layers.size() * 3u);  // SR steps 1..3
  const auto layout = attention_layout(pipe.config().unet, 16, 16);
  Problems cached;
  for (int layer : joint.rules.sr_layers)
    for (int64_t s = c.sr.sr_start; s < c.sr.sr_end; ++s) {
      ASSERT_TRUE(joint.cache.has(s, layer)) << s << " " << layer;
      const auto& [k, v] = joint.cache.get(s, layer);
      cached.check("cached K", k, torch::kHalf, dev);
      cached.check("cached V", v, torch::kHalf, dev);
    }
  EXPECT_TRUE(cached.empty()) << cached.report();

  // SR-attention at one SR site with bf16 q and output, as the UNet hands them over.
  const int sr_layer = joint.rules.sr_layers.back();
  AttentionLayerInfo info;
  for (const auto& l : layout)
    if (l.layer == sr_layer) info = l;
  ASSERT_GT(info.height, 0);
  const int64_t N = info.height * info.width, C = info.channels;
  const int64_t step = c.sr.sr_start;
  std::vector<int64_t> tokens = p2p::word_indices(pipe.tokenizer(), kTarget, "star");
  ASSERT_FALSE(tokens.empty());
  AttentionSite site = test::make_site(static_cast<int>(step), sr_layer, false, info.height);
  site.heads = pipe.config().unet.num_heads;
  torch::manual_seed(12);
  torch::Tensor q = torch::randn({4, N, C}).to(kModelDtype), out = torch::randn({4, N, C}).to(kModelDtype);
  {
    specref::SRConfig sc = c.sr;
    sc.mask_mode = specref::MaskMode::ms_only;  // M_t = 1: the reference attention is the output
    specref::SRAttention sr(nullptr, &joint.cache, joint.rules, sc, tokens, in.ms_pixels);
    ASSERT_TRUE(sr.is_sr_site(site));
    expect_tensor(sr.on_output(site, out, q, q, q), "SR-attention output", kModelDtype, dev, {4, N, C});
    EXPECT_EQ(sr.sr_calls, 1);
    // The reference object not found (empty M_s): finite, as in fp32 (a uniform average of V).
    specref::SRAttention empty(nullptr, &joint.cache, joint.rules, sc, tokens, torch::zeros({64, 64}));
    expect_tensor(empty.on_output(site, out, q, q, q), "SR-attention output with an empty M_s", kModelDtype, dev,
                  {4, N, C});
    const auto& [k, v] = joint.cache.get(step, sr_layer);
    expect_tensor(specref::reference_attention(q[3], k, v, torch::zeros({N}), site.heads),
                  "reference_attention with an empty M_s", kModelDtype, dev, {N, C});
    expect_tensor(specref::reference_attention(q[3], k, v, torch::ones({N}), site.heads),
                  "reference_attention with a full M_s", kModelDtype, dev, {N, C});
  }

  auto check_mask = [&](const torch::Tensor& m, const std::string& what) {
    ASSERT_TRUE(m.defined()) << what;
    Problems p;
    p.check(what, m, kFp32, dev);
    EXPECT_TRUE(p.empty()) << p.report();
    EXPECT_EQ(m.dim(), 2) << what;
    EXPECT_GE(m.min().item<float>(), 0.0f) << what;
    EXPECT_LE(m.max().item<float>(), 1.0f) << what;
  };
  specref::SpecRefResult r = specref::edit_with_reference(pipe, joint, in, c, false);
  expect_image(r.result, "specref result", 64, 64);
  expect_image(r.source_recon, "specref source reconstruction", 64, 64);
  EXPECT_FALSE(r.ms_derived);
  EXPECT_GT(r.cache_bytes, 0);
  check_mask(r.mt, "M_t");
  check_mask(r.ms_layer, "M_s at the layer");
  check_mask(r.blend_mask, "LocalBlend mask");

  // M_s derived from the reference's own cross-attention.
  auto derived_in = in;
  derived_in.ms_pixels = torch::Tensor();
  specref::SpecRefResult d = specref::edit_with_reference(pipe, joint, derived_in, c, false);
  EXPECT_TRUE(d.ms_derived);
  check_mask(d.ms_pixels, "derived M_s");
  EXPECT_EQ(d.ms_pixels.sizes(), (std::vector<int64_t>{64, 64}));
  expect_image(d.result, "specref result with derived M_s", 64, 64);

  EXPECT_EQ(pipe.model()->unet->attention_hook(), nullptr);  // restored
  watch.expect_clean("specref");
  expect_module_in(*pipe.model(), "model", kModelDtype, dev);
}

}  // namespace
}  // namespace sine
