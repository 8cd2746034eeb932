#include "server/method_jobs.h"

#include <algorithm>
#include <map>

#include "io/image.h"
#include "methods/singleinsert/concept_file.h"
#include "methods/method_parameters.h"
#include "methods/p2p/real_image_edit.h"
#include "methods/singleinsert/single_insert.h"
#include "methods/sine/sine_branches.h"
#include "methods/sine/sine_edit.h"
#include "methods/sine/sine_finetune.h"
#include "methods/sine/sine_model.h"
#include "methods/specref/specref.h"
#include "methods/p2p/word_alignment.h"
#include "server/request_fields.h"

namespace sine::server {

namespace {

// Re-throws a library error (sine::Error from a config's checks) as a 400 naming the params field.
template <class F>
auto as_field_error(const std::string& field, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const HttpError&) {
    throw;
  } catch (const Error& e) {
    throw bad_field(field, e.what());
  }
}

// Runs a config's own checks, whose errors begin with the field ("steps: must be ..."), as 400s
// naming "params.<field>".
template <class F>
void check_config(F f) {
  try {
    f();
  } catch (const HttpError&) {
    throw;
  } catch (const Error& e) {
    const std::string text = e.what();
    const auto colon = text.find(": ");
    const std::string field = colon == std::string::npos ? "" : text.substr(0, colon);
    const bool named = !field.empty() && field.find_first_not_of("abcdefghijklmnopqrstuvwxyz_0123456789") == std::string::npos;
    // Config fields whose request field has another name.
    static const std::map<std::string, std::string> kRequestField{{"edit_words", "words"}, {"mask_mode", "masks"}};
    const auto renamed = kRequestField.find(field);
    if (named) throw bad_field("params." + (renamed != kRequestField.end() ? renamed->second : field), text.substr(colon + 2));
    throw bad_field("params", text);
  }
}

// A required request image (`what` says what it is for in the 400), decoded and checked against the limits.
torch::Tensor request_image(const Fields& f, const std::string& name, const std::string& what,
                            const ImageLimits& limits) {
  const auto text = f.string(name);
  if (text.empty()) throw bad_field(f.path(name), "required (" + what + ")");
  return decode_image(base64_decode(text, f.path(name)), f.path(name), limits);
}

// The same fitted to the model's square size (centre crop, as the CLI's default --fit).
torch::Tensor fitted_image(const Fields& f, const std::string& name, const std::string& what, int64_t size,
                           const ImageLimits& limits) {
  return fit_image(request_image(f, name, what, limits), size, size, FitPolicy::CenterCrop);
}

// An optional request mask fitted like the image: float [size, size] in [0, 1]; undefined when absent.
torch::Tensor fitted_mask(const Fields& f, const std::string& name, int64_t size, const ImageLimits& limits) {
  if (!f.has(name)) return {};
  auto m = decode_mask(base64_decode(f.string(name), f.path(name)), f.path(name), limits);
  auto m8 = (m * 255).round().to(torch::kUInt8).unsqueeze(-1).expand({-1, -1, 3}).contiguous();
  return fit_image(m8, size, size, FitPolicy::CenterCrop).select(2, 0).to(torch::kFloat32).div(255);
}

}  // namespace

const std::vector<std::string>& MethodJobs::kinds() {
  static const std::vector<std::string> k{"finetune", "edit",   "insert-train", "insert-generate",
                                          "invert",   "p2p",    "specref"};
  return k;
}

std::pair<JobRunner, nlohmann::json> MethodJobs::prepare(const std::string& kind, const nlohmann::json& params) {
  nlohmann::json summary = nlohmann::json::object();
  JobRunner runner;
  if (kind == "finetune")
    runner = finetune(params, summary);
  else if (kind == "edit")
    runner = edit(params, summary);
  else if (kind == "insert-train")
    runner = insert_train(params, summary);
  else if (kind == "insert-generate")
    runner = insert_generate(params, summary);
  else if (kind == "invert")
    runner = invert(params, summary);
  else if (kind == "p2p")
    runner = p2p_edit(params, summary);
  else if (kind == "specref")
    runner = specref(params, summary);
  else
    throw bad_field("kind", "not a method job kind: '" + kind + "'");
  return {std::move(runner), std::move(summary)};
}

