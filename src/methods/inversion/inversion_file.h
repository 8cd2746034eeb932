#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "diffusion/ddim.h"

// The inversion file: an image inverted once (DDIM inversion, optionally null-text inversion) and
// edited many times, as the null-text inversion notebook keeps x_t and φ_t between cells.
namespace sine {

// DDIM timestep conventions by name: "null-text" (= "p2p", 980…0, the notebook's), "specref"
// (981…1, final ᾱ 1) and "sd" (981…1, final ᾱ_0). Errors name "schedule".
DDIMConfig ddim_schedule(const std::string& name);

// An inverted image, the file `sine invert` writes and `sine p2p --inversion` reads: tensors
// `latents` z*_0..z*_T [T+1,4,h,w] and, after null-text inversion, `null_embeddings` φ_0..φ_{T-1}
// [T,77,C]; metadata format=sine-inversion, prompt, steps, schedule, steps_offset, set_alpha_to_one
// and `info` (model, image, PSNRs).
struct Inversion {
  std::string prompt;
  std::string schedule = "null-text";
  std::vector<torch::Tensor> latents;          // each [1,4,h,w]
  std::vector<torch::Tensor> null_embeddings;  // each [1,77,C]; empty without null-text
  std::map<std::string, std::string> info;

  int64_t steps() const { return static_cast<int64_t>(latents.size()) - 1; }
  DDIMConfig ddim() const { return ddim_schedule(schedule); }
};
// Atomic (temp file + rename).
void save_inversion(const std::string& path, const Inversion& inversion);
// Checks the format and the shapes; errors name the file. Latents go to `device`.
Inversion load_inversion(const std::string& path, const torch::Device& device = torch::kCPU);

}  // namespace sine
