#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "core/error.h"
#include "diffusion/ddim.h"
#include "diffusion/sampler.h"
#include "io/safetensors.h"

namespace sine {

namespace {

struct TokenizeFlags {
  ModelFlags model;
  std::string prompt;
  std::string file;
  bool bpe = false;
};

void run_tokenize(const TokenizeFlags& f) {
  if (f.prompt.empty() == f.file.empty()) throw Error("tokenize: give exactly one of -p/--prompt or --file");
  std::string model = f.model.model.empty() ? default_model_path() : f.model.model;
  std::map<std::string, std::string> metadata;
  if (f.model.tokenizer.empty() && !model.empty() && !std::filesystem::is_directory(model) && std::filesystem::exists(model))
    metadata = SafeTensors::open(model).metadata();
  auto tok = find_tokenizer(model, f.model.tokenizer, metadata);
  auto ids = [&](const std::string& text) {
    return nlohmann::json(f.bpe ? tok->bpe_ids(text) : tok->encode(text)).dump();
  };
  if (!f.prompt.empty()) {
    std::cout << ids(f.prompt) << "\n";
    return;
  }
  std::ifstream in(f.file);
  if (!in) throw Error("--file " + f.file + ": cannot open");
  std::string line;
  while (std::getline(in, line)) std::cout << ids(line) << "\n";
}

struct RunFlags {
  ModelFlags model;
  std::string component;
  std::string input;
  std::string output;
  std::vector<std::string> renames;
  int64_t steps = 50;
  double eta = 0.0;
  std::string sampler = "euler";
  std::string scheduler = "default";
  double cfg_scale = 7.5;
};

// Inputs are read by name; --in NAME=KEY reads input NAME from file key KEY (e.g. latent=latent_b2).
torch::Tensor input(const SafeTensors& st, const std::map<std::string, std::string>& names, const std::string& name) {
  auto it = names.find(name);
  const std::string key = it == names.end() ? name : it->second;
  if (!st.contains(key)) throw Error(st.path() + ": input tensor '" + key + "' not found (use --in " + name + "=KEY)");
  return st.get(key);
}

void run_component(const RunFlags& f) {
  std::map<std::string, std::string> names;
  for (const auto& r : f.renames) {
    auto eq = r.find('=');
    if (eq == std::string::npos) throw Error("--in " + r + ": expected NAME=KEY");
    names[r.substr(0, eq)] = r.substr(eq + 1);
  }
  auto st = SafeTensors::open(f.input);
  std::map<std::string, torch::Tensor> out;
  torch::NoGradGuard no_grad;
  if (f.component == "ddim-step") {
    DDIMScheduler scheduler(DDIMConfig::stable_diffusion(), f.steps);
    const int64_t t = input(st, names, "timestep").item<int64_t>();
    auto r = scheduler.step(input(st, names, "model_output"), t, input(st, names, "sample"), f.eta);
    out = {{"prev_sample", r.prev_sample}, {"pred_original_sample", r.pred_original_sample}};
  } else {
    LoadOptions lo = load_options(f.model);
    StableDiffusion sd = load_model(lo);
    auto dev = [&](const torch::Tensor& t) { return t.to(lo.device, t.is_floating_point() ? lo.dtype : t.scalar_type()); };
    auto cpu = [](const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat32); };
    if (f.component == "text-encoder") {
      auto r = sd->text_encoder->encode(dev(input(st, names, "input_ids")).to(torch::kLong), 1, true);
      out["last_hidden_state"] = cpu(r.last_hidden_state);
      out["pooler_output"] = cpu(r.pooled);
      for (size_t i = 0; i < r.hidden_states.size(); ++i) out["hidden_states." + std::to_string(i)] = cpu(r.hidden_states[i]);
    } else if (f.component == "unet") {
      auto x = dev(input(st, names, "latent"));
      auto t = input(st, names, "timestep").to(lo.device, torch::kLong).reshape({-1}).expand({x.size(0)});
      out["eps"] = cpu(sd->unet->forward(x, t, dev(input(st, names, "context"))));
    } else if (f.component == "vae-encode") {
      auto p = sd->vae->encode(dev(input(st, names, "image")));
      out = {{"mean", cpu(p.mean)}, {"logvar", cpu(p.logvar)}, {"std", cpu(p.std)},
             {"moments", cpu(torch::cat({p.mean, p.logvar}, 1))}};
    } else if (f.component == "vae-decode") {
      out["decoded"] = cpu(sd->vae->decode(dev(input(st, names, "z"))));
    } else if (f.component == "sample") {
      // One whole sampling run from x_T (unit noise) with CFG over cond/uncond, as the trajectory
      // fixtures were made: trajectory[0] = x_T · init_noise_sigma, then one latent per evaluation.
      SamplerConfig sc;
      sc.method = f.sampler;
      sc.schedule = parse_sigma_schedule(f.scheduler);
      sc.steps = f.steps;
      sc.eta = f.eta;
      auto sampler = make_sampler(sc);
      Pipeline pipe(sd, nullptr, lo.device, lo.dtype, lo.model);
      std::vector<torch::Tensor> trajectory;
      SampleLoopOptions loop;
      loop.unet = sd->unet;
      loop.trajectory = &trajectory;
      if (sampler->needs_noise()) {
        if (!st.contains(names.count("noises") ? names["noises"] : "noises"))
          throw Error(f.input + ": sampler " + sc.method + " draws noise each step; give it as 'noises' [evals, ...]");
        loop.noises = input(st, names, "noises").to(lo.device, torch::kFloat32);
      }
      auto x = input(st, names, "x_T").to(lo.device, torch::kFloat32) * sampler->init_noise_sigma();
      auto eps = pipe.guided_eps(input(st, names, "uncond"), input(st, names, "cond"), f.cfg_scale);
      out["latents"] = cpu(sample(*sampler, x, eps, loop));
      out["trajectory"] = cpu(torch::stack(trajectory));
    } else {
      throw Error("run: unknown component '" + f.component +
                  "' (text-encoder, unet, vae-encode, vae-decode, ddim-step, sample)");
    }
  }
  save_safetensors(f.output, out, {{"component", f.component}, {"input", f.input}});
  std::cout << f.output << "\n";
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto tf = std::make_shared<TokenizeFlags>();
  auto* tok = app.add_subcommand("tokenize", "print the 77 token ids of a prompt as JSON (--file: one prompt per line)");
  add_model_flags(tok, tf->model);
  tok->add_option("-p,--prompt", tf->prompt, "the prompt");
  tok->add_option("--file", tf->file, "a text file with one prompt per line; prints JSON lines");
  tok->add_flag("--bpe", tf->bpe, "print the untruncated BPE ids without start/end tokens");
  on_run(tok, [tf] { run_tokenize(*tf); });

