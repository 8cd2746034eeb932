#pragma once
#include <memory>
#include <string>
#include <vector>

#include "methods/sine/positional_grid.h"
#include "methods/sine/sine_edit.h"
#include "methods/sine/sine_model.h"
#include "pipeline/pipeline.h"

// The fine-tuned side of a SINE edit (paper §3.2, several models in §3.3): each saved fine-tune is
// applied to an in-memory copy of the pre-trained model already loaded for the edit (the base is
// read from disk once; each fine-tune file is opened once), with its positional grid, its prompt
// and its guidance weight. With one model β = 1 − v, the paper's v; with N models the remaining
// 1 − v is shared, β_i = (1 − v)/N, unless each β_i (and K_i) is given.
namespace sine {

struct SineBranchWeights {
  double v = 0.7;
  int64_t K = 400;
  std::vector<double> betas;  // one per fine-tune: overrides v
  std::vector<int64_t> ks;    // one per fine-tune: overrides K
  std::string desc;           // the fine-tuned model's prompt (one fine-tune only; default: its training prompt)

  void validate(size_t models) const;  // errors name the field: v, K, betas, ks, desc
  // β of branch i of `models`.
  double beta(size_t i, size_t models) const;
};

class SineBranches {
 public:
  // `pretrained` holds the base every file was fine-tuned from (checked by fingerprint).
  SineBranches(Pipeline& pretrained, const std::vector<std::string>& files, const SineBranchWeights& weights);
  SineBranches(const SineBranches&) = delete;
  SineBranches& operator=(const SineBranches&) = delete;

  const std::vector<SineBranch>& branches() const { return branches_; }
  const std::vector<SineModelInfo>& infos() const { return infos_; }

 private:
  std::vector<std::unique_ptr<Pipeline>> pipelines_;
  std::vector<std::unique_ptr<PositionalGrid>> grids_;
  std::vector<SineModelInfo> infos_;
  std::vector<SineBranch> branches_;
};

}  // namespace sine