JobRunner MethodJobs::finetune(const nlohmann::json& params, nlohmann::json& summary) {
  Fields f(params, "params");
  auto image = request_image(f, "image", "base64 PNG/JPEG of the image to fine-tune on", limits_);
  SineFinetuneConfig c;
  c.class_word = f.string("class_word");
  if (c.class_word.empty()) throw bad_field("params.class_word", "required (the class word of the prompt, e.g. dog)");
  c.prompt_template = f.string("prompt_template", c.prompt_template);
  as_field_error("params.prompt_template", [&] { return sine_training_prompt(c.prompt_template, c.class_word); });
  c.mode = f.boolean("patch", false) ? SineMode::Patch : SineMode::Whole;
  c.steps = f.integer("steps", c.mode == SineMode::Patch ? 10000 : 800, 1, 100000);
  const bool sd_size = pipeline_.config().unet.model_channels >= 320;
  c.lr = f.number("lr", sd_size ? 1e-6 : 1e-4, 1e-9, 1.0);
  c.lora_rank = f.integer("lora_rank", 0, 0, 256);
  c.optimizer_state = as_field_error("params.optimizer_state", [&] {
    return parse_optimizer_state_dtype(f.string("optimizer_state", "fp32"), "params.optimizer_state");
  });
  c.seed = static_cast<uint64_t>(f.integer("seed", 23, 0, std::numeric_limits<int64_t>::max()));
  summary = {{"class_word", c.class_word},
             {"prompt", sine_training_prompt(c.prompt_template, c.class_word)},
             {"mode", sine_mode_name(c.mode)},
             {"steps", c.steps},
             {"lr", c.lr},
             {"lora_rank", c.lora_rank},
             {"optimizer_state", c.optimizer_state == torch::kBFloat16 ? "bf16" : "fp32"},
             {"seed", c.seed},
             {"image_size", {image.size(1), image.size(0)}}};
  LoadOptions base = base_;
  return [base, c, image](JobContext& job) -> nlohmann::json {
    job.begin_stage("loading a copy of the model", 1);
    Pipeline pipe = Pipeline::load(base);  // the fine-tune changes weights: never the served copy
    SineFinetuner finetuner(pipe, image, c);
    job.begin_stage("fine-tuning", c.steps);
    for (int64_t step = 1; step <= c.steps; ++step) {
      finetuner.train(step);
      job.progress(step, c.steps);  // cancellation lands between two training steps
    }
    const auto artifact = job.add_artifact(
        "finetune", "finetune.safetensors", "application/octet-stream",
        [&](const std::string& path) { save_sine_model(path, finetuner, pipe.source()); },
        {{"prompt", finetuner.prompt()}, {"mode", sine_mode_name(c.mode)}, {"steps", c.steps}});
    return {{"finetune", artifact.id}, {"prompt", finetuner.prompt()}};
  };
}

