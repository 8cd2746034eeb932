#include "eval/insert_bench.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/progress.h"
#include "io/image.h"
#include "io/json_file.h"
#include "eval/report_table.h"
#include "eval/statistics.h"
#include "methods/singleinsert/concept_file.h"
#include "world/caption.h"
#include "world/judge.h"
#include "world/render.h"

namespace sine {

using world::BackgroundKind;
using world::Color;
using world::Pattern;
using world::Shape;

namespace {

struct ConceptSpec {
  Shape shape;
  Color color;
  Pattern pattern;
  BackgroundKind kind;
  Color bg1, bg2;
};

// Unusual color/pattern objects on busy backgrounds.
const std::vector<ConceptSpec>& concept_specs() {
  static const std::vector<ConceptSpec> specs = {
      {Shape::heart, Color::pink, Pattern::dotted, BackgroundKind::checkered, Color::green, Color::green},
      {Shape::star, Color::orange, Pattern::striped, BackgroundKind::gradient, Color::blue, Color::yellow},
      {Shape::cross, Color::purple, Pattern::striped, BackgroundKind::checkered, Color::yellow, Color::yellow},
      {Shape::circle, Color::green, Pattern::dotted, BackgroundKind::checkered, Color::pink, Color::pink},
      {Shape::triangle, Color::yellow, Pattern::striped, BackgroundKind::gradient, Color::purple, Color::white},
      {Shape::square, Color::blue, Pattern::dotted, BackgroundKind::checkered, Color::orange, Color::orange},
      {Shape::ring, Color::red, Pattern::striped, BackgroundKind::gradient, Color::gray, Color::black},
      {Shape::heart, Color::white, Pattern::striped, BackgroundKind::checkered, Color::red, Color::red},
      {Shape::star, Color::gray, Pattern::dotted, BackgroundKind::gradient, Color::pink, Color::orange},
      {Shape::square, Color::purple, Pattern::dotted, BackgroundKind::checkered, Color::green, Color::green},
  };
  return specs;
}

std::string attributes_of(Color c, Pattern p) {
  std::string s = world::name_of(c);
  if (p != Pattern::plain) s += std::string(" ") + world::name_of(p);
  return s;
}

// The first candidate color not in `avoid`.
Color pick(const std::vector<Color>& candidates, const std::set<Color>& avoid) {
  for (Color c : candidates)
    if (!avoid.count(c)) return c;
  return candidates.front();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

// Mean CIE Lab of an image's border band (3 % of the short side): in a prompt that names no
// background and a concept in the center, that is the background the model chose.
std::array<float, 3> border_lab(const torch::Tensor& image_u8) {
  const int64_t h = image_u8.size(0), w = image_u8.size(1);
  const int64_t band = std::max<int64_t>(1, std::llround(0.03 * static_cast<double>(std::min(h, w))));
  torch::Tensor inside = torch::ones({h, w}, torch::kBool);
  inside.slice(0, band, h - band).slice(1, band, w - band).fill_(false);
  const torch::Tensor mean = image_u8.to(torch::kFloat64).index({inside}).mean(0);
  return world::lab_of_rgb_float(static_cast<float>(mean[0].item<double>()), static_cast<float>(mean[1].item<double>()),
                                 static_cast<float>(mean[2].item<double>()));
}

// A sample leaks when its background lands within this CIE76 distance of the source's (palette
// colors are 30-100 apart; a model's own choice for "no background" is a neutral gray or tan).
constexpr float kLeakDistance = 20.0f;

double mean_pairwise_distance(const std::vector<torch::Tensor>& images) {
  double sum = 0;
  int64_t n = 0;
  for (size_t a = 0; a < images.size(); ++a)
    for (size_t b = a + 1; b < images.size(); ++b) {
      sum += (images[a].to(torch::kFloat32) - images[b].to(torch::kFloat32)).abs().mean().item<double>() / 255.0;
      ++n;
    }
  return n ? sum / static_cast<double>(n) : 0.0;
}

}  // namespace

std::vector<InsertBenchConcept> insert_bench_concepts(int64_t count, bool textured) {
  const auto& specs = concept_specs();
  if (count < 1 || count > static_cast<int64_t>(specs.size()))
    throw Error("concepts: must be between 1 and " + std::to_string(specs.size()));
  std::vector<InsertBenchConcept> out;
  for (int64_t i = 0; i < count; ++i) {
    const ConceptSpec& s = specs[static_cast<size_t>(i)];
    InsertBenchConcept c;
    world::Object o;
    o.shape = s.shape;
    o.color = s.color;
    o.pattern = s.pattern;
    o.size = world::Size::large;
    o.cx = o.cy = 0.5f;
    o.grid_cell = 4;
    c.source.objects = {o};
    c.source.background.kind = s.kind;
    c.source.background.color = s.bg1;
    c.source.background.color2 = s.bg2;
    if (textured) {
      static constexpr BackgroundKind kTextures[] = {BackgroundKind::checkered, BackgroundKind::striped,
                                                     BackgroundKind::dotted, BackgroundKind::noisy};
      c.source.background = {kTextures[i % 4], s.bg1, s.bg1, static_cast<uint32_t>(1000 + i)};
    }
    c.class_word = world::name_of(s.shape);
    c.attributes = attributes_of(s.color, s.pattern);
    out.push_back(c);
  }
  return out;
}

std::string insert_bench_training_prompt(const InsertBenchConcept& concept, const std::string& kind) {
  if (kind == "short") return "* {class}";
  if (kind != "caption" && kind != "object")
    throw Error("training_prompt: '" + kind + "' is not short, object or caption");
  world::Scene scene = concept.source;
  scene.background_stated = kind == "caption";  // object: the background is left to the token
  const std::string text = world::caption(scene);
  const std::string phrase = concept.attributes + " " + concept.class_word;
  const size_t at = text.find(phrase);
  if (at == std::string::npos) throw Error("insert bench: '" + phrase + "' not in the caption '" + text + "'");
  return text.substr(0, at) + "* {class}" + text.substr(at + phrase.size());
}

std::vector<InsertBenchPrompt> insert_bench_prompts(const InsertBenchConcept& concept,
                                                    const InsertBenchConcept& second) {
  const world::Object& o = concept.source.objects[0];
  const world::Background& bg = concept.source.background;
  const std::set<Color> avoid{o.color, bg.color, bg.color2};
  const std::string S = concept.class_word;
  const Color solid = pick({Color::white, Color::gray, Color::blue, Color::yellow, Color::black}, avoid);
  const Color top = pick({Color::black, Color::blue, Color::white, Color::gray}, avoid);
  std::set<Color> avoid2 = avoid;
  avoid2.insert(top);
  const Color bottom = pick({Color::white, Color::yellow, Color::gray, Color::black}, avoid2);
  std::set<Color> avoid3 = avoid;
  avoid3.insert(solid);
  const Color other = pick({Color::red, Color::blue, Color::yellow, Color::green, Color::black}, avoid3);
  const Shape other_shape = o.shape == Shape::circle ? Shape::square : Shape::circle;
  const world::Object& o2 = second.source.objects[0];
  const Color pair_bg =
      pick({Color::white, Color::gray, Color::black, Color::blue, Color::yellow},
           {o.color, o2.color, bg.color, bg.color2, second.source.background.color, second.source.background.color2});

  std::vector<InsertBenchPrompt> out;
  auto add = [&](const std::string& kind, const std::string& prompt, bool two) {
    InsertBenchPrompt p;
    p.kind = kind;
    p.prompt = prompt;
    p.two_concepts = two;
    p.expected = two ? replace_all(replace_all(prompt, "*1", concept.attributes), "*2", second.attributes)
                     : replace_all(prompt, "*", concept.attributes);
    out.push_back(p);
  };
  const std::string n = world::name_of(solid);
  add("new-background", "a * " + S + " in the center on a " + n + " background", false);
  add("new-gradient", "a * " + S + " in the center on a " + std::string(world::name_of(top)) + " to " +
                          world::name_of(bottom) + " gradient background",
      false);
  add("add-object", "a * " + S + " on the left and a " + std::string(world::name_of(other)) + " " +
                        world::name_of(other_shape) + " on the right on a " + n + " background",
      false);
  add("position-size", "a small * " + S + " at the top right on a " + n + " background", false);
  add("two-concepts", "a *1 " + S + " on the left and a *2 " + second.class_word + " on the right on a " +
                          std::string(world::name_of(pair_bg)) + " background",
      true);
  // No background named: what the model draws there is the token's doing (leakage).
  add("no-background", "a * " + S + " in the center", false);
  add("no-background-small", "a small * " + S + " at the bottom right", false);
  return out;
}

const std::vector<std::string>& insert_bench_variants() {
  static const std::vector<std::string> kVariants{"oracle", "recon", "fg", "fg+bg", "stage2"};
  return kVariants;
}

std::string insert_bench_variant_list() {
  std::string out;
  for (const auto& v : insert_bench_variants()) out += (out.empty() ? "" : ", ") + v;
  return out;
}

namespace {

// ---------------------------------------------------------------------------------------------
// The bench's parts: render and check the sources, learn every concept under every variant
// (train), sample and judge the editing prompts (run), count each variant's row (tally), and the
// paired claims (report: format_insert_bench prints the rows as one table).

struct Sources {
  std::vector<InsertBenchConcept> concepts;
  std::vector<torch::Tensor> images, masks;
  std::vector<std::array<float, 3>> border;  // each source's background, for leakage
};

Sources render_sources(const InsertBenchConfig& cfg, int64_t size) {
  Sources s;
  s.concepts = insert_bench_concepts(cfg.concepts, cfg.textured_backgrounds);
  for (size_t i = 0; i < s.concepts.size(); ++i) {
    s.images.push_back(world::render_scene(s.concepts[i].source, size, size));
    s.border.push_back(border_lab(s.images[i]));
    s.masks.push_back(world::render_object_mask(s.concepts[i].source, 0, size, size));
    // The judge must read every source exactly, or its verdicts on the samples mean nothing.
    const world::JudgeResult read = world::judge(s.images[i], &s.concepts[i].source);
    if (!read.verdict->pass)
      throw Error("insert bench: the judge misreads source " + std::to_string(i) + " (" +
                  world::caption(s.concepts[i].source) + "): " + world::caption(read.scene));
  }
  return s;
}

struct Learned {
  std::map<std::string, std::vector<Concept>> concepts;  // variant -> one per source
  std::map<std::string, std::vector<double>> seconds;
};

bool wants(const InsertBenchConfig& cfg, const std::string& v) {
  return std::find(cfg.variants.begin(), cfg.variants.end(), v) != cfg.variants.end();
}

// Train: recon and fg alone (stage I); fg+bg is stage I of the run that goes on to stage II.
Learned learn_concepts(Pipeline& pipeline, const InsertBenchConfig& cfg, const Sources& src) {
  Learned out;
  const size_t N = src.concepts.size();
  for (size_t i = 0; i < N; ++i) {
    SingleInsertConfig base;
    base.class_word = src.concepts[i].class_word;
    base.batch = cfg.batch;
    base.stage1_steps = cfg.stage1_steps;
    base.stage2_steps = cfg.stage2_steps;
    base.stage1_lr = cfg.stage1_lr;
    base.stage2_lr = cfg.stage2_lr;
    base.lora_rank = cfg.lora_rank;
    base.seed = cfg.seed + i;
    base.prompt_template = insert_bench_training_prompt(src.concepts[i], cfg.training_prompt);
    std::fprintf(stderr, "concept %zu/%zu: %s %s\n", i + 1, N, src.concepts[i].attributes.c_str(),
                 src.concepts[i].class_word.c_str());
    for (const std::string v : {"recon", "fg"}) {
      if (!wants(cfg, v)) continue;
      SingleInsertConfig c = base;
      c.objective = parse_insert_objective(v);
      c.stage2_steps = 0;
      SingleInsertTrainer t(pipeline, src.images[i], src.masks[i], c);
      Concept learnt = t.train();
      out.seconds[v].push_back(learnt.info["stage1_seconds"].get<double>());
      out.concepts[v].push_back(std::move(learnt));
    }
    if (wants(cfg, "fg+bg") || wants(cfg, "stage2")) {
      SingleInsertConfig c = base;
      c.objective = InsertObjective::ForegroundBackground;
      SingleInsertTrainer t(pipeline, src.images[i], src.masks[i], c);
      t.run_stage1();
      Concept stage1 = t.concept_now();
      const double s1 = stage1.info["stage1_seconds"].get<double>();
      if (wants(cfg, "fg+bg")) {
        out.seconds["fg+bg"].push_back(s1);
        out.concepts["fg+bg"].push_back(stage1);
      }
      if (wants(cfg, "stage2")) {
        t.run_stage2();
        Concept stage2 = t.concept_now();
        out.seconds["stage2"].push_back(s1 + stage2.info["stage2_seconds"].get<double>());
        out.concepts["stage2"].push_back(std::move(stage2));
      }
      t.detach_lora();
    }
  }
  return out;
}

// One judged sample.
struct SampleOutcome {
  std::string kind;  // the prompt's kind
  bool pass = false;
  int fg_objects = 0, fg_ok = 0, fg_color = 0, fg_shape = 0, fg_pattern = 0;  // over the concept objects
  std::optional<double> bg_distance;  // no-background prompts: CIE76 of its border to the source's
};

struct VariantRun {
  std::vector<SampleOutcome> samples;  // concept, prompt, seed order: the same cases in every variant
  std::vector<double> diversity;       // per (concept, prompt)
  std::vector<torch::Tensor> grid;
  std::vector<std::string> labels;
};

// Run: every editing prompt of every concept under one variant, several seeds, judged.
VariantRun run_variant(Pipeline& pipeline, const InsertBenchConfig& cfg, const Sources& src, const std::string& v,
                       const std::vector<Concept>& set, ProgressBar& bar, int64_t& done) {
  // "oracle": no concept is learned; the prompt spells out what '*' stands for ("a pink dotted
  // heart ..."), so its ESR is what the base model can draw at all: the ceiling of every variant.
  const bool oracle = v == "oracle";
  const size_t N = src.concepts.size();
  VariantRun run;
  for (size_t i = 0; i < N; ++i) {
    const size_t j = (i + 1) % N;
    const auto prompts = insert_bench_prompts(src.concepts[i], src.concepts[j]);
    if (i < 4) {
      run.grid.push_back(src.images[i]);
      run.labels.push_back("source");
    }
    // All prompts of one concept set (the single-concept ones, then the pair) in one batch each.
    std::vector<std::vector<torch::Tensor>> samples(prompts.size());
    for (const bool pair : {false, true}) {
      std::vector<Concept> used;  // none for the oracle
      if (!oracle) {
        used = pair ? std::vector<Concept>{set[i], set[j]} : std::vector<Concept>{set[i]};
        if (pair) {
          used[0].token = "*1";
          used[1].token = "*2";
        } else {
          used[0].token = "*";
        }
      }
      std::vector<std::string> batch_prompts;
      std::vector<uint64_t> batch_seeds;
      std::vector<size_t> which;
      for (size_t k = 0; k < prompts.size(); ++k)
        if (prompts[k].two_concepts == pair)
          for (int64_t s = 0; s < cfg.seeds; ++s) {
            batch_prompts.push_back(oracle ? prompts[k].expected : prompts[k].prompt);
            batch_seeds.push_back(cfg.seed * 1000 + static_cast<uint64_t>(s));
            which.push_back(k);
          }
      auto nets = attach_concepts(pipeline.model(), used, {});
      auto images_out =
          generate_batch_with_concepts(pipeline, used, batch_prompts, batch_seeds, cfg.sample_steps, cfg.cfg_scale,
                                       "", cfg.size);
      for (auto& n : nets) n.remove();
      for (size_t b = 0; b < images_out.size(); ++b) samples[which[b]].push_back(images_out[b]);
      done += static_cast<int64_t>(images_out.size());
      bar.update(done);
    }
    for (size_t k = 0; k < prompts.size(); ++k) {
      const auto& p = prompts[k];
      const world::Scene expected = world::parse_caption(p.expected);
      const int concept_objects = p.two_concepts ? 2 : 1;
      for (size_t s = 0; s < samples[k].size(); ++s) {
        const torch::Tensor& img = samples[k][s];
        const world::Verdict verdict = *world::judge(img, &expected).verdict;
        SampleOutcome o;
        o.kind = p.kind;
        o.pass = verdict.pass;
        for (const auto& ov : verdict.objects)
          if (ov.expected < concept_objects) {
            ++o.fg_objects;
            o.fg_ok += ov.found >= 0 && ov.color_ok && ov.shape_ok && ov.pattern_ok;
            o.fg_color += ov.found >= 0 && ov.color_ok;
            o.fg_shape += ov.found >= 0 && ov.shape_ok;
            o.fg_pattern += ov.found >= 0 && ov.pattern_ok;
          }
        if (p.kind.rfind("no-background", 0) == 0) o.bg_distance = world::delta_e(border_lab(img), src.border[i]);
        run.samples.push_back(o);
        if (i < 4 && s == 0) {
          run.grid.push_back(img);
          run.labels.push_back(p.kind.substr(0, 10) + (verdict.pass ? " ok" : " X"));
        }
      }
      run.diversity.push_back(mean_pairwise_distance(samples[k]));
    }
  }
  return run;
}

// Tally: one variant's row of Table 2.
nlohmann::json tally_variant(const VariantRun& run, const std::vector<double>& seconds, size_t concepts) {
  int64_t images = 0, passes = 0, fg_objects = 0, fg_ok = 0, fg_color = 0, fg_shape = 0, fg_pattern = 0;
  int64_t leaks = 0, leak_images = 0;
  double distance_sum = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> by_kind;
  for (const SampleOutcome& o : run.samples) {
    ++images;
    passes += o.pass;
    by_kind[o.kind].first += o.pass;
    by_kind[o.kind].second += 1;
    fg_objects += o.fg_objects;
    fg_ok += o.fg_ok;
    fg_color += o.fg_color;
    fg_shape += o.fg_shape;
    fg_pattern += o.fg_pattern;
    if (o.bg_distance) {
      ++leak_images;
      leaks += *o.bg_distance < kLeakDistance;
      distance_sum += *o.bg_distance;
    }
  }
  nlohmann::json row;
  row["images"] = images;
  row["esr"] = static_cast<double>(passes) / static_cast<double>(images);
  auto of_fg = [&](int64_t k) { return fg_objects ? static_cast<double>(k) / static_cast<double>(fg_objects) : 0.0; };
  row["fg_fidelity"] = of_fg(fg_ok);
  row["fg_color"] = of_fg(fg_color);
  row["fg_shape"] = of_fg(fg_shape);
  row["fg_pattern"] = of_fg(fg_pattern);
  row["bg_leakage"] = leak_images ? static_cast<double>(leaks) / static_cast<double>(leak_images) : 0.0;
  row["esr_interval"] = eval::to_json(eval::wilson(passes, images));
  row["fg_fidelity_interval"] = eval::to_json(eval::wilson(fg_ok, fg_objects));
  row["bg_leakage_interval"] = eval::to_json(eval::wilson(leaks, leak_images));
  row["bg_distance"] = leak_images ? distance_sum / static_cast<double>(leak_images) : 0.0;
  double diversity = 0;
  for (double d : run.diversity) diversity += d;
  row["diversity"] = run.diversity.empty() ? 0.0 : diversity / static_cast<double>(run.diversity.size());
  double secs = 0;
  for (double s : seconds) secs += s;
  row["seconds_per_concept"] = secs / static_cast<double>(concepts);
  for (const auto& [kind, pr] : by_kind)
    row["esr_by_kind"][kind] = static_cast<double>(pr.first) / static_cast<double>(pr.second);
  return row;
}

// Table 2's claims, case by case (exact McNemar on the same samples): L_bg lowers leakage (recon vs
// fg+bg), stage II raises ESR (fg+bg vs stage2), the learned concept against the baseline (stage2 vs
// recon); and L_bg's effect as a sign test: in how many no-background samples is the baseline's
// background nearer the source's than the fg+bg concept's, and the reverse.
nlohmann::json paired_claims(const std::map<std::string, VariantRun>& runs) {
  std::map<std::string, std::vector<bool>> esr, leaked;
  std::map<std::string, std::vector<double>> distance;
  for (const auto& [v, run] : runs)
    for (const SampleOutcome& o : run.samples) {
      esr[v].push_back(o.pass);
      if (o.bg_distance) {
        distance[v].push_back(*o.bg_distance);
        leaked[v].push_back(*o.bg_distance < kLeakDistance);
      }
    }
  nlohmann::json claims = nlohmann::json::array();
  const struct {
    const char *a, *b, *outcome;
  } tests[] = {{"recon", "fg+bg", "bg_leakage"}, {"stage2", "fg+bg", "esr"}, {"stage2", "recon", "esr"}};
  for (const auto& c : tests) {
    auto& cases = std::string(c.outcome) == "esr" ? esr : leaked;
    if (!cases.count(c.a) || !cases.count(c.b)) continue;
    claims.push_back({{"a", c.a}, {"b", c.b}, {"outcome", c.outcome},
                      {"mcnemar", eval::to_json(eval::mcnemar(cases[c.a], cases[c.b]))}});
  }
  if (distance.count("recon") && distance.count("fg+bg")) {
    const auto &a = distance["recon"], &b = distance["fg+bg"];
    std::vector<bool> a_nearer, b_nearer;
    for (size_t k = 0; k < a.size(); ++k) {
      a_nearer.push_back(a[k] < b[k]);
      b_nearer.push_back(b[k] < a[k]);
    }
    claims.push_back({{"a", "recon"}, {"b", "fg+bg"}, {"outcome", "bg_nearer_source"},
                      {"mcnemar", eval::to_json(eval::mcnemar(a_nearer, b_nearer))}});
  }
  return claims;
}

}  // namespace

nlohmann::json run_insert_bench(Pipeline& pipeline, const InsertBenchConfig& cfg) {
  if (cfg.seeds < 1) throw Error("seeds: must be at least 1");
  if (cfg.concepts < 2) throw Error("concepts: must be at least 2 (the pair prompt needs a second concept)");
  const auto& known = insert_bench_variants();
  for (const auto& v : cfg.variants)
    if (std::find(known.begin(), known.end(), v) == known.end())
      throw Error("variants: unknown variant '" + v + "' (known: " + insert_bench_variant_list() + ")");
  if (!cfg.output_dir.empty()) std::filesystem::create_directories(cfg.output_dir);

  const Sources src = render_sources(cfg, pipeline.canvas(cfg.size, cfg.size).first);
  const size_t N = src.concepts.size();
  Learned learned = learn_concepts(pipeline, cfg, src);

  nlohmann::json result;
  result["config"] = {{"concepts", cfg.concepts},         {"seeds", cfg.seeds},
                      {"sample_steps", cfg.sample_steps}, {"cfg_scale", cfg.cfg_scale},
                      {"stage1_steps", cfg.stage1_steps}, {"stage2_steps", cfg.stage2_steps},
                      {"batch", cfg.batch},               {"stage1_lr", cfg.stage1_lr},
                      {"stage2_lr", cfg.stage2_lr},       {"lora_rank", cfg.lora_rank},        {"size", cfg.size},
                      {"seed", cfg.seed},
                      {"model", pipeline.source()},       {"training_prompt", cfg.training_prompt},
                      {"textured_backgrounds", cfg.textured_backgrounds}};
  result["concepts"] = nlohmann::json::array();
  for (const auto& c : src.concepts) result["concepts"].push_back(world::caption(c.source));
  const int64_t prompts_per_concept =
      static_cast<int64_t>(insert_bench_prompts(src.concepts[0], src.concepts[1 % N]).size());
  ProgressBar bar("bench-insert sampling",
                  static_cast<int64_t>(cfg.variants.size() * N) * prompts_per_concept * cfg.seeds);
  int64_t done = 0;
  std::map<std::string, VariantRun> runs;
  for (const std::string& v : cfg.variants) {
    if (v == "oracle") learned.seconds[v].assign(N, 0.0);
    const VariantRun& run = runs[v] = run_variant(pipeline, cfg, src, v, learned.concepts[v], bar, done);
    result["variants"][v] = tally_variant(run, learned.seconds[v], N);
    if (!cfg.output_dir.empty()) {
      std::string name = v == "fg+bg" ? "fg_bg" : v;
      write_png(cfg.output_dir + "/grid_" + name + ".png", make_grid(run.grid, 1 + prompts_per_concept, 2, run.labels),
                {{"variant", v}});
    }
  }
  bar.finish();
  result["variant_order"] = cfg.variants;
  const nlohmann::json claims = paired_claims(runs);
  if (!claims.empty()) result["claims"] = claims;
  if (!cfg.output_dir.empty()) {
    for (size_t i = 0; i < std::min<size_t>(N, 8); ++i)
      write_png(cfg.output_dir + "/source_" + std::to_string(i) + ".png", src.images[i],
                {{"caption", world::caption(src.concepts[i].source)}});
    write_json_file(cfg.output_dir + "/bench.json", result);
  }
  return result;
}

std::string format_insert_bench(const nlohmann::json& r) {
  const std::vector<std::string> kinds{"new-background", "new-gradient", "add-object",         "position-size",
                                       "two-concepts",   "no-background", "no-background-small"};
  std::vector<std::string> columns{"ESR",        "fg fidelity",     "fg color",  "fg shape", "fg pattern",
                                   "bg leakage", "bg ΔE to source", "diversity", "s/concept"};
  for (const auto& k : kinds) columns.push_back("ESR " + k);
  eval::ReportTable table("variant", columns);
  for (const auto& v : r.at("variant_order")) {
    const auto& row = r.at("variants").at(v.get<std::string>());
    auto rate = [&](const char* key) {
      const std::string ik = std::string(key) + "_interval";
      if (!row.contains(ik)) return eval::ReportTable::number(row.at(key).get<double>());
      eval::Rate rt;
      rt.successes = std::llround(row[ik]["rate"].get<double>() * row[ik]["n"].get<double>());
      rt.trials = row[ik]["n"].get<int64_t>();
      rt.low = row[ik]["low"].get<double>();
      rt.high = row[ik]["high"].get<double>();
      return eval::ReportTable::rate(rt);
    };
    std::vector<eval::ReportTable::Cell> cells{rate("esr"),
                                               rate("fg_fidelity"),
                                               eval::ReportTable::number(row.value("fg_color", 0.0)),
                                               eval::ReportTable::number(row.value("fg_shape", 0.0)),
                                               eval::ReportTable::number(row.value("fg_pattern", 0.0)),
                                               rate("bg_leakage"),
                                               eval::ReportTable::number(row.value("bg_distance", 0.0), 1),
                                               eval::ReportTable::number(row.at("diversity").get<double>()),
                                               eval::ReportTable::number(row.at("seconds_per_concept").get<double>(), 1)};
    for (const auto& k : kinds)
      cells.push_back(eval::ReportTable::number(
          row.contains("esr_by_kind") && row["esr_by_kind"].contains(k) ? row["esr_by_kind"][k].get<double>() : 0.0, 2));
    table.add(v.get<std::string>(), cells);
  }
  std::string s = table.markdown();
  if (r.contains("claims")) {
    s += "\npaired on the same images (exact McNemar):\n";
    for (const auto& c : r["claims"]) {
      const auto& m = c["mcnemar"];
      char line[256];
      std::snprintf(line, sizeof line, "- %s: only %s %lld, only %s %lld, p = %.4g\n",
                    c["outcome"].get<std::string>().c_str(), c["a"].get<std::string>().c_str(),
                    static_cast<long long>(m["only_a"].get<int64_t>()), c["b"].get<std::string>().c_str(),
                    static_cast<long long>(m["only_b"].get<int64_t>()), m["p_value"].get<double>());
      s += line;
    }
  }
  return s;
}

}  // namespace sine