  auto rf = std::make_shared<RunFlags>();
  auto* run = app.add_subcommand(
      "run", "run one component on tensors read by name from a .safetensors file, write its outputs to another");
  add_model_flags(run, rf->model);
  run->add_option("component", rf->component,
                  "text-encoder (input_ids), unet (latent, timestep, context), vae-encode (image), vae-decode (z), "
                  "ddim-step (model_output, sample, timestep), sample (x_T, cond, uncond[, noises])")
      ->required();
  run->add_option("--input", rf->input, "input .safetensors")->required();
  run->add_option("-o,--output", rf->output, "output .safetensors")->required();
  run->add_option("--in", rf->renames, "NAME=KEY: read input NAME from key KEY of the input file");
  run->add_option("--steps", rf->steps, "ddim-step, sample: number of inference steps")->capture_default_str();
  run->add_option("--eta", rf->eta, "ddim-step, sample with ddim: eta")->capture_default_str();
  run->add_option("--sampler,--sampling-method", rf->sampler, "sample: ddim, euler, euler_a, heun, dpmpp_2m")
      ->capture_default_str();
  run->add_option("--scheduler", rf->scheduler, "sample: sigma schedule, default or karras")->capture_default_str();
  run->add_option("--cfg-scale", rf->cfg_scale, "sample: classifier-free guidance scale")->capture_default_str();
  on_run(run, [rf] { run_component(*rf); });
}

}  // namespace sine
