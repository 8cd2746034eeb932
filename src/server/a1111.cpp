#include "server/a1111.h"

#include <chrono>
#include <ctime>
#include <random>

#include "io/image.h"
#include "io/model_hash.h"
#include "server/request_fields.h"

namespace sine::server {

namespace {

// A1111's sampler list entries for the methods the engine has (name, then aliases).
struct SamplerName {
  const char* method;
  const char* display;
  std::vector<std::string> aliases;
};
const std::vector<SamplerName>& sampler_table() {
  static const std::vector<SamplerName> table{
      {"euler_a", "Euler a", {"k_euler_a", "k_euler_ancestral"}},
      {"euler", "Euler", {"k_euler"}},
      {"heun", "Heun", {"k_heun"}},
      {"dpmpp_2m", "DPM++ 2M", {"k_dpmpp_2m"}},
      {"ddim", "DDIM", {"ddim"}},
  };
  return table;
}

// "DPM++ 2M Karras" (A1111 before 1.9 folded the schedule into the name).
void parse_sampler(const std::string& field, std::string name, GenerateOptions& o) {
  const std::string karras = " Karras";
  if (name.size() > karras.size() && name.compare(name.size() - karras.size(), karras.size(), karras) == 0) {
    name.resize(name.size() - karras.size());
    o.schedule = SigmaSchedule::karras;
  }
  for (const auto& s : sampler_table())
    for (const auto& alias : s.aliases)
      if (name == alias) name = s.method;
  try {
    o.sampler = canonical_sampler_name(name);
  } catch (const std::exception&) {
    throw bad_field(field, "'" + name + "' is not a sampler (GET /sdapi/v1/samplers lists them)");
  }
}

std::string now_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  return buf;
}

}  // namespace