JobRunner MethodJobs::edit(const nlohmann::json& params, nlohmann::json& summary) {
  Fields f(params, "params");
  const std::string id = f.string("finetune");
  SineEditConfig c;
  c.mode = as_field_error("params.mode", [&] { return parse_sine_edit_mode(f.string("mode", "sine")); });
  std::string file;
  if (c.mode != SineEditMode::Pretrained || !id.empty()) {
    if (id.empty()) throw bad_field("params.finetune", "required (the artefact id of a finetune job's result)");
    auto artifact = artifacts_.find(id);
    if (!artifact || artifact->kind != "finetune")
      throw bad_field("params.finetune", "no finetune artefact '" + id + "' (GET /sine/v1/artifacts lists them)");
    file = artifacts_.file_path(*artifact);
  }
  c.edit_prompt = f.string("prompt");
  if (c.edit_prompt.empty()) throw bad_field("params.prompt", "required (the edit prompt)");
  const std::string desc = f.string("desc");
  const int64_t K = f.integer("K", 400, 0, 1000);
  const double v = f.number("v", 0.7, 0.0, 1.0);
  c.scale = f.number("cfg_scale", 7.5, 0.0, 100.0);
  c.steps = f.integer("steps", 100, 1, 1000);
  c.width = f.integer("width", 0, 0, limits_.max_side);
  c.height = f.integer("height", 0, 0, limits_.max_side);
  if (c.width % 8 || c.height % 8) throw bad_field(c.width % 8 ? "params.width" : "params.height", "must be a multiple of 8");
  c.seed = static_cast<uint64_t>(f.integer("seed", 42, 0, std::numeric_limits<int64_t>::max()));
  summary = {{"finetune", id}, {"prompt", c.edit_prompt}, {"desc", desc},       {"K", K},
             {"v", v},         {"cfg_scale", c.scale},    {"steps", c.steps},   {"width", c.width},
             {"height", c.height}, {"seed", c.seed},      {"mode", sine_edit_mode_name(c.mode)}};
  Pipeline* pretrained = &pipeline_;
  return [=](JobContext& job) -> nlohmann::json {
    std::optional<SineBranches> finetuned;
    std::vector<SineBranch> branches;
    if (!file.empty()) {
      job.begin_stage("loading the fine-tune", 1);
      SineBranchWeights weights;
      weights.v = v;
      weights.K = K;
      weights.desc = desc;
      finetuned.emplace(*pretrained, std::vector<std::string>{file}, weights);
      branches = finetuned->branches();
    }
    job.begin_stage("editing", c.steps);
    auto image = sine_edit(*pretrained, branches, c, job.step_callback());
    const auto p = sine_edit_parameters(*pretrained, c, branches, {id}, image.size(0), image.size(1));
    job.add_image(encode_png(image, p.png_text()), true, {{"infotext", p.format()}});
    return {{"infotexts", {p.format()}}, {"width", image.size(1)}, {"height", image.size(0)}};
  };
}

JobRunner MethodJobs::insert_train(const nlohmann::json& params, nlohmann::json& summary) {
  Fields f(params, "params");
  const int64_t size = pipeline_.native_size();
  auto image = fitted_image(f, "image", "base64 PNG/JPEG of the concept's image", size, limits_);
  torch::Tensor mask = fitted_mask(f, "mask", size, limits_);
  if (mask.defined()) mask = mask.view({1, 1, size, size});
  SingleInsertConfig c;
  c.class_word = f.string("class_word");
  if (c.class_word.empty()) throw bad_field("params.class_word", "required (the concept's class word, e.g. cube)");
  c.objective = as_field_error("params.objective", [&] { return parse_insert_objective(f.string("objective", "fg+bg")); });
  c.stage1_steps = f.integer("stage1_steps", c.stage1_steps, 0, 100000);
  c.stage2_steps = f.integer("stage2_steps", c.stage2_steps, 0, 100000);
  c.batch = f.integer("batch", c.batch, 1, 64);
  c.stage1_lr = f.number("stage1_lr", c.stage1_lr, 1e-9, 1.0);
  c.stage2_lr = f.number("stage2_lr", c.stage2_lr, 1e-9, 1.0);
  c.lora_rank = f.integer("lora_rank", c.lora_rank, 1, 256);
  c.use_semantic_loss = f.boolean("semantic_loss", c.use_semantic_loss);
  c.seed = static_cast<uint64_t>(f.integer("seed", 0, 0, std::numeric_limits<int64_t>::max()));
  summary = c.to_json();
  summary["mask"] = mask.defined() ? "given" : "derived from the class word's cross-attention";
  LoadOptions base = base_;
  return [base, c, image, mask](JobContext& job) -> nlohmann::json {
    job.begin_stage("loading a copy of the model", 1);
    Pipeline pipe = Pipeline::load(base);  // stage II attaches LoRA: never to the served copy
    torch::Tensor m = mask;
    if (!m.defined()) {
      m = attention_mask(pipe, image, c.class_word, c.seed);
      auto png = (m[0][0] * 255).round().to(torch::kUInt8).unsqueeze(2).expand({-1, -1, 3}).contiguous();
      job.add_artifact("mask", "mask.png", "image/png", [&](const std::string& path) {
        write_png(path, png, {{"parameters", "cross-attention mask of '" + c.class_word + "'"}});
      });
    }
    SingleInsertTrainer trainer(pipe, image, m, c);
    job.begin_stage("stage I", c.stage1_steps);
    for (int64_t step = 1; step <= c.stage1_steps; ++step) {
      trainer.run_stage1(step);
      job.progress(step, c.stage1_steps);
    }
    if (c.stage1_steps == 0) trainer.run_stage1();
    if (c.stage2_steps > 0) {
      job.begin_stage("stage II", c.stage2_steps);
      trainer.begin_stage2();
      for (int64_t step = 1; step <= c.stage2_steps; ++step) {
        trainer.run_stage2(step);  // stage II has its own Trainer, counting from 0
        job.progress(step, c.stage2_steps);
      }
    }
    Concept concept = trainer.concept_now();
    const auto artifact = job.add_artifact(
        "concept", "concept.safetensors", "application/octet-stream",
        [&](const std::string& path) { save_concept(path, concept); },
        {{"class_word", c.class_word}, {"token", concept.token}, {"stages", c.stage2_steps > 0 ? 2 : 1}});
    return {{"concept", artifact.id}, {"token", concept.token}, {"class_word", c.class_word}, {"info", concept.info}};
  };
}

