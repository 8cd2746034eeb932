#include <iostream>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "io/generation_parameters.h"
#include "io/image.h"
#include "models/presets.h"
#include "models/weights.h"

namespace sine {

namespace {

struct InfoFlags {
  ModelFlags model;
  std::string image;
  bool json = false;
};

struct InitRandomFlags {
  std::string config = "sd15";
  std::string output;
  std::string layout = "ldm";
  std::string dtype = "fp32";
  uint64_t seed = 0;
};

// What a PNG was made with: its A1111 "parameters" text, parsed.
void run_image_info(const InfoFlags& f) {
  const auto text = read_png_text(f.image);
  auto it = text.find("parameters");
  if (it == text.end()) throw Error(f.image + ": no \"parameters\" text chunk (not written by sine, A1111 or a compatible tool)");
  const auto p = GenerationParameters::parse(it->second);
  if (f.json) {
    nlohmann::json j = nlohmann::json::object();
    j["prompt"] = p.prompt;
    j["negative_prompt"] = p.negative_prompt;
    for (const auto& [k, v] : p.fields) j[k] = v;
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::cout << "prompt:           " << p.prompt << "\n";
  if (!p.negative_prompt.empty()) std::cout << "negative prompt:  " << p.negative_prompt << "\n";
  for (const auto& [k, v] : p.fields) {
    std::string label = k + ":";
    label.resize(std::max<size_t>(label.size() + 1, 18), ' ');
    std::cout << label << v << "\n";
  }
}

void run_info(const InfoFlags& f) {
  if (!f.image.empty()) return run_image_info(f);
  const std::string path = f.model.model.empty() ? default_model_path() : f.model.model;
  if (path.empty()) throw Error("info: -m/--model is required (no bundled default model found)");
  LoadOptions lo = load_options(f.model);
  lo.model = path;
  CheckpointData ckpt;
  StableDiffusion sd = load_model(lo, &ckpt);
  const auto state = module_state(*sd, "");
  nlohmann::json j;
  j["source"] = path;
  j["layout"] = ckpt.layout;
  j["config"] = ConfigOverrides::of(ckpt.config).values;
  j["parameters"] = {{"unet", count_parameters(*sd->unet)},
                     {"vae", count_parameters(*sd->vae)},
                     {"text_encoder", count_parameters(*sd->text_encoder)},
                     {"total", count_parameters(*sd)}};
  j["tensors"] = state.size();
  j["dropped_keys"] = ckpt.dropped.size();
  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : ckpt.metadata)
    if (k.rfind("sine.tokenizer.", 0) != 0) meta[k] = v.size() > 200 ? v.substr(0, 200) + "..." : v;
  j["metadata"] = meta;
  if (f.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::cout << "model:        " << path << "\n"
            << "layout:       " << ckpt.layout << "\n"
            << "tensors:      " << state.size() << " (+" << ckpt.dropped.size() << " non-weight keys ignored)\n"
            << "parameters:   UNet " << j["parameters"]["unet"] << ", VAE " << j["parameters"]["vae"]
            << ", text encoder " << j["parameters"]["text_encoder"] << "\n"
            << "config:       " << j["config"].dump() << "\n";
  for (const auto& [k, v] : meta) std::cout << "metadata:     " << k << " = " << v << "\n";
}

void run_init_random(const InitRandomFlags& f) {
  if (f.output.empty()) throw Error("init-random: -o/--output is required");
  ModelConfig config = model_config_preset(f.config);
  torch::manual_seed(f.seed);
  StableDiffusion sd(config);
  const auto dtype = parse_dtype(f.dtype);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& [k, t] : module_state(*sd, "")) tensors[k] = t.to(dtype);
  std::map<std::string, std::string> meta{{"sine.method", "init-random"},
                                          {"sine.preset", f.config},
                                          {"sine.seed", std::to_string(f.seed)}};
  if (f.layout == "ldm")
    save_checkpoint(f.output, tensors, config, meta);
  else if (f.layout == "diffusers")
    save_diffusers(f.output, tensors, config, meta);
  else
    throw Error("--layout: expected ldm or diffusers (got '" + f.layout + "')");
  std::cout << f.output << "\n";
}

}  // namespace

void register_info(CLI::App& app) {
  auto f = std::make_shared<InfoFlags>();
  auto* cmd = app.add_subcommand(
      "info", "show a model's layout, inferred config and parameter counts; with IMAGE.png, what the image was made with");
  add_model_flags(cmd, f->model);
  cmd->add_option("image", f->image, "a PNG written by sine generate/edit (or AUTOMATIC1111): print its parameters");
  cmd->add_flag("--json", f->json, "print JSON");
  on_run(cmd, [f] { run_info(*f); });
}

void register_init_random(CLI::App& app) {
  auto f = std::make_shared<InitRandomFlags>();
  auto* cmd = app.add_subcommand("init-random", "write a model with random weights (for tests and benchmarks)");
  cmd->add_option("--config", f->config, std::string("architecture: ") + model_config_preset_names())->capture_default_str();
  cmd->add_option("-o,--output", f->output, "output .safetensors file (ldm) or folder (diffusers)");
  cmd->add_option("--layout", f->layout, "ldm (single file, canonical) or diffusers (folder)")->capture_default_str();
  cmd->add_option("--dtype", f->dtype, "fp32, fp16 or bf16")->capture_default_str();
  cmd->add_option("-s,--seed", f->seed, "random seed")->capture_default_str();
  on_run(cmd, [f] { run_init_random(*f); });
}

}  // namespace sine
