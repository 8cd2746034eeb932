#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/lora.h"
#include "methods/singleinsert/single_insert.h"

namespace sine {

// A SingleInsert concept file (.safetensors): "token_vector" [1, C], the LoRA under sine's native
// keys (<ldm module>.lora_down / .lora_up / .alpha), and metadata "sine.concept" (JSON: class
// word, token, base model, config, steps, final losses, seconds).
void save_concept(const std::string& path, const Concept& concept);
Concept load_concept(const std::string& path);

// The token vector as an A1111 / ComfyUI textual-inversion embedding: {"emb_params": [1, C]}.
void export_embedding(const std::string& path, const Concept& concept);
// Reads such a file (also a file with one [1, C] or [C] tensor under any key); `width` is the
// text encoder's width the vector must have.
torch::Tensor import_embedding(const std::string& path, int64_t width);

// Attaches every concept's LoRA to `model` at its scale (one network per concept, named
// "concept<i>"); the UNet and text-encoder updates add up: W + Σ_i s_i·ΔW_i.
std::vector<LoRANetwork> attach_concepts(StableDiffusion& model, const std::vector<Concept>& concepts,
                                         const std::vector<double>& scales);

}  // namespace sine
