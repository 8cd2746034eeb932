// `sine insert train|generate|export|import`: SingleInsert (a concept from one image).
#include <chrono>
#include <filesystem>
#include <sstream>
#include <iostream>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/insert_bench.h"
#include "io/image.h"
#include "methods/singleinsert/concept_file.h"
#include "methods/method_parameters.h"
#include "methods/singleinsert/single_insert.h"

namespace sine {

namespace {

void require_file(const std::string& flag, const std::string& path) {
  if (path.empty()) throw Error(flag + " is required");
  if (!std::filesystem::is_regular_file(path)) throw Error(flag + ": no such file '" + path + "'");
}

// ------------------------------------------------------------------------------------ train

struct TrainFlags {
  ModelFlags model;
  SingleInsertConfig config;
  std::string image, mask, output = "concept.safetensors", fit = "crop", objective = "fg+bg";
  bool no_sm = false;
  double mask_threshold = 0.5;
};

void run_train(TrainFlags& f) {
  require_file("-i/--image", f.image);
  if (f.config.class_word.empty()) throw Error("--class is required (the concept's class word, e.g. cube)");
  if (!f.mask.empty()) require_file("--mask", f.mask);
  if (!f.config.encoder_weights.empty()) require_file("--encoder-weights", f.config.encoder_weights);
  f.config.objective = parse_insert_objective(f.objective);
  f.config.use_semantic_loss = !f.no_sm;
  const FitPolicy fit = parse_fit_policy(f.fit);
  Pipeline pipe = load_pipeline(f.model);
  const int64_t size = pipe.native_size();
  torch::Tensor image = fit_image(read_image_rgb(f.image), size, size, fit);
  torch::Tensor mask;
  if (!f.mask.empty()) {
    mask = read_mask(f.mask, size, size);
  } else {
    mask = attention_mask(pipe, image, f.config.class_word, f.config.seed, f.mask_threshold);
    std::string mask_png = f.output;
    const auto dot = mask_png.rfind('.');
    mask_png = mask_png.substr(0, dot) + ".mask.png";
    torch::Tensor m = (mask[0][0] * 255).round().to(torch::kUInt8).unsqueeze(2).expand({-1, -1, 3}).contiguous();
    write_png(mask_png, m, {{"parameters", "cross-attention mask of '" + f.config.class_word + "'"}});
    std::cerr << "no --mask: using the cross-attention mask of '" << f.config.class_word << "' (" << mask_png
              << ", " << static_cast<int>(100 * mask.mean().item<double>()) << "% of the image)\n";
  }
  SingleInsertTrainer trainer(pipe, image, mask, f.config);
  Concept concept = trainer.train();
  save_concept(f.output, concept);
  const auto& info = concept.info;
  std::cerr << "stage I " << info["stage1_seconds"].get<double>() << " s, stage II "
            << info["stage2_seconds"].get<double>() << " s; final losses I " << info["stage1_final_losses"].dump()
            << " II " << info["stage2_final_losses"].dump() << "\n";
  std::cout << f.output << "\n";
}

// --------------------------------------------------------------------------------- generate

struct GenerateFlags {
  ModelFlags model;
  GenerateOptions gen;
  std::vector<std::string> concepts;
  std::vector<double> scales;
  std::string output = "insert.png";
  int64_t batch_count = 1;
};

void run_generate(GenerateFlags& f) {
  if (f.concepts.empty()) throw Error("-c/--concept is required (a concept file from `sine insert train`)");
  if (f.gen.prompt.empty()) throw Error("-p/--prompt is required (e.g. \"* cube on the beach\")");
  if (f.batch_count < 1) throw Error("-b/--batch-count must be at least 1");
  if (!f.scales.empty() && f.scales.size() != f.concepts.size())
    throw Error("--scale: give one scale per --concept (" + std::to_string(f.concepts.size()) + ")");
  std::vector<Concept> concepts;
  for (const std::string& path : f.concepts) {
    require_file("-c/--concept", path);
    concepts.push_back(load_concept(path));
  }
  if (concepts.size() > 1)  // each concept its own token: *1, *2, ...
    for (size_t i = 0; i < concepts.size(); ++i) {
      concepts[i].token = "*" + std::to_string(i + 1);
      std::cerr << concepts[i].token << " = " << f.concepts[i] << " (" << concepts[i].class_word << ")\n";
    }
  for (const Concept& c : concepts)
    if (f.gen.prompt.find(c.token) == std::string::npos)
      std::cerr << "warning: the prompt does not mention " << c.token << " (" << c.class_word << ")\n";
  Pipeline pipe = load_pipeline(f.model);
  if (concepts[0].vector.size(0) != pipe.config().text.width)
    throw Error("-c/--concept: token width " + std::to_string(concepts[0].vector.size(0)) +
                " does not match the model's text width " + std::to_string(pipe.config().text.width));
  auto nets = attach_concepts(pipe.model(), concepts, f.scales);
  std::vector<std::string> names;  // the concepts by file name, never by local path
  for (const auto& path : f.concepts) names.push_back(std::filesystem::path(path).filename().string());
  for (int64_t b = 0; b < f.batch_count; ++b) {
    GenerateOptions o = f.gen;
    o.seed = f.gen.seed + static_cast<uint64_t>(b);
    SamplingProgress progress("insert generate");
    torch::Tensor image = generate_with_concepts(pipe, concepts, o, progress.callback());
    progress.finish();
    const std::string out = batch_output_path(f.output, b, f.batch_count);
    write_png(out, image, insert_parameters(pipe, o, concepts, names, f.scales, image.size(0), image.size(1)).png_text());
    std::cout << out << "\n";
  }
  for (auto& n : nets) n.remove();
}

// ----------------------------------------------------------------------------- export/import

struct ExportFlags {
  ModelFlags model;
  std::string concept, embedding, lora, format = "kohya";
};

void run_export(ExportFlags& f) {
  require_file("-c/--concept", f.concept);
  if (f.embedding.empty() && f.lora.empty()) throw Error("give --embedding and/or --lora output files");
  const LoRAKeyFormat format = parse_lora_key_format(f.format);
  Concept c = load_concept(f.concept);
  if (!f.embedding.empty()) {
    export_embedding(f.embedding, c);
    std::cout << f.embedding << "\n";
  }
  if (!f.lora.empty()) {
    if (c.lora.modules.empty()) throw Error(f.concept + ": the concept has no LoRA (stage I only)");
    Pipeline pipe = load_pipeline(f.model);  // the key layout depends on the model's block geometry
    save_lora(f.lora, c.lora, format, LayoutGeometry::of(pipe.config()),
              {{"ss_network_dim", std::to_string(c.lora.rank())}, {"sine.class_word", c.class_word}});
    std::cout << f.lora << "\n";
  }
}

struct ImportFlags {
  ModelFlags model;
  std::string embedding, lora, class_word, token = "*", output = "concept.safetensors";
};

void run_import(ImportFlags& f) {
  require_file("--embedding", f.embedding);
  if (!f.lora.empty()) require_file("--lora", f.lora);
  if (f.class_word.empty()) throw Error("--class is required (the class word the token goes with)");
  Pipeline pipe = load_pipeline(f.model);
  Concept c;
  c.class_word = f.class_word;
  c.token = f.token;
  c.vector = import_embedding(f.embedding, pipe.config().text.width);
  if (!f.lora.empty()) c.lora = load_lora(f.lora, pipe.model());
  c.info = {{"imported_embedding", f.embedding}, {"imported_lora", f.lora}, {"base_model", pipe.source()}};
  save_concept(f.output, c);
  std::cout << f.output << "\n";
}

struct BenchFlags {
  ModelFlags model;
  InsertBenchConfig config;
  std::string variants;  // empty: every row (insert_bench_variants())
};

void run_bench(BenchFlags& f) {
  if (!f.variants.empty()) {
    f.config.variants.clear();
    std::stringstream list(f.variants);
    for (std::string v; std::getline(list, v, ',');)
      if (!v.empty()) f.config.variants.push_back(v);
    if (f.config.variants.empty()) throw Error("--variants: give at least one of " + insert_bench_variant_list());
  }
  Pipeline pipe = load_pipeline(f.model);
  const auto start = std::chrono::steady_clock::now();
  nlohmann::json result = run_insert_bench(pipe, f.config);
  std::cout << format_insert_bench(result);
  std::cout << "total " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << " s";
  if (!f.config.output_dir.empty()) std::cout << "; " << f.config.output_dir << "/bench.json";
  std::cout << "\n";
}

}  // namespace

void register_insert(CLI::App& app) {
  {
    auto f = std::make_shared<BenchFlags>();
    auto& c = f->config;
    auto* cmd = world_command(app)->add_subcommand(
        "bench-insert",
        "SingleInsert's Table 2 in the shapes world: concepts learned from one rendered image (exact mask) under "
        "recon / fg / fg+bg / stage2, then judged in editing prompts: ESR, fg fidelity, bg leakage, diversity, time");
    add_model_flags(cmd, f->model);
    cmd->add_option("--concepts", c.concepts, "number of concepts (2..10)")->capture_default_str();
    cmd->add_option("--seeds", c.seeds, "samples per prompt")->capture_default_str();
    cmd->add_option("--steps", c.sample_steps, "DDIM steps per sample")->capture_default_str();
    cmd->add_option("--cfg-scale", c.cfg_scale, "guidance scale")->capture_default_str();
    cmd->add_option("--stage1-steps", c.stage1_steps, "stage I steps per concept")->capture_default_str();
    cmd->add_option("--stage2-steps", c.stage2_steps, "stage II steps per concept")->capture_default_str();
    cmd->add_option("--batch", c.batch, "training batch")->capture_default_str();
    cmd->add_option("--stage1-lr", c.stage1_lr, "stage I learning rate")->capture_default_str();
    cmd->add_option("--stage2-lr", c.stage2_lr, "stage II learning rate")->capture_default_str();
    cmd->add_option("--rank", c.lora_rank, "stage II LoRA rank")->check(CLI::Range(1, 256))->capture_default_str();
    cmd->add_option("--variants", f->variants,
                    "comma-separated rows (default: all): " + insert_bench_variant_list() +
                        "; oracle = the concept spelled out in words, the ceiling");
    cmd->add_option("--seed", c.seed, "seed")->capture_default_str();
    cmd->add_option("--training-prompt", c.training_prompt,
                    "caption (the source's caption with * for the concept), object (the same without its background) or short "
                    "(the official \"* <class>\")")
        ->capture_default_str();
    cmd->add_flag("--textured-backgrounds", c.textured_backgrounds,
                  "sources on checkered, striped, dotted and noisy backgrounds");
    add_canvas_size_option(cmd, c.size, "the sources and samples");
    cmd->add_option("-o,--output", c.output_dir, "folder for grids, sources and bench.json");
    on_run(cmd, [f] { run_bench(*f); });
  }

  auto* insert = app.add_subcommand("insert", "SingleInsert: learn a concept from one image and insert it anywhere");
  insert->require_subcommand(1);

  {
    auto f = std::make_shared<TrainFlags>();
    auto* cmd = insert->add_subcommand(
        "train", "stage I (image encoder) + stage II (LoRA) on one image and its mask -> a concept file");
    add_model_flags(cmd, f->model);
    auto& c = f->config;
    cmd->add_option("-i,--image", f->image, std::string("the source image. ") + kImageFitPolicyHelp);
    cmd->add_option("--fit", f->fit, "how the image meets the model size: crop, resize, pad")->capture_default_str();
    cmd->add_option("--mask", f->mask,
                    "mask of the concept (white = concept; alpha used if present). Default: from the model's "
                    "cross-attention of the class word (saved beside the output as .mask.png)");
    cmd->add_option("--mask-threshold", f->mask_threshold, "threshold of the automatic mask (0..1)")
        ->capture_default_str();
    cmd->add_option("--class", c.class_word, "the class word (prompt \"* <class>\"), e.g. cube");
    cmd->add_option("--token", c.placeholder, "the placeholder token")->capture_default_str();
    cmd->add_option("--prompt-template", c.prompt_template,
                    "training prompt: {class} and the token (class prompt: the same without the token), e.g. "
                    "\"a * {class} on a blue background\"")
        ->capture_default_str();
    cmd->add_option("-o,--output", f->output, "concept file (.safetensors)")->capture_default_str();
    cmd->add_option("--objective", f->objective,
                    "stage I loss: fg+bg (SingleInsert), fg (L_fg only), recon (baseline: unmasked x0 loss)")
        ->capture_default_str();
    cmd->add_option("--stage1-steps", c.stage1_steps, "stage I steps")->capture_default_str();
    cmd->add_option("--stage2-steps", c.stage2_steps, "stage II steps (0 = stage I only)")->capture_default_str();
    cmd->add_option("--stage1-lr", c.stage1_lr, "stage I learning rate")->capture_default_str();
    cmd->add_option("--stage2-lr", c.stage2_lr, "stage II learning rate")->capture_default_str();
    cmd->add_option("--batch", c.batch, "copies of the image per step")->capture_default_str();
    cmd->add_option("--gamma", c.gamma, "weight of L_bg")->capture_default_str();
    cmd->add_option("--eta-sm", c.eta, "weight of L_sm (stage II)")->capture_default_str();
    cmd->add_flag("--no-sm", f->no_sm, "stage II without L_sm");
    cmd->add_flag("--frozen-text-target", c.frozen_text_target,
                  "the frozen target uses the frozen text encoder (paper); default: the LoRA text encoder (code)");
    cmd->add_option("--rank", c.lora_rank, "LoRA rank")->capture_default_str();
    cmd->add_option("--encoder", c.encoder, "image encoder: vit-b32, tiny (default: by the text width)");
    cmd->add_option("--encoder-weights", c.encoder_weights,
                    "OpenAI CLIP vision weights (.safetensors, visual.* keys) to start the encoder from");
    cmd->add_option("--weight-decay", c.weight_decay, "AdamW weight decay")->capture_default_str();
    cmd->add_option("--grad-clip", c.grad_clip, "gradient-norm clipping (0 = off)")->capture_default_str();
    cmd->add_option("-s,--seed", c.seed, "seed of the encoder init, LoRA init and training noise")->capture_default_str();
    cmd->add_option("--checkpoint-dir", c.checkpoint_dir, "resumable checkpoints (stage1.ckpt, stage2.ckpt) here");
    cmd->add_option("--checkpoint-every", c.checkpoint_every, "checkpoint every N steps (0 = at stage ends)")
        ->capture_default_str();
    on_run(cmd, [f] { run_train(*f); });
  }
  {
    auto f = std::make_shared<GenerateFlags>();
    f->gen.steps = 50;
    f->gen.cfg_scale = 7.5;
    auto* cmd = insert->add_subcommand(
        "generate",
        "txt2img with learned concepts. One concept: write its token, e.g. -p \"* cube on the beach\". "
        "Several: -c a.safetensors -c b.safetensors and tokens *1, *2 (\"*1 cube next to a *2 ball\"); their "
        "LoRA updates add up, each times its --scale. Novel views: \"* cube, left side\", \"* cube, back "
        "side\", \"* cube, top view\".");
    add_model_flags(cmd, f->model);
    cmd->add_option("-c,--concept", f->concepts, "concept file(s) from `sine insert train` or `import`");
    cmd->add_option("--scale", f->scales, "LoRA scale per concept (default 1)");
    cmd->add_option("-p,--prompt", f->gen.prompt, "the prompt, with the concept token(s)");
    cmd->add_option("-n,--negative-prompt", f->gen.negative_prompt, "the negative prompt");
    cmd->add_option("-W,--width", f->gen.width, "width (default: the model's native size)");
    cmd->add_option("-H,--height", f->gen.height, "height (default: the model's native size)");
    cmd->add_option("--steps", f->gen.steps, "DDIM steps")->capture_default_str();
    cmd->add_option("--cfg-scale", f->gen.cfg_scale, "classifier-free guidance scale")->capture_default_str();
    cmd->add_option("-s,--seed", f->gen.seed, "seed")->capture_default_str();
    cmd->add_option("-b,--batch-count", f->batch_count, "images (seeds seed, seed+1, ...)")->capture_default_str();
    cmd->add_option("-o,--output", f->output, "output PNG")->capture_default_str();
    on_run(cmd, [f] { run_generate(*f); });
  }
  {
    auto f = std::make_shared<ExportFlags>();
    auto* cmd = insert->add_subcommand(
        "export", "a concept's token as an A1111/ComfyUI embedding and its LoRA as kohya or diffusers keys");
    add_model_flags(cmd, f->model);
    cmd->add_option("-c,--concept", f->concept, "concept file");
    cmd->add_option("--embedding", f->embedding, "output embedding (.safetensors, emb_params [1, width])");
    cmd->add_option("--lora", f->lora, "output LoRA (.safetensors)");
    cmd->add_option("--lora-format", f->format, "kohya, diffusers or native")->capture_default_str();
    on_run(cmd, [f] { run_export(*f); });
  }
  {
    auto f = std::make_shared<ImportFlags>();
    auto* cmd = insert->add_subcommand(
        "import", "a concept file from an embedding (A1111/ComfyUI) and optionally a LoRA (kohya, diffusers, native)");
    add_model_flags(cmd, f->model);
    cmd->add_option("--embedding", f->embedding, "embedding file (.safetensors with emb_params)");
    cmd->add_option("--lora", f->lora, "LoRA file (.safetensors; key layout detected)");
    cmd->add_option("--class", f->class_word, "the class word");
    cmd->add_option("--token", f->token, "the token word")->capture_default_str();
    cmd->add_option("-o,--output", f->output, "concept file")->capture_default_str();
    on_run(cmd, [f] { run_import(*f); });
  }
}

}  // namespace sine
