#include "server/method_jobs.h"

#include "io/image.h"
#include "methods/sine_edit.h"
#include "methods/sine_finetune.h"
#include "methods/sine_model.h"
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

}  // namespace

const std::vector<std::string>& MethodJobs::kinds() {
  static const std::vector<std::string> k{"finetune", "edit"};
  return k;
}

std::pair<JobRunner, nlohmann::json> MethodJobs::prepare(const std::string& kind, const nlohmann::json& params) {
  nlohmann::json summary = nlohmann::json::object();
  JobRunner runner;
  if (kind == "finetune")
    runner = finetune(params, summary);
  else if (kind == "edit")
    runner = edit(params, summary);
  else
    throw bad_field("kind", "not a method job kind: '" + kind + "'");
  return {std::move(runner), std::move(summary)};
}

JobRunner MethodJobs::finetune(const nlohmann::json& params, nlohmann::json& summary) {
  Fields f(params, "params");
  const auto image_text = f.string("image");
  if (image_text.empty()) throw bad_field("params.image", "required (base64 PNG/JPEG of the image to fine-tune on)");
  auto image = decode_image(base64_decode(image_text, "params.image"), "params.image", limits_);
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
  c.seed = static_cast<uint64_t>(f.integer("seed", 23, 0, std::numeric_limits<int64_t>::max()));
  summary = {{"class_word", c.class_word},
             {"prompt", sine_training_prompt(c.prompt_template, c.class_word)},
             {"mode", sine_mode_name(c.mode)},
             {"steps", c.steps},
             {"lr", c.lr},
             {"lora_rank", c.lora_rank},
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
  LoadOptions base = base_;
  Pipeline* pretrained = &pipeline_;
  return [=](JobContext& job) -> nlohmann::json {
    std::optional<SineModel> finetuned;
    std::vector<SineBranch> branches;
    if (!file.empty()) {
      job.begin_stage("loading the fine-tune", 1);
      finetuned.emplace(load_sine_model(file, base));
      SineBranch b;
      b.pipeline = &finetuned->pipeline;
      b.grid = finetuned->grid ? &*finetuned->grid : nullptr;
      b.prompt = desc.empty() ? finetuned->info.prompt : desc;
      b.beta = 1.0 - v;  // SINE's v: the weight of the pre-trained model's edit direction
      b.K = K;
      branches.push_back(b);
    }
    job.begin_stage("editing", c.steps);
    auto image = sine_edit(*pretrained, branches, c, job.step_callback());
    GenerationParameters p;
    p.prompt = c.edit_prompt;
    p.set("Steps", c.steps).set("Sampler", "DDIM").set("CFG scale", c.scale).set("Seed", static_cast<int64_t>(c.seed));
    p.set("Size", std::to_string(image.size(1)) + "x" + std::to_string(image.size(0)));
    if (const auto hash = pretrained->model_hash(); !hash.empty()) p.set("Model hash", hash);
    p.set("Model", pretrained->model_name());
    p.set("SINE mode", sine_edit_mode_name(c.mode));
    if (!branches.empty()) {
      p.set("SINE K", K).set("SINE v", v).set("SINE desc", branches[0].prompt).set("SINE finetune", id);
      p.set("SINE grid", branches[0].grid ? "stretched" : "none");
    }
    p.set("Version", std::string("sine ") + SINE_VERSION);
    job.add_image(encode_png(image, p.png_text()), true, {{"infotext", p.format()}});
    return {{"infotexts", {p.format()}}, {"width", image.size(1)}, {"height", image.size(0)}};
  };
}

}  // namespace sine::server
