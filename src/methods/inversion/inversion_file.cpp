#include "methods/inversion/inversion_file.h"

#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"

namespace sine {

namespace {
constexpr const char* kInversionFormat = "sine-inversion";
}  // namespace

DDIMConfig ddim_schedule(const std::string& name) {
  if (name == "null-text" || name == "p2p") return DDIMConfig::null_text_inversion();
  if (name == "specref") return DDIMConfig::specref();
  if (name == "sd") return DDIMConfig::stable_diffusion();
  throw Error("schedule: unknown schedule '" + name + "' (known: null-text, specref, sd)");
}

void save_inversion(const std::string& path, const Inversion& inversion) {
  if (inversion.latents.size() < 2) throw Error(path + ": an inversion needs at least one step");
  const DDIMConfig ddim = inversion.ddim();
  std::map<std::string, std::string> meta = inversion.info;
  meta["format"] = kInversionFormat;
  meta["prompt"] = inversion.prompt;
  meta["steps"] = std::to_string(inversion.steps());
  meta["schedule"] = inversion.schedule;
  meta["steps_offset"] = std::to_string(ddim.steps_offset);
  meta["set_alpha_to_one"] = ddim.set_alpha_to_one ? "true" : "false";
  meta["inversion_guidance"] = "1";
  std::map<std::string, torch::Tensor> tensors{{"latents", torch::cat(inversion.latents).cpu()}};
  if (!inversion.null_embeddings.empty()) tensors["null_embeddings"] = torch::cat(inversion.null_embeddings).cpu();
  save_safetensors(path, tensors, meta);
}

Inversion load_inversion(const std::string& path, const torch::Device& device) {
  if (!std::filesystem::exists(path)) throw Error(path + ": no such file");
  auto st = SafeTensors::open(path);
  const auto& meta = st.metadata();
  auto format = meta.find("format");
  if (format != meta.end() && format->second != kInversionFormat)
    throw Error(path + ": not an inversion file (format '" + format->second + "', expected '" + kInversionFormat + "')");
  if (!st.contains("latents")) throw Error(path + ": no 'latents' tensor (not written by `sine invert`?)");
  const auto& shape = st.info("latents").shape;
  if (shape.size() != 4 || shape[0] < 2 || shape[1] != 4)
    throw Error(path + ": 'latents' must be [steps+1, 4, h, w] with at least one step");
  Inversion inv;
  for (const auto& [key, value] : meta)
    if (key != "format" && key != "prompt" && key != "steps" && key != "schedule") inv.info[key] = value;
  if (meta.count("prompt")) inv.prompt = meta.at("prompt");
  if (meta.count("schedule")) {
    inv.schedule = meta.at("schedule");
    try {
      ddim_schedule(inv.schedule);
    } catch (const Error& e) {
      throw Error(path + ": " + e.what());
    }
  }
  auto all = st.get("latents").to(torch::kFloat32);
  for (int64_t i = 0; i < all.size(0); ++i) inv.latents.push_back(all.narrow(0, i, 1).to(device));
  if (st.contains("null_embeddings")) {
    const auto& es = st.info("null_embeddings").shape;
    if (es.size() != 3 || es[0] != inv.steps())
      throw Error(path + ": 'null_embeddings' must be [" + std::to_string(inv.steps()) + ", 77, C] (one per step)");
    auto e = st.get("null_embeddings").to(torch::kFloat32);
    for (int64_t i = 0; i < e.size(0); ++i) inv.null_embeddings.push_back(e.narrow(0, i, 1));
  }
  return inv;
}

}  // namespace sine