JobRunner MethodJobs::insert_generate(const nlohmann::json& params, nlohmann::json& summary) {
  Fields f(params, "params");
  const auto ids = f.strings("concepts");
  if (ids.empty()) throw bad_field("params.concepts", "required (artefact ids of insert-train results)");
  std::vector<std::string> files;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto artifact = artifacts_.find(ids[i]);
    if (!artifact || artifact->kind != "concept")
      throw bad_field("params.concepts[" + std::to_string(i) + "]", "no concept artefact '" + ids[i] + "'");
    files.push_back(artifacts_.file_path(*artifact));
  }
  std::vector<double> scales;
  if (const auto* v = f.find("scales")) {
    if (!v->is_array() || v->size() != ids.size())
      throw bad_field("params.scales", "one number per concept (" + std::to_string(ids.size()) + ")");
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_number()) throw bad_field("params.scales[" + std::to_string(i) + "]", "expected a number");
      scales.push_back((*v)[i].get<double>());
    }
  }
  GenerateOptions o;
  o.prompt = f.string("prompt");
  if (o.prompt.empty()) throw bad_field("params.prompt", "required, with the concept token (e.g. \"* cube on the beach\")");
  o.negative_prompt = f.string("negative_prompt");
  o.steps = f.integer("steps", 50, 1, 1000);
  o.cfg_scale = f.number("cfg_scale", 7.5, 0.0, 100.0);
  o.seed = static_cast<uint64_t>(f.integer("seed", 42, 0, std::numeric_limits<int64_t>::max()));
  o.width = f.integer("width", 0, 0, limits_.max_side);
  o.height = f.integer("height", 0, 0, limits_.max_side);
  if (o.width % 8 || o.height % 8) throw bad_field(o.width % 8 ? "params.width" : "params.height", "must be a multiple of 8");
  summary = {{"concepts", ids}, {"scales", scales}, {"prompt", o.prompt}, {"negative_prompt", o.negative_prompt},
             {"steps", o.steps}, {"cfg_scale", o.cfg_scale}, {"seed", o.seed}, {"width", o.width}, {"height", o.height}};
  Pipeline* pipe = &pipeline_;
  return [pipe, files, ids, scales, o](JobContext& job) -> nlohmann::json {
    std::vector<Concept> concepts;
    for (const auto& file : files) concepts.push_back(load_concept(file));
    if (concepts.size() > 1)  // each concept its own token: *1, *2, ... (as `sine insert generate`)
      for (size_t i = 0; i < concepts.size(); ++i) concepts[i].token = "*" + std::to_string(i + 1);
    if (concepts[0].vector.size(0) != pipe->config().text.width)
      throw bad_field("params.concepts", "token width " + std::to_string(concepts[0].vector.size(0)) +
                                             " does not match the model's text width " +
                                             std::to_string(pipe->config().text.width));
    // The concepts' LoRA on the served model for this job only, removed however the job ends.
    struct Attached {
      std::vector<LoRANetwork> nets;
      ~Attached() {
        for (auto& n : nets) n.remove();
      }
    } attached{attach_concepts(pipe->model(), concepts, scales)};
    job.begin_stage("sampling", o.steps);
    auto image = generate_with_concepts(*pipe, concepts, o, job.step_callback());
    const auto p = insert_parameters(*pipe, o, concepts, ids, scales, image.size(0), image.size(1));
    job.add_image(encode_png(image, p.png_text()), true, {{"infotext", p.format()}});
    return {{"infotexts", {p.format()}}, {"width", image.size(1)}, {"height", image.size(0)}};
  };
}

