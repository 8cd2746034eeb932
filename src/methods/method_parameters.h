#pragma once
#include <string>
#include <vector>

#include "io/generation_parameters.h"
#include "methods/p2p/real_image_edit.h"
#include "methods/singleinsert/single_insert.h"
#include "methods/sine/sine_edit.h"
#include "methods/specref/specref.h"

// What each method's image was made with, as AUTOMATIC1111's "parameters" PNG text: the fields
// A1111 writes (Steps, Sampler, CFG scale, Seed, Size, Model hash, Model) and then the method's
// own, named after the papers' symbols (SINE K and v, SpecRef's words and masks, SingleInsert's
// concepts). The CLI and the server both write these.
namespace sine {

// SINE model-based guidance. `finetunes` names each branch's fine-tune (a file name or artefact id).
GenerationParameters sine_edit_parameters(const Pipeline& pretrained, const SineEditConfig& config,
                                          const std::vector<SineBranch>& branches,
                                          const std::vector<std::string>& finetunes, int64_t height, int64_t width);

// SingleInsert generation: each concept as "TOKEN=NAME" (with "@scale" when scales are given);
// `names` name the concepts (file names or artefact ids).
GenerationParameters insert_parameters(const Pipeline& pipeline, const GenerateOptions& options,
                                       const std::vector<Concept>& concepts, const std::vector<std::string>& names,
                                       const std::vector<double>& scales, int64_t height, int64_t width);

// SpecRef: the target prompt is the prompt; the source prompt, words, masks, SR steps and P2P's edit.
GenerationParameters specref_parameters(const Pipeline& pipeline, const specref::SpecRefInputs& inputs,
                                        const specref::SpecRefConfig& config, bool ms_derived, int64_t height,
                                        int64_t width);

// Prompt-to-Prompt on a real image: target prompt, source prompt, the controller and the path.
// The reconstruction of an inverted image (guidance 1, or the null-text embeddings at cfg_scale).
GenerationParameters invert_parameters(const Pipeline& pipeline, const InvertConfig& config);

GenerationParameters p2p_parameters(const Pipeline& pipeline, const std::string& source, const std::string& target,
                                    const p2p::ControllerConfig& controller, int64_t steps, double cfg_scale,
                                    bool local_blend, const std::string& path, int64_t height, int64_t width);

}  // namespace sine
