#include "methods/sine/sine_branches.h"

#include <filesystem>

#include "core/error.h"
#include "core/validate.h"
#include "io/safetensors.h"

namespace sine {

void SineBranchWeights::validate(size_t models) const {
  require_in("v", v, 0.0, 1.0);
  if (K < 0 || K > 1000) throw Error("K: must be in [0, 1000] (got " + std::to_string(K) + ")");
  if (!betas.empty() && betas.size() != models)
    throw Error("betas: give one weight per fine-tuned model (" + std::to_string(models) + ")");
  for (double b : betas) require_in("betas", b, 0.0, 1.0);
  if (!ks.empty() && ks.size() != models)
    throw Error("ks: give one K per fine-tuned model (" + std::to_string(models) + ")");
  for (int64_t k : ks)
    if (k < 0 || k > 1000) throw Error("ks: must be in [0, 1000] (got " + std::to_string(k) + ")");
  if (!desc.empty() && models > 1) throw Error("desc: only with a single fine-tuned model");
}

double SineBranchWeights::beta(size_t i, size_t models) const {
  return !betas.empty() ? betas.at(i) : sine_beta(v, models);
}

SineBranches::SineBranches(Pipeline& pretrained, const std::vector<std::string>& files,
                           const SineBranchWeights& weights) {
  weights.validate(files.size());
  const std::string base_fingerprint = files.empty() ? "" : weights_fingerprint(pretrained.model());
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& path = files[i];
    if (!std::filesystem::exists(path)) throw Error(path + ": SINE model file does not exist");
    const SafeTensors file = SafeTensors::open(path);
    const SineModelInfo info = SineModelInfo::from_metadata(file.metadata(), path);
    if (info.base_fingerprint != base_fingerprint)
      throw Error(path + ": fine-tuned from a different base model (" + info.base_model + ", fingerprint " +
                  info.base_fingerprint + "; the loaded base has " + base_fingerprint + ")");
    pipelines_.push_back(std::make_unique<Pipeline>(pretrained.copy_denoiser()));
    apply_sine_model(*pipelines_.back(), file, path, /*check_base=*/false);
    grids_.push_back(info.grid ? std::make_unique<PositionalGrid>(*info.grid) : nullptr);
    infos_.push_back(info);
  }
  for (size_t i = 0; i < files.size(); ++i)
    branches_.push_back(SineBranch{pipelines_[i].get(), grids_[i].get(),
                                   weights.desc.empty() ? infos_[i].prompt : weights.desc,
                                   weights.beta(i, files.size()), weights.ks.empty() ? weights.K : weights.ks[i]});
}

}  // namespace sine
