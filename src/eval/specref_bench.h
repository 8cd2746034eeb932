#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"

// `sine world bench-specref`: DDIM / null-text inversion, Prompt-to-Prompt word swap and SpecRef
// judged on shapes-world (source, reference) pairs rendered with exact masks.
namespace sine::eval {

struct SpecRefBenchOptions {
  int64_t pairs = 12;
  uint64_t seed = 0;
  int64_t steps = 20;
  double cfg_scale = 7.5;
  int64_t null_text_pairs = 4;
  int64_t inner_steps = 10;
  bool ablations = true;
  bool textured_references = false;  // references on checkered/striped/dotted/noisy backgrounds (Fig. 4)
  // The target prompt names only the reference object's shape: its color and pattern must come
  // from the reference (appearance the words do not carry, the paper's setting).
  bool unnamed_appearance = false;
  // Square canvas of the pairs in pixels (a multiple of 8); 0 = the model's native size.
  int64_t size = 0;
  std::string output;  // folder for grids + summary.json (empty: none)
};

struct SpecRefBenchReport {
  nlohmann::json json;
  std::string text;
};

SpecRefBenchReport run_specref_bench(Pipeline& pipe, const SpecRefBenchOptions& options);

}  // namespace sine::eval
