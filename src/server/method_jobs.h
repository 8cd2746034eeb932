#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "pipeline/pipeline.h"
#include "server/artifacts.h"
#include "server/image_codec.h"
#include "server/jobs.h"

// The papers' methods as server jobs. Each reads its request into the method's own config (errors
// name the field), runs the library on the job's worker thread with progress and cancellation,
// and stages its files as artefacts.
namespace sine::server {

// SINE stage 1 (`finetune`): fine-tune a copy of the served model on one image; the artefact is the
// fine-tune file `sine finetune` writes, usable by later `edit` jobs by its artefact id.
//   params: image (base64), class_word, patch (bool), steps (default: 800 whole / 10000 patch),
//           lr (default: 1e-6 SD-size, 1e-4 small models), lora_rank, seed, prompt_template
// SINE stage 2 (`edit`): model-based guidance with K and v (β = 1 − v) over one fine-tune.
//   params: finetune (artefact id), prompt (the edit), desc (default: the fine-tune's prompt), K,
//           v, cfg_scale, steps, width, height (any size: patch fine-tunes stretch their grid),
//           seed, mode (sine | no-guidance | pretrained)
// SingleInsert stage I + II (`insert-train`) on a copy of the served model; the artefact is the
// concept file `sine insert train` writes.
//   params: image (base64), mask (base64; absent: the class word's cross-attention mask, kept as
//           an artefact), class_word, objective (recon | fg | fg+bg), stage1_steps, stage2_steps,
//           batch, stage1_lr, stage2_lr, lora_rank, semantic_loss (bool), seed
// SingleInsert generation (`insert-generate`) with one or more concepts by artefact id.
//   params: concepts ([id, ...]; tokens *, or *1, *2, ... for several), scales, prompt,
//           negative_prompt, steps, cfg_scale, seed, width, height
// DDIM (+ null-text) inversion of a real image (`invert`); the artefact is the inversion file
// `sine invert` writes, usable by later `p2p` jobs by its id; the result holds the PSNRs.
//   params: image (base64), prompt (its caption), steps, schedule (null-text | specref | sd),
//           cfg_scale, null_text (bool), inner_steps, early_stop
// Prompt-to-Prompt on a real image (`p2p`): inversion (or a prior `invert` artefact), then the
// edit with attention control; images: the edit, the source reconstruction, the blend mask.
//   params: image (base64), prompt (source), target, inversion (artefact id), steps, cfg_scale,
//           edit (auto | replace | refine | none), cross_replace, self_replace, reweight
//           ({"word": factor} or "word=factor,..."), cross_replace_words ({"word": [start, end]}),
//           local_blend, blend_words ("cat:dog"), blend_threshold, blend_start,
//           path (auto | latents | null-text), null_text, inner_steps
// SpecRef (`specref`): joint inversion of source and reference, then the edit with the
// reference's K/V inside M_s, Prompt-to-Prompt control and LocalBlend.
//   params: source, reference (base64), ref_mask (base64; absent: M_s from the reference's
//           cross-attention to the words), prompt (source), target, words ([..] or "a,b"),
//           reference_prompt, steps, cfg_scale, masks (both | ms | mt | none), sr_start, sr_end,
//           threshold, edit (auto | replace | refine), cross_replace, self_replace, local_blend,
//           blend_words ("cat:dog"), blend_threshold, blend_start

class MethodJobs {
 public:
  // `base`: how the served model was loaded (jobs that change weights load their own copy).
  MethodJobs(Pipeline& pipeline, LoadOptions base, ArtifactStore& artifacts, ImageLimits limits)
      : pipeline_(pipeline), base_(std::move(base)), artifacts_(artifacts), limits_(limits) {}

  // The job kinds this class runs.
  static const std::vector<std::string>& kinds();
  // Parses `params` of a job of `kind` (HttpError 400 naming "params.<field>") and returns the
  // runner and a summary of the request. Called on the HTTP thread; the runner on the worker.
  std::pair<JobRunner, nlohmann::json> prepare(const std::string& kind, const nlohmann::json& params);

 private:
  JobRunner finetune(const nlohmann::json& params, nlohmann::json& summary);
  JobRunner edit(const nlohmann::json& params, nlohmann::json& summary);
  JobRunner insert_train(const nlohmann::json& params, nlohmann::json& summary);
  JobRunner insert_generate(const nlohmann::json& params, nlohmann::json& summary);
  JobRunner invert(const nlohmann::json& params, nlohmann::json& summary);
  JobRunner p2p_edit(const nlohmann::json& params, nlohmann::json& summary);
  JobRunner specref(const nlohmann::json& params, nlohmann::json& summary);

  Pipeline& pipeline_;
  LoadOptions base_;
  ArtifactStore& artifacts_;
  ImageLimits limits_;
};

}  // namespace sine::server
