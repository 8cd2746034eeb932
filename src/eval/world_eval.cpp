#include "eval/world_eval.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "core/error.h"
#include "io/image.h"
#include "world/caption.h"
#include "world/render.h"
#include "world/trainer.h"

namespace sine::eval {

namespace {

double psnr(const torch::Tensor& a_u8, const torch::Tensor& b_u8) {
  const double mse = (a_u8.to(torch::kFloat64) - b_u8.to(torch::kFloat64)).div(255.0).pow(2).mean().item<double>();
  return mse > 0 ? 10.0 * std::log10(1.0 / mse) : 99.0;
}

constexpr const char* kImageClaims[] = {"pass", "background_color", "background_kind", "object_count"};
constexpr const char* kObjectClaims[] = {"object_color", "shape", "pattern", "size", "position"};

}  // namespace

const char* name_of(WorldEvalMode mode) {
  switch (mode) {
    case WorldEvalMode::prompt_following:
      return "prompt following";
    case WorldEvalMode::vae:
      return "vae reconstruction";
    case WorldEvalMode::renders:
      return "exact renders";
  }
  return "?";
}

void ClaimTally::add(const world::Verdict& v) {
  ++images;
  passed += v.pass;
  background_color += v.background_color_ok;
  background_kind += v.background_kind_ok;
  count += v.count_ok;
  for (const world::ObjectVerdict& o : v.objects) {
    ++objects;
    color += o.found >= 0 && o.color_ok;
    shape += o.found >= 0 && o.shape_ok;
    pattern += o.found >= 0 && o.pattern_ok;
    size += o.found >= 0 && o.size_ok;
    position += o.found >= 0 && o.position_ok;
  }
}

nlohmann::json ClaimTally::summary() const {
  return {{"images", images},
          {"objects", objects},
          {"pass", eval::to_json(wilson(passed, images))},
          {"background_color", eval::to_json(wilson(background_color, images))},
          {"background_kind", eval::to_json(wilson(background_kind, images))},
          {"object_count", eval::to_json(wilson(count, images))},
          {"object_color", eval::to_json(wilson(color, objects))},
          {"shape", eval::to_json(wilson(shape, objects))},
          {"pattern", eval::to_json(wilson(pattern, objects))},
          {"size", eval::to_json(wilson(size, objects))},
          {"position", eval::to_json(wilson(position, objects))}};
}

WorldEvalResult evaluate_world(Pipeline* pipeline, const WorldEvalConfig& config,
                               const std::function<void(int64_t, int64_t)>& on_image) {
  const auto& c = config;
  if (c.count < 1) throw Error("count: must be at least 1");
  if (c.steps < 1) throw Error("steps: must be at least 1");
  if (c.width < 0 || c.height < 0) throw Error("width: width and height must not be negative");
  if (!pipeline && c.mode != WorldEvalMode::renders) throw Error("world eval: a model is needed unless judging renders");
  WorldEvalResult r;
  r.config = c;
  r.model = pipeline ? pipeline->source() : "renderer";
  const int64_t native = pipeline ? pipeline->native_size() : world::WorldTrainOptions{}.image_size;
  r.width = c.width > 0 ? c.width : native;
  r.height = c.height > 0 ? c.height : native;
  if (pipeline && (r.width % pipeline->vae_factor() || r.height % pipeline->vae_factor()))
    throw Error("width: width and height must be multiples of " + std::to_string(pipeline->vae_factor()) +
                " (got " + std::to_string(r.width) + "x" + std::to_string(r.height) + ")");
  if (r.width > 4096 || r.height > 4096)
    throw Error("width: at most 4096 pixels a side (got " + std::to_string(r.width) + "x" +
                std::to_string(r.height) + ")");
  world::SceneSampling sampling = c.sampling;
  sampling.aspect = static_cast<float>(r.width) / static_cast<float>(r.height);

  double psnr_sum = 0;
  const std::vector<uint64_t> seeds = world::eval_seeds(c.count, c.seed);
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::mt19937_64 rng(seeds[i]);
    const world::Scene scene = world::sample_scene(rng, sampling);
    WorldEvalImage record;
    record.caption = world::caption(scene);
    record.background = scene.background.kind;
    torch::Tensor image;
    torch::NoGradGuard no_grad;
    if (c.mode == WorldEvalMode::renders) {
      image = world::render_scene(scene, r.height, r.width);
    } else if (c.mode == WorldEvalMode::vae) {
      const torch::Tensor rendered = world::render_scene(scene, r.height, r.width);
      image = from_model_output(pipeline->decode_latents(pipeline->encode_image(rendered)));
      record.psnr = psnr(rendered, image);
      psnr_sum += record.psnr;
    } else {
      GenerateOptions o;
      o.prompt = record.caption;
      o.width = r.width;
      o.height = r.height;
      o.steps = c.steps;
      o.cfg_scale = c.cfg_scale;
      o.sampler = c.sampler;
      o.schedule = c.schedule;
      o.seed = seeds[i];
      image = pipeline->generate(o);
    }
    const world::Scene expected = world::parse_caption(record.caption);
    const world::JudgeResult judged = world::judge(image, &expected);
    record.verdict = *judged.verdict;
    record.found = world::caption(judged.scene);
    r.all.add(record.verdict);
    r.by_background[static_cast<int>(record.background)].add(record.verdict);
    if (static_cast<int64_t>(r.grid.size()) < c.grid_images) {
      r.grid.push_back(image);
      r.grid_labels.push_back(std::string(record.verdict.pass ? "ok " : "X ") + record.caption);
    }
    r.images.push_back(std::move(record));
    if (on_image) on_image(static_cast<int64_t>(i) + 1, c.count);
  }
  if (c.mode == WorldEvalMode::vae) r.mean_psnr = psnr_sum / static_cast<double>(c.count);
  return r;
}

