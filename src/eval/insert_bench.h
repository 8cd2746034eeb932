#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "methods/singleinsert/single_insert.h"
#include "pipeline/pipeline.h"
#include "world/scene.h"

namespace sine {

// `sine world bench-insert`: SingleInsert's Table 2 in the shapes world. Each concept is one
// patterned object of an unusual color/pattern on a busy (checkered or gradient) background,
// rendered with its exact mask; it is learned under each variant and then generated in editing
// prompts (new solid background, new gradient background, another object added, new position
// and size, together with a second learned concept), several seeds each. The judge reads every
// image back:
//   ESR               the whole prompt holds (edit done) and the concept's color, shape and
//                     pattern still match
//   fg fidelity       the concept object(s) found with the right color, shape and pattern
//   bg leakage        in the prompt that names no background, the sample's background (mean of its
//                     border) lies within CIE76 20 of the source's: the token carried it along;
//                     bg_distance is that distance's mean
//   diversity         mean pairwise mean |a − b| / 255 of the images of one prompt over seeds
// Variants: recon (baseline, stage I with the unmasked x0 loss), fg (+L_fg), fg+bg (+L_bg, the
// stage I model), stage2 (stage II with L_sm on top of the fg+bg encoder).
// Every row the bench knows, in table order. "oracle" learns nothing: the concept is written out in
// words, the ceiling of the learned rows.
const std::vector<std::string>& insert_bench_variants();
std::string insert_bench_variant_list();  // "oracle, recon, fg, fg+bg, stage2"

struct InsertBenchConfig {
  int64_t concepts = 8;
  int64_t seeds = 2;
  int64_t sample_steps = 20;
  double cfg_scale = 5.0;
  // Tuned for the shapes model (docs/singleinsert.md: 20 + 20 steps at 1e-4 / 5e-5 learn nothing
  // there); the official code uses 50 + 50 steps at batch 4, lr 1e-4 / 5e-5 on SD 1.5.
  int64_t stage1_steps = 150;
  int64_t stage2_steps = 50;
  int64_t batch = 4;
  double stage1_lr = 1e-3;
  double stage2_lr = 5e-4;
  int64_t lora_rank = 4;  // stage II LoRA rank (the official 4)
  std::vector<std::string> variants = insert_bench_variants();
  // Training prompt: "caption" = the source's caption with '*' for the concept's attributes ("a *
  // heart in the center on a checkered green background"; the shapes text encoder only saw whole
  // captions); "object" = the same without the background ("a * heart in the center": as in the
  // paper, nothing but the token explains the background, so a token can swallow it and L_bg has
  // something to stop); "short" = the official "* heart".
  std::string training_prompt = "caption";
  bool textured_backgrounds = false;  // sources on checkered, striped, dotted and noisy backgrounds
  int64_t size = 0;  // square canvas of the sources and samples in pixels; 0 = the model's native size
  uint64_t seed = 0;
  std::string output_dir;  // grids, sources, masks and bench.json; empty = none
};

struct InsertBenchConcept {
  world::Scene source;         // one object on a busy background
  std::string class_word;      // the shape
  std::string attributes;      // "pink dotted" (what '*' stands for in captions)
};

// The fixed list of concepts (the first `count`, at most 10). Textured: the busy backgrounds are
// checkered, striped, dotted and noisy in turn (what a learned token could swallow).
std::vector<InsertBenchConcept> insert_bench_concepts(int64_t count, bool textured = false);
// The training-prompt template of a concept for InsertBenchConfig::training_prompt.
std::string insert_bench_training_prompt(const InsertBenchConcept& concept, const std::string& kind);
// The editing prompts of concept i (with '*' and, for the pair prompt, '*1'/'*2' with concept j).
struct InsertBenchPrompt {
  std::string kind;      // new-background, new-gradient, add-object, position-size, two-concepts, no-background
  std::string prompt;    // with tokens
  std::string expected;  // the caption the judge checks (tokens replaced by attributes)
  bool two_concepts = false;
};
std::vector<InsertBenchPrompt> insert_bench_prompts(const InsertBenchConcept& concept,
                                                    const InsertBenchConcept& second);

nlohmann::json run_insert_bench(Pipeline& pipeline, const InsertBenchConfig& config);
std::string format_insert_bench(const nlohmann::json& result);  // a Markdown table

}  // namespace sine