GenerationRequest parse_generation_request(const nlohmann::json& body, bool img2img, const ServerSettings& settings,
                                           const ImageLimits& limits, const std::string& prefix) {
  Fields f(body, prefix);
  GenerationRequest r;
  r.img2img = img2img;
  auto& o = r.options;
  o.prompt = f.string("prompt");
  o.prompt_syntax = true;  // A1111's clients write (emphasis:1.2), BREAK and <lora:...>
  o.negative_prompt = f.string("negative_prompt");
  o.steps = f.integer("steps", 20, 1, 1000);
  o.cfg_scale = f.number("cfg_scale", 7.0, 0.0, 100.0);
  const int64_t seed = f.integer("seed", -1, -1, std::numeric_limits<int64_t>::max());
  o.seed = seed >= 0 ? static_cast<uint64_t>(seed) : (static_cast<uint64_t>(std::random_device{}()) & 0xffffffffu);
  const double eta = f.number("eta", settings.eta_ddim, 0.0, 1.0);
  const auto overrides = f.object("override_settings");
  o.clip_skip = Fields(overrides, f.path("override_settings")).integer("CLIP_stop_at_last_layers", settings.clip_skip, 1, 12);
  o.clip_skip = f.integer("clip_skip", o.clip_skip, 1, 12);
  parse_sampler(f.path(f.has("sampler_name") ? "sampler_name" : "sampler_index"),
                f.string("sampler_name", f.string("sampler_index", "Euler a")), o);
  // A1111 takes eta with every sampler: DDIM's η; the ancestral samplers' noise multiplier (1 is
  // k-diffusion's own ancestral step, the only one here); ignored by the others. Clients such as
  // webuiapi send eta = 1 with every request.
  if (o.sampler == "ddim")
    o.eta = f.has("eta") ? eta : settings.eta_ddim;
  else if (o.sampler == "euler_a" && f.has("eta") && eta != 1.0)
    throw bad_field(f.path("eta"), "Euler a runs with eta 1 (k-diffusion's ancestral step) only; got " + std::to_string(eta));
  if (f.has("scheduler")) {
    const auto s = f.string("scheduler");
    if (s == "Karras" || s == "karras")
      o.schedule = SigmaSchedule::karras;
    else if (s == "Automatic" || s == "automatic" || s == "Uniform" || s == "uniform")
      o.schedule = SigmaSchedule::standard;
    else
      throw bad_field(f.path("scheduler"), "expected Automatic or Karras (got '" + s + "')");
  }
  if (f.boolean("enable_hr", false)) throw bad_field(f.path("enable_hr"), "the hires fix is not supported");
  r.batch_size = f.integer("batch_size", 1, 1, 16);
  r.n_iter = f.integer("n_iter", 1, 1, 16);
  r.send_images = f.boolean("send_images", true);
  r.save_images = f.boolean("save_images", false);
  o.width = f.integer("width", 0, 0, limits.max_side);
  o.height = f.integer("height", 0, 0, limits.max_side);
  if (o.width % 8 || o.height % 8) throw bad_field(f.path(o.width % 8 ? "width" : "height"), "must be a multiple of 8");

  if (img2img) {
    const auto images = f.strings("init_images");
    if (images.empty()) throw bad_field(f.path("init_images"), "img2img needs one image (base64 PNG/JPEG)");
    const std::string image_field = f.path("init_images") + "[0]";
    o.init_image = decode_image(base64_decode(images[0], image_field), image_field, limits);
    if (o.width == 0 && o.height == 0) {  // A1111 would use 512x512; the image's own size is what one means
      auto [h, w] = snap_size(o.init_image.size(0), o.init_image.size(1), 8);
      o.width = w;
      o.height = h;
    }
    o.strength = f.number("denoising_strength", 0.75, 0.0, 1.0);
    if (o.strength <= 0) throw bad_field(f.path("denoising_strength"), "must be above 0");
    if (f.has("mask")) {
      auto mask = decode_mask(base64_decode(f.string("mask"), f.path("mask")), f.path("mask"), limits);
      if (mask.size(0) != o.init_image.size(0) || mask.size(1) != o.init_image.size(1))
        mask = torch::nn::functional::interpolate(
                   mask.unsqueeze(0).unsqueeze(0),
                   torch::nn::functional::InterpolateFuncOptions()
                       .size(std::vector<int64_t>{o.init_image.size(0), o.init_image.size(1)})
                       .mode(torch::kBilinear)
                       .align_corners(false))
                   .squeeze(0)
                   .squeeze(0);
      if (f.integer("inpainting_mask_invert", 0, 0, 1) == 1) mask = 1 - mask;
      o.mask = mask.clamp(0, 1).contiguous();
      o.mask_blur = f.integer("mask_blur", 4, 0, 64);
      const int64_t fill = f.integer("inpainting_fill", 1, 0, 3);
      o.masked_content = static_cast<MaskedContent>(fill);
      r.parameters["inpainting_fill"] = fill;
      r.parameters["mask_blur"] = o.mask_blur;
    }
    r.parameters["denoising_strength"] = o.strength;
  }
  o.validate();  // NaN/Inf and ranges the engine holds for every model

  r.parameters.update({{"prompt", o.prompt},
                       {"negative_prompt", o.negative_prompt},
                       {"steps", o.steps},
                       {"cfg_scale", o.cfg_scale},
                       {"seed", static_cast<int64_t>(o.seed)},
                       {"sampler_name", sampler_display_name(o.sampler)},
                       {"scheduler", o.schedule == SigmaSchedule::karras ? "Karras" : "Automatic"},
                       {"batch_size", r.batch_size},
                       {"n_iter", r.n_iter},
                       {"width", o.width},
                       {"height", o.height},
                       {"eta", o.eta},
                       {"clip_skip", o.clip_skip},
                       {"send_images", r.send_images},
                       {"save_images", r.save_images}});
  return r;
}

torch::Tensor preview_image(Pipeline& pipeline, const torch::Tensor& latents) {
  torch::NoGradGuard no_grad;
  auto z = latents.detach().to(torch::kFloat32);
  if (z.size(2) * z.size(3) <= 32 * 32) return from_model_output(pipeline.decode_latents(z.narrow(0, 0, 1)));
  // SD 1.x: RGB ≈ the latent channels (unscaled) times these factors, in [-1, 1].
  const auto factors = torch::tensor({{0.298f, 0.207f, 0.208f},
                                      {0.187f, 0.286f, 0.173f},
                                      {-0.158f, 0.189f, 0.264f},
                                      {-0.184f, -0.271f, -0.473f}},
                                     torch::TensorOptions().device(z.device()));
  auto rgb = torch::einsum("chw,cr->rhw", {z[0] / 0.18215, factors});
  return from_model_output(rgb.clamp(-1, 1));
}