nlohmann::json WorldEvalResult::to_json() const {
  nlohmann::json kinds = nlohmann::json::object();
  for (int k = 0; k < world::kBackgroundKindCount; ++k)
    if (by_background[k].images > 0) kinds[world::name_of(static_cast<world::BackgroundKind>(k))] = by_background[k].summary();
  nlohmann::json per_image = nlohmann::json::array();
  for (const WorldEvalImage& im : images) {
    nlohmann::json objects = nlohmann::json::array();
    for (const world::ObjectVerdict& o : im.verdict.objects)
      objects.push_back({{"found", o.found >= 0}, {"color", o.color_ok}, {"shape", o.shape_ok},
                         {"pattern", o.pattern_ok}, {"size", o.size_ok}, {"position", o.position_ok}});
    nlohmann::json entry{{"caption", im.caption},
                         {"found", im.found},
                         {"background", world::name_of(im.background)},
                         {"pass", im.verdict.pass},
                         {"background_color", im.verdict.background_color_ok},
                         {"background_kind", im.verdict.background_kind_ok},
                         {"object_count", im.verdict.count_ok},
                         {"objects", objects}};
    if (config.mode == WorldEvalMode::vae) entry["psnr"] = im.psnr;
    per_image.push_back(entry);
  }
  nlohmann::json j{{"mode", name_of(config.mode)}, {"model", model},       {"width", width},
                   {"height", height},              {"seed_offset", config.seed}, {"summary", all.summary()},
                   {"by_background", kinds},        {"images", per_image}};
  if (config.mode == WorldEvalMode::prompt_following) {
    j["steps"] = config.steps;
    j["cfg_scale"] = config.cfg_scale;
    j["sampler"] = config.sampler;
    j["scheduler"] = config.schedule == SigmaSchedule::karras ? "karras" : "default";
  }
  if (config.mode == WorldEvalMode::vae) j["summary"]["psnr"] = mean_psnr;
  return j;
}