JobRunner MethodJobs::invert(const nlohmann::json& params, nlohmann::json& summary) {
  Fields f(params, "params");
  const int64_t size = pipeline_.native_size();
  auto image = fitted_image(f, "image", "base64 PNG/JPEG of the image to invert", size, limits_);
  InvertConfig c;
  c.prompt = f.string("prompt");
  c.steps = f.integer("steps", c.steps, 1, 1000);
  c.schedule = f.string("schedule", c.schedule);
  c.cfg_scale = f.number("cfg_scale", c.cfg_scale, 0.0, 100.0);
  c.null_text = f.boolean("null_text", c.null_text);
  c.inner_steps = f.integer("inner_steps", c.inner_steps, 1, 1000);
  c.early_stop = f.number("early_stop", c.early_stop, 0.0, 1.0);
  check_config([&] { c.validate(); });
  summary = {{"prompt", c.prompt},     {"steps", c.steps},         {"schedule", c.schedule},
             {"cfg_scale", c.cfg_scale}, {"null_text", c.null_text}, {"inner_steps", c.inner_steps}};
  Pipeline* pipe = &pipeline_;
  return [pipe, c, image](JobContext& job) -> nlohmann::json {
    auto r = invert_image(*pipe, image, c, false, job.stage_callback(), job.step_callback());
    const auto artifact = job.add_artifact(
        "inversion", "inversion.safetensors", "application/octet-stream",
        [&](const std::string& path) { save_inversion(path, r.inversion); },
        {{"prompt", c.prompt}, {"steps", c.steps}, {"schedule", c.schedule}, {"null_text", c.null_text}});
    const auto p = invert_parameters(*pipe, c);
    job.add_image(encode_png(r.reconstruction, p.png_text()), true, {{"infotext", p.format()}, {"role", "reconstruction"}});
    nlohmann::json out = {{"inversion", artifact.id},
                          {"psnr_vae", r.psnr_vae},
                          {"psnr_guidance1", r.psnr_guidance1},
                          {"psnr_guidance", r.psnr_guidance}};
    if (c.null_text) {
      out["psnr_null_text"] = r.psnr_null_text;
      out["adam_steps"] = r.adam_steps;
    }
    return out;
  };
}