nlohmann::json run_generation(Pipeline& pipeline, JobContext& job, const GenerationRequest& request) {
  nlohmann::json seeds = nlohmann::json::array(), infotexts = nlohmann::json::array();
  const int64_t n = request.images();
  int64_t width = 0, height = 0;
  for (int64_t i = 0; i < n; ++i) {
    GenerateOptions o = request.options;
    o.seed = request.options.seed + static_cast<uint64_t>(i);
    job.begin_stage(n > 1 ? "image " + std::to_string(i + 1) + "/" + std::to_string(n) : "sampling", o.steps);
    o.on_latents = [&](int64_t step, int64_t total, const torch::Tensor& latents) {
      if (job.preview_due(step, total) && step < total) job.preview(preview_image(pipeline, latents));
    };
    auto image = pipeline.generate(o, job.step_callback());
    height = image.size(0);
    width = image.size(1);
    const auto params = pipeline.describe(o, height, width);
    job.add_image(encode_png(image, params.png_text()), request.save_images,
                  {{"seed", static_cast<int64_t>(o.seed)}, {"infotext", params.format()}});
    seeds.push_back(static_cast<int64_t>(o.seed));
    infotexts.push_back(params.format());
  }
  return {{"seeds", seeds}, {"infotexts", infotexts}, {"width", width}, {"height", height}};
}

nlohmann::json a1111_response(const GenerationRequest& request, const std::vector<std::string>& png_images,
                              const nlohmann::json& result, const Pipeline& pipeline) {
  nlohmann::json images = nlohmann::json::array();
  if (request.send_images)
    for (const auto& png : png_images) images.push_back(base64_encode(png));
  const auto& o = request.options;
  const auto seeds = result.value("seeds", nlohmann::json::array());
  const auto infotexts = result.value("infotexts", nlohmann::json::array());
  nlohmann::json prompts = nlohmann::json::array(), negatives = nlohmann::json::array();
  for (size_t i = 0; i < seeds.size(); ++i) {
    prompts.push_back(o.prompt);
    negatives.push_back(o.negative_prompt);
  }
  nlohmann::json info = {{"prompt", o.prompt},
                         {"all_prompts", prompts},
                         {"negative_prompt", o.negative_prompt},
                         {"all_negative_prompts", negatives},
                         {"seed", static_cast<int64_t>(o.seed)},
                         {"all_seeds", seeds},
                         {"subseed", -1},
                         {"all_subseeds", seeds},
                         {"subseed_strength", 0},
                         {"width", result.value("width", o.width)},
                         {"height", result.value("height", o.height)},
                         {"sampler_name", sampler_display_name(o.sampler)},
                         {"cfg_scale", o.cfg_scale},
                         {"steps", o.steps},
                         {"batch_size", request.batch_size},
                         {"restore_faces", false},
                         {"sd_model_name", pipeline.model_name()},
                         {"sd_model_hash", pipeline.model_hash()},
                         {"seed_resize_from_w", -1},
                         {"seed_resize_from_h", -1},
                         {"denoising_strength", request.img2img ? nlohmann::json(o.strength) : nlohmann::json(nullptr)},
                         {"extra_generation_params", nlohmann::json::object()},
                         {"index_of_first_image", 0},
                         {"infotexts", infotexts},
                         {"styles", nlohmann::json::array()},
                         {"job_timestamp", now_timestamp()},
                         {"clip_skip", o.clip_skip},
                         {"is_using_inpainting_conditioning", false},
                         {"version", std::string("sine ") + SINE_VERSION}};
  return {{"images", images}, {"parameters", request.parameters}, {"info", info.dump()}};
}

nlohmann::json a1111_samplers() {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : sampler_table()) {
    nlohmann::json aliases = s.aliases;
    aliases.push_back(s.method);
    out.push_back({{"name", s.display}, {"aliases", aliases}, {"options", nlohmann::json::object()}});
  }
  return out;
}

nlohmann::json a1111_schedulers() {
  return nlohmann::json::array({{{"name", "automatic"}, {"label", "Automatic"}, {"aliases", nullptr},
                                 {"default_rho", -1}, {"need_inner_model", false}},
                                {{"name", "karras"}, {"label", "Karras"}, {"aliases", nullptr},
                                 {"default_rho", 7.0}, {"need_inner_model", false}}});
}

std::string a1111_model_title(const Pipeline& pipeline) {
  const auto hash = pipeline.model_hash();
  return pipeline.model_name() + (hash.empty() ? "" : " [" + hash + "]");
}

nlohmann::json a1111_models(const Pipeline& pipeline) {
  const auto hash = pipeline.model_hash();
  return nlohmann::json::array({{{"title", a1111_model_title(pipeline)},
                                 {"model_name", pipeline.model_name()},
                                 {"hash", hash.empty() ? nlohmann::json(nullptr) : nlohmann::json(hash)},
                                 {"sha256", nullptr},
                                 {"filename", pipeline.model_name()},
                                 {"config", nullptr}}});
}

}  // namespace sine::server
