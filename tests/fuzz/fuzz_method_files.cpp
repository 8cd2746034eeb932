// libFuzzer: the files the papers' methods read back, through the same calls the CLI and the
// server make, on the bundled model:
//   - an inversion file (`sine invert`): format, schedule, latents and null-text embeddings;
//   - a SingleInsert concept (`sine insert train`): the sine.concept JSON, the token vector, its
//     LoRA keys, then the concept used: its prompt encoded and its LoRA attached to a copy of the model;
//   - a SINE fine-tune (`sine finetune`): its sine.* metadata (grid JSON, mode, storage, numbers),
//     then applied to a copy of the model (fp16 deltas or LoRA, every key and shape checked);
//   - an A1111 / ComfyUI embedding (`--embedding`);
//   - a LoRA in kohya's, diffusers' or sine's keys (`<lora:NAME:w>`, `insert import --lora`),
//     mapped onto the model's modules and attached to a copy.
// Every input goes through all five readers (each refuses what is not its kind). Only sine::Error
// may come out.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "core/error.h"
#include "methods/inversion/inversion_file.h"
#include "methods/sine/sine_model.h"
#include "methods/singleinsert/concept_file.h"
#include "methods/singleinsert/single_insert.h"
#include "models/lora.h"
#include "pipeline/pipeline.h"

namespace {

sine::Pipeline& base() {
  static std::unique_ptr<sine::Pipeline> pipeline = [] {
    torch::set_num_threads(1);
    return std::make_unique<sine::Pipeline>(sine::Pipeline::load(sine::LoadOptions{}));  // the bundled model
  }();
  return *pipeline;
}

template <class F>
void refused_or_read(F f) {
  try {
    f();
  } catch (const sine::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  base();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/sine-fuzz-method-" + std::to_string(::getpid()) + ".safetensors";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  sine::Pipeline& pipeline = base();
  torch::NoGradGuard no_grad;
  refused_or_read([&] {
    auto inversion = sine::load_inversion(path);
    (void)inversion.ddim();
  });
  refused_or_read([&] {
    auto concept = sine::load_concept(path);
    sine::Pipeline copy = pipeline.copy_denoiser();
    auto nets = sine::attach_concepts(copy.model(), {concept}, {1.0});
    (void)sine::encode_concept_prompt(copy, concept.token + " " + concept.class_word, {concept});
  });
  refused_or_read([&] {
    auto info = sine::read_sine_model_info(path);
    sine::Pipeline copy = pipeline.copy_denoiser();
    sine::apply_sine_model(copy, path, /*check_base=*/false);
  });
  refused_or_read([&] { (void)sine::import_embedding(path, pipeline.config().text.width); });
  refused_or_read([&] {
    auto lora = sine::load_lora(path, pipeline.model());  // maps keys only; attached to a copy
    sine::Pipeline copy = pipeline.copy_denoiser();
    auto net = sine::LoRANetwork::attach(copy.model(), lora, "fuzz", 0.8);
  });
  return 0;
}