std::string WorldEvalResult::text() const {
  std::ostringstream s;
  s << name_of(config.mode) << " at " << width << "x" << height << " on " << all.images << " held-out captions ("
    << all.objects << " objects)";
  if (config.mode == WorldEvalMode::prompt_following)
    s << ", " << config.steps << " steps " << config.sampler
      << (config.schedule == SigmaSchedule::karras ? " karras" : "") << ", CFG " << config.cfg_scale;
  s << ", rate [95% interval]\n";
  const nlohmann::json summary = all.summary();
  auto line = [&](const std::string& key, const nlohmann::json& j) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "  %-18s%.3f [%.3f, %.3f]\n", key.c_str(), j["rate"].get<double>(),
                  j["low"].get<double>(), j["high"].get<double>());
    s << buf;
  };
  for (const char* key : kImageClaims) line(key, summary[key]);
  for (const char* key : kObjectClaims) line(key, summary[key]);
  if (config.mode == WorldEvalMode::vae) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "  %-18s%.2f\n", "psnr_db", mean_psnr);
    s << buf;
  }
  bool several = false;
  for (int k = 1; k < world::kBackgroundKindCount; ++k) several |= by_background[k].images > 0;
  if (several) {
    s << "per background kind (images: pass, background kind, background color, count)\n";
    for (int k = 0; k < world::kBackgroundKindCount; ++k) {
      const ClaimTally& t = by_background[k];
      if (t.images == 0) continue;
      char buf[200];
      std::snprintf(buf, sizeof(buf), "  %-10s%4lld: %s  %s  %s  %s\n", world::name_of(static_cast<world::BackgroundKind>(k)),
                    static_cast<long long>(t.images), format_rate(wilson(t.passed, t.images)).c_str(),
                    format_rate(wilson(t.background_kind, t.images)).c_str(),
                    format_rate(wilson(t.background_color, t.images)).c_str(),
                    format_rate(wilson(t.count, t.images)).c_str());
      s << buf;
    }
  }
  return s.str();
}

WorldEvalComparison compare_world_evals(const nlohmann::json& a, const nlohmann::json& b) {
  const auto& ia = a.at("images");
  const auto& ib = b.at("images");
  if (ia.size() != ib.size())
    throw Error("world compare: the evaluations judged " + std::to_string(ia.size()) + " and " +
                std::to_string(ib.size()) + " images; a paired test needs the same captions");
  WorldEvalComparison c;
  c.a = a.value("model", "a");
  c.b = b.value("model", "b");
  for (size_t i = 0; i < ia.size(); ++i)
    if (ia[i].at("caption") != ib[i].at("caption"))
      throw Error("world compare: image " + std::to_string(i) + " has caption '" + ia[i].at("caption").get<std::string>() +
                  "' in one evaluation and '" + ib[i].at("caption").get<std::string>() + "' in the other");
  for (const char* key : kImageClaims) {
    std::vector<bool> xa, xb;
    for (size_t i = 0; i < ia.size(); ++i) {
      xa.push_back(ia[i].at(key).get<bool>());
      xb.push_back(ib[i].at(key).get<bool>());
    }
    const McNemar t = mcnemar(xa, xb);
    c.claims.push_back({key, wilson(t.both + t.only_a, static_cast<int64_t>(xa.size())),
                        wilson(t.both + t.only_b, static_cast<int64_t>(xb.size())), t});
  }
  return c;
}

nlohmann::json WorldEvalComparison::to_json() const {
  nlohmann::json j{{"a", a}, {"b", b}, {"claims", nlohmann::json::array()}};
  for (const Claim& c : claims)
    j["claims"].push_back({{"claim", c.name}, {"a", eval::to_json(c.rate_a)}, {"b", eval::to_json(c.rate_b)},
                           {"mcnemar", eval::to_json(c.test)}});
  return j;
}

std::string WorldEvalComparison::text() const {
  std::ostringstream s;
  s << "a: " << a << "\nb: " << b << "\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-18s %-22s %-22s %8s %8s %10s\n", "claim", "a", "b", "only a", "only b", "p");
  s << line;
  for (const Claim& c : claims) {
    std::snprintf(line, sizeof line, "  %-18s %-22s %-22s %8lld %8lld %10.4g\n", c.name.c_str(),
                  format_rate(c.rate_a).c_str(), format_rate(c.rate_b).c_str(), static_cast<long long>(c.test.only_a),
                  static_cast<long long>(c.test.only_b), c.test.p_value);
    s << line;
  }
  return s.str();
}

}  // namespace sine::eval