namespace {

// `reweight`: {"word": factor, ...} or "word=factor,...".
std::map<std::string, float> reweight_field(const Fields& f) {
  const auto* v = f.find("reweight");
  if (!v || v->is_null()) return {};
  if (v->is_string()) return as_field_error(f.path("reweight"), [&] { return parse_reweight(v->get<std::string>()); });
  if (!v->is_object()) throw bad_field(f.path("reweight"), "expected {\"word\": factor} or \"word=factor,...\"");
  std::map<std::string, float> out;
  for (const auto& [word, factor] : v->items()) {
    if (!factor.is_number()) throw bad_field(f.path("reweight") + "." + word, "must be a number");
    out[word] = factor.get<float>();
  }
  return out;
}

// `cross_replace_words`: {"word": end | [start, end], ...} or "word=end,word=start:end".
std::map<std::string, p2p::Bounds> cross_words_field(const Fields& f) {
  const auto* v = f.find("cross_replace_words");
  if (!v || v->is_null()) return {};
  const std::string path = f.path("cross_replace_words");
  if (v->is_string()) return as_field_error(path, [&] { return parse_cross_replace_words(v->get<std::string>()); });
  if (!v->is_object()) throw bad_field(path, "expected {\"word\": end or [start, end]} or \"word=start:end,...\"");
  std::map<std::string, p2p::Bounds> out;
  for (const auto& [word, b] : v->items()) {
    if (b.is_number())
      out[word] = {0.0, b.get<double>()};
    else if (b.is_array() && b.size() == 2 && b[0].is_number() && b[1].is_number())
      out[word] = {b[0].get<double>(), b[1].get<double>()};
    else
      throw bad_field(path + "." + word, "must be end or [start, end] (fractions of the steps)");
  }
  return out;
}

}  // namespace

JobRunner MethodJobs::p2p_edit(const nlohmann::json& params, nlohmann::json& summary) {
  Fields f(params, "params");
  const int64_t size = pipeline_.native_size();
  auto image = fitted_image(f, "image", "base64 PNG/JPEG of the image to edit", size, limits_);
  P2PEditConfig c;
  c.source = f.string("prompt");
  c.target = f.string("target");
  c.steps = f.integer("steps", c.steps, 1, 1000);
  c.cfg_scale = f.number("cfg_scale", c.cfg_scale, 0.0, 100.0);
  c.edit = f.string("edit", c.edit);
  c.cross_replace = f.number("cross_replace", c.cross_replace, 0.0, 1.0);
  c.self_replace = f.number("self_replace", c.self_replace, 0.0, 1.0);
  c.reweight = reweight_field(f);
  c.cross_replace_words = cross_words_field(f);
  c.local_blend = f.boolean("local_blend", c.local_blend);
  c.blend_words = f.string("blend_words");
  c.blend_threshold = f.number("blend_threshold", c.blend_threshold, 0.0, 1.0);
  c.blend_start = f.number("blend_start", c.blend_start, 0.0, 1.0);
  c.path = f.string("path", c.path);
  c.null_text = f.boolean("null_text", c.null_text);
  c.inner_steps = f.integer("inner_steps", c.inner_steps, 1, 1000);
  check_config([&] { c.validate(pipeline_.tokenizer()); });
  std::string file;
  const std::string id = f.string("inversion");
  if (!id.empty()) {
    auto artifact = artifacts_.find(id);
    if (!artifact || artifact->kind != "inversion")
      throw bad_field("params.inversion", "no inversion artefact '" + id + "' (an invert job's result)");
    file = artifacts_.file_path(*artifact);
  }
  summary = {{"prompt", c.source},        {"target", c.target},   {"steps", c.steps},
             {"cfg_scale", c.cfg_scale},  {"edit", c.edit},       {"local_blend", c.local_blend},
             {"path", c.path},            {"inversion", id}};
  Pipeline* pipe = &pipeline_;
  return [pipe, c, image, file](JobContext& job) -> nlohmann::json {
    std::optional<Inversion> inversion;
    if (!file.empty()) inversion = load_inversion(file, pipe->device());
    auto r = p2p_edit_image(*pipe, image, c, inversion ? &*inversion : nullptr, false, job.stage_callback(),
                            job.step_callback());
    const auto p = p2p_parameters(*pipe, c.source, c.target, r.controller, c.steps, c.cfg_scale, r.blended,
                                  r.null_text_path ? "null-text" : "latents", r.edited.size(0), r.edited.size(1));
    job.add_image(encode_png(r.edited, p.png_text()), true, {{"infotext", p.format()}, {"role", "result"}});
    job.add_image(encode_png(r.reconstruction), true, {{"role", "source reconstruction"}});
    if (r.blend_mask.defined()) {
      auto m = (r.blend_mask * 255).round().to(torch::kUInt8).unsqueeze(2).expand({-1, -1, 3}).contiguous();
      job.add_image(encode_png(m), true, {{"role", "blend mask"}});
    }
    return {{"infotexts", {p.format()}},
            {"edit", p2p::edit_kind_name(r.controller.kind)},
            {"path", r.null_text_path ? "null-text" : "latents"},
            {"psnr_reconstruction", r.psnr_reconstruction}};
  };
}

