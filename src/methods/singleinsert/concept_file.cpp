#include "methods/singleinsert/concept_file.h"

#include "core/error.h"
#include "io/safetensors.h"

namespace sine {

void save_concept(const std::string& path, const Concept& concept) {
  if (!concept.vector.defined()) throw Error(path + ": the concept has no token vector");
  auto tensors = lora_to_keys(concept.lora, LoRAKeyFormat::Native, LayoutGeometry{});
  tensors["token_vector"] = concept.vector.detach().to(torch::kCPU, torch::kFloat32).reshape({1, -1}).contiguous();
  nlohmann::json meta = concept.info;
  meta["class_word"] = concept.class_word;
  meta["token"] = concept.token;
  meta["lora_rank"] = concept.lora.rank();
  meta["lora_modules"] = concept.lora.modules.size();
  save_safetensors(path, tensors, {{"sine.concept", meta.dump()}, {"sine.kind", "singleinsert-concept"}});
}

Concept load_concept(const std::string& path) {
  SafeTensors file = SafeTensors::open(path);
  auto it = file.metadata().find("sine.concept");
  if (it == file.metadata().end() || !file.contains("token_vector"))
    throw Error(path + ": not a SingleInsert concept file (no sine.concept metadata or token_vector)");
  Concept c;
  try {
    c.info = nlohmann::json::parse(it->second);
    c.class_word = c.info.at("class_word").get<std::string>();
    c.token = c.info.at("token").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": broken sine.concept metadata (" + std::string(e.what()) + ")");
  }
  c.vector = file.get("token_vector").to(torch::kFloat32).reshape({-1});
  std::map<std::string, torch::Tensor> lora;
  for (const std::string& key : file.keys())
    if (key != "token_vector") lora[key] = file.get(key);
  if (!lora.empty()) c.lora = lora_from_keys(lora, LayoutGeometry{}, {}, path);
  return c;
}

void export_embedding(const std::string& path, const Concept& concept) {
  save_safetensors(path, {{"emb_params", concept.vector.detach().to(torch::kCPU, torch::kFloat32).reshape({1, -1}).contiguous()}},
                   {{"name", concept.token}, {"sine.class_word", concept.class_word}});
}

torch::Tensor import_embedding(const std::string& path, int64_t width) {
  auto tensors = load_safetensors(path);
  torch::Tensor v;
  if (tensors.count("emb_params")) v = tensors.at("emb_params");
  else if (tensors.size() == 1) v = tensors.begin()->second;
  else throw Error(path + ": no 'emb_params' tensor (expected an A1111/ComfyUI embedding file)");
  v = v.to(torch::kFloat32);
  if (v.dim() == 2 && v.size(0) == 1) v = v.squeeze(0);
  if (v.dim() != 1)
    throw Error(path + ": embedding has shape " + c10::str(v.sizes()) + "; only one-vector embeddings are supported");
  if (v.size(0) != width)
    throw Error(path + ": embedding width " + std::to_string(v.size(0)) + " does not match the text encoder's " +
                std::to_string(width));
  return v;
}

std::vector<LoRANetwork> attach_concepts(StableDiffusion& model, const std::vector<Concept>& concepts,
                                         const std::vector<double>& scales) {
  std::vector<LoRANetwork> nets;
  for (size_t i = 0; i < concepts.size(); ++i) {
    if (concepts[i].lora.modules.empty()) continue;
    const double s = i < scales.size() ? scales[i] : 1.0;
    nets.push_back(LoRANetwork::attach(model, concepts[i].lora, "concept" + std::to_string(i + 1), s));
  }
  return nets;
}

}  // namespace sine