JobRunner MethodJobs::specref(const nlohmann::json& params, nlohmann::json& summary) {
  Fields f(params, "params");
  const int64_t size = pipeline_.native_size();
  specref::SpecRefInputs in;
  in.source = fitted_image(f, "source", "base64 PNG/JPEG", size, limits_);
  in.reference = fitted_image(f, "reference", "base64 PNG/JPEG", size, limits_);
  in.ms_pixels = fitted_mask(f, "ref_mask", size, limits_);
  in.source_prompt = f.string("prompt");
  in.target_prompt = f.string("target");
  for (const auto& item : f.strings("words")) {
    size_t start = 0;
    while (start <= item.size()) {
      const size_t end = std::min(item.find(',', start), item.size());
      if (end > start) in.edit_words.push_back(item.substr(start, end - start));
      start = end + 1;
    }
  }
  in.reference_prompt = f.string("reference_prompt");
  specref::SpecRefOptions o;
  o.steps = f.integer("steps", o.steps, 2, 1000);
  o.cfg_scale = f.number("cfg_scale", o.cfg_scale, 0.0, 100.0);
  o.sr_start = f.integer("sr_start", o.sr_start, 0, o.steps - 1);
  o.sr_end = f.integer("sr_end", o.steps, o.sr_start + 1, o.steps);
  o.threshold = f.number("threshold", o.threshold, 1e-6, 1.0);
  o.masks = f.string("masks", o.masks);
  o.edit = f.string("edit", o.edit);
  o.cross_replace = f.number("cross_replace", o.cross_replace, 0.0, 1.0);
  o.self_replace = f.number("self_replace", o.self_replace, 0.0, 1.0);
  o.local_blend = f.boolean("local_blend", o.local_blend);
  o.blend_words = f.string("blend_words");
  o.blend_threshold = f.number("blend_threshold", o.blend_threshold, 0.0, 1.0);
  o.blend_start = f.number("blend_start", o.blend_start, 0.0, 1.0);
  specref::SpecRefConfig c;
  check_config([&] { c = o.config(pipeline_.tokenizer(), in); });
  summary = {{"prompt", in.source_prompt}, {"target", in.target_prompt}, {"words", in.edit_words},
             {"steps", c.steps},           {"cfg_scale", c.cfg_scale},   {"masks", specref::mask_mode_name(c.sr.mask_mode)},
             {"sr_steps", {c.sr.sr_start, c.sr.sr_end}}, {"edit", p2p::edit_kind_name(c.p2p.kind)},
             {"local_blend", c.local_blend}, {"ref_mask", in.ms_pixels.defined() ? "given" : "derived"}};
  Pipeline* pipe = &pipeline_;
  return [pipe, in, c](JobContext& job) -> nlohmann::json {
    job.begin_stage("joint inversion, then the edit", c.steps);
    auto r = specref::run_specref(*pipe, in, c, false, job.step_callback());
    const auto p = specref_parameters(*pipe, in, c, r.ms_derived, r.result.size(0), r.result.size(1));
    job.add_image(encode_png(r.result, p.png_text()), true, {{"infotext", p.format()}, {"role", "result"}});
    job.add_image(encode_png(r.source_recon), true, {{"role", "source reconstruction"}});
    return {{"infotexts", {p.format()}}, {"ms_derived", r.ms_derived}, {"invert_seconds", r.invert_seconds},
            {"edit_seconds", r.edit_seconds}, {"cache_bytes", r.cache_bytes}};
  };
}

}  // namespace sine::server
