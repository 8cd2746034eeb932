#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using namespace sine;

namespace {

const std::string kRef = std::string(SINE_SHARED_DIR) + "/reference";
const std::string kTinyFile = kRef + "/tiny/tiny_sd15_original.safetensors";
const std::string kTinyConfig = kRef + "/tiny/tiny_config.json";
const std::string kTinyDiffusers = kRef + "/tiny/diffusers";

// A key list of the reference: name -> shape, in file order.
std::vector<std::pair<std::string, std::vector<int64_t>>> read_key_list(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string name, shape;
    std::getline(in, name, '\t');
    std::getline(in, shape, '\t');
    out.emplace_back(name, nlohmann::json::parse(shape).get<std::vector<int64_t>>());
  }
  return out;
}

ShapeMap without_position_ids(const std::vector<std::pair<std::string, std::vector<int64_t>>>& list) {
  ShapeMap out;
  for (const auto& [k, s] : list)
    if (k.find("position_ids") == std::string::npos) out[k] = s;
  return out;
}

ShapeMap shapes_of(const std::map<std::string, torch::Tensor>& tensors) {
  ShapeMap out;
  for (const auto& [k, t] : tensors) out[k] = t.sizes().vec();
  return out;
}

std::vector<std::string> names(const ShapeMap& shapes) {
  std::vector<std::string> out;
  for (const auto& [k, s] : shapes) out.push_back(k);
  return out;
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.unet.model_channels = 8;
  c.unet.num_heads = 2;
  c.unet.context_dim = 32;
  c.unet.norm_groups = 4;
  c.unet.sample_size = 16;
  c.vae.ch = 8;
  c.vae.norm_groups = 4;
  c.text.width = 32;
  c.text.layers = 2;
  c.text.heads = 4;
  c.text.mlp_width = 128;
  return c;
}

nlohmann::json as_json(const ModelConfig& c) { return ConfigOverrides::of(c).values; }

void expect_same_tensors(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  ASSERT_EQ(shapes_of(a), shapes_of(b));
  for (const auto& [k, t] : a) EXPECT_TRUE(torch::equal(t, b.at(k))) << k;
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a sine::Error";
  return "";
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("sine_ckpt_test_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}


// Removes this process's scratch folder after the last test.
class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override { fs::remove_all(fs::temp_directory_path() / ("sine_ckpt_test_" + std::to_string(::getpid()))); }
};
const auto* const kScratchCleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);

}  // namespace

TEST(DiffusersKeys, SD15ListsMapBothWays) {
  const auto diffusers = read_key_list(kRef + "/sd15_keys_diffusers.txt");
  const auto original = read_key_list(kRef + "/sd15_keys_original.txt");
  ASSERT_EQ(diffusers.size(), 1131u);
  ShapeMap want_original(original.begin(), original.end()), want_diffusers(diffusers.begin(), diffusers.end());

  ShapeMap mapped;
  for (const auto& [k, s] : diffusers) {
    const std::string o = diffusers_to_original(k);
    EXPECT_EQ(mapped.count(o), 0u) << "two keys map to " << o;
    mapped[o] = to_original_shape(o, s);
  }
  EXPECT_EQ(mapped, want_original);

  ShapeMap back;
  for (const auto& [k, s] : original) back[original_to_diffusers(k)] = to_diffusers_shape(k, s);
  EXPECT_EQ(back, want_diffusers);

  for (const auto& g : {LayoutGeometry::from_diffusers_keys(names(want_diffusers)),
                        LayoutGeometry::from_original_keys(names(want_original))}) {
    EXPECT_EQ(g.unet_levels, 4);
    EXPECT_EQ(g.unet_num_res_blocks, 2);
    EXPECT_EQ(g.unet_attention_levels, (std::vector<int64_t>{0, 1, 2}));
    EXPECT_EQ(g.vae_levels, 4);
  }
}

TEST(DiffusersKeys, DocumentedExamples) {
  EXPECT_EQ(diffusers_to_original("unet.up_blocks.0.upsamplers.0.conv.weight"),
            "model.diffusion_model.output_blocks.2.1.conv.weight");
  EXPECT_EQ(diffusers_to_original("unet.up_blocks.1.upsamplers.0.conv.bias"),
            "model.diffusion_model.output_blocks.5.2.conv.bias");
  EXPECT_EQ(diffusers_to_original("unet.down_blocks.1.downsamplers.0.conv.weight"),
            "model.diffusion_model.input_blocks.6.0.op.weight");
  EXPECT_EQ(diffusers_to_original("vae.decoder.up_blocks.0.resnets.2.conv_shortcut.weight"),
            "first_stage_model.decoder.up.3.block.2.nin_shortcut.weight");
  EXPECT_EQ(diffusers_to_original("vae.encoder.mid_block.attentions.0.to_out.0.weight"),
            "first_stage_model.encoder.mid.attn_1.proj_out.weight");
  // diffusers < 0.14 VAE attention names are read too.
  EXPECT_EQ(diffusers_to_original("vae.decoder.mid_block.attentions.0.query.bias"),
            "first_stage_model.decoder.mid.attn_1.q.bias");
  EXPECT_EQ(diffusers_to_original("text_encoder.text_model.final_layer_norm.weight"),
            "cond_stage_model.transformer.text_model.final_layer_norm.weight");
  auto w = torch::arange(16.0).reshape({4, 4});
  auto conv = to_original_tensor("first_stage_model.decoder.mid.attn_1.k.weight", w);
  EXPECT_EQ(conv.sizes(), (std::vector<int64_t>{4, 4, 1, 1}));
  EXPECT_TRUE(torch::equal(to_diffusers_tensor("first_stage_model.decoder.mid.attn_1.k.weight", conv), w));
  EXPECT_EQ(to_original_tensor("first_stage_model.decoder.mid.attn_1.k.bias", w).sizes(), w.sizes());
}

TEST(DiffusersKeys, RejectsForeignKeys) {
  for (const std::string key : {"unet.add_embedding.linear_1.weight", "unet.down_blocks.0.resnets.2.conv1.weight",
                                "unet.down_blocks.3.downsamplers.0.conv.weight", "unet.up_blocks.4.resnets.0.conv1.weight",
                                "vae.encoder.mid_block.attentions.0.to_q.scale", "text_encoder.text_projection.weight",
                                "controlnet.conv_in.weight"}) {
    EXPECT_EQ(try_diffusers_to_original(key), "") << key;
    EXPECT_NE(error_of([&] { diffusers_to_original(key); }).find(key), std::string::npos);
  }
  for (const std::string key : {"model.diffusion_model.input_blocks.12.0.in_layers.0.weight",
                                "model.diffusion_model.output_blocks.0.1.conv.weight",  // upsampler sits in the last block
                                "model.diffusion_model.label_emb.0.0.weight", "first_stage_model.decoder.up.0.upsample.conv.weight",
                                "betas", "model_ema.decay"}) {
    EXPECT_EQ(try_original_to_diffusers(key), "") << key;
    EXPECT_NE(error_of([&] { original_to_diffusers(key); }).find(key), std::string::npos);
  }
}

// A UNet/VAE with other numbers of levels and res-blocks, attention only on level 1.
TEST(DiffusersKeys, OtherGeometryIsABijection) {
  LayoutGeometry g;
  g.unet_levels = 3;
  g.unet_num_res_blocks = 1;
  g.unet_attention_levels = {1};
  g.vae_levels = 3;
  std::vector<std::string> keys{"unet.conv_in.weight", "unet.conv_out.bias", "unet.time_embedding.linear_2.weight"};
  auto resnet = [&](const std::string& at) { keys.push_back(at + ".conv1.weight"), keys.push_back(at + ".time_emb_proj.bias"); };
  auto attention = [&](const std::string& at) {
    keys.push_back(at + ".proj_in.weight"), keys.push_back(at + ".transformer_blocks.0.attn2.to_k.weight");
  };
  for (int i = 0; i < 3; ++i) {
    const std::string down = "unet.down_blocks." + std::to_string(i), up = "unet.up_blocks." + std::to_string(i);
    for (int j = 0; j < 1; ++j) {
      resnet(down + ".resnets." + std::to_string(j));
      if (i == 1) attention(down + ".attentions." + std::to_string(j));
    }
    for (int j = 0; j < 2; ++j) {
      resnet(up + ".resnets." + std::to_string(j));
      if (2 - i == 1) attention(up + ".attentions." + std::to_string(j));
    }
    if (i < 2) keys.push_back(down + ".downsamplers.0.conv.weight"), keys.push_back(up + ".upsamplers.0.conv.weight");
    keys.push_back("vae.encoder.down_blocks." + std::to_string(i) + ".resnets.0.norm1.weight");
    keys.push_back("vae.decoder.up_blocks." + std::to_string(i) + ".resnets.1.conv_shortcut.weight");
  }
  resnet("unet.mid_block.resnets.1");
  attention("unet.mid_block.attentions.0");

  const LayoutGeometry read = LayoutGeometry::from_diffusers_keys(keys);
  EXPECT_EQ(read.unet_levels, 3);
  EXPECT_EQ(read.unet_num_res_blocks, 1);
  EXPECT_EQ(read.unet_attention_levels, (std::vector<int64_t>{1}));
  EXPECT_EQ(read.vae_levels, 3);

  std::set<std::string> originals;
  for (const auto& k : keys) {
    const std::string o = diffusers_to_original(k, g);
    EXPECT_TRUE(originals.insert(o).second) << "two keys map to " << o;
    EXPECT_EQ(original_to_diffusers(o, g), k);
  }
  const std::string u = "model.diffusion_model.";
  EXPECT_TRUE(originals.count(u + "input_blocks.3.0.in_layers.2.weight"));     // level 1 resnet 0
  EXPECT_TRUE(originals.count(u + "input_blocks.2.0.op.weight"));              // level 0 downsampler
  EXPECT_TRUE(originals.count(u + "output_blocks.1.1.conv.weight"));           // up block 0: no attention
  EXPECT_TRUE(originals.count(u + "output_blocks.3.2.conv.weight"));           // up block 1: attention in slot 1
  EXPECT_TRUE(originals.count("first_stage_model.decoder.up.2.block.1.nin_shortcut.weight"));

  const LayoutGeometry back = LayoutGeometry::from_original_keys({originals.begin(), originals.end()});
  EXPECT_EQ(back.unet_levels, 3);
  EXPECT_EQ(back.unet_num_res_blocks, 1);
  EXPECT_EQ(back.unet_attention_levels, (std::vector<int64_t>{1}));
  EXPECT_EQ(back.vae_levels, 3);
}

TEST(Checkpoint, SD15ConfigFromShapes) {
  const ShapeMap original = without_position_ids(read_key_list(kRef + "/sd15_keys_original.txt"));
  const ModelConfig inferred = infer_config(original, "sd15");
  EXPECT_EQ(as_json(inferred), as_json(ModelConfig{}));
  EXPECT_NO_THROW(validate_config(inferred, "sd15"));

  ShapeMap from_diffusers;
  for (const auto& [k, s] : read_key_list(kRef + "/sd15_keys_diffusers.txt")) {
    const std::string o = diffusers_to_original(k);
    if (!is_dropped_key(o)) from_diffusers[o] = to_original_shape(o, s);
  }
  EXPECT_EQ(as_json(infer_config(from_diffusers)), as_json(ModelConfig{}));
}

TEST(Checkpoint, TinyLayoutsLoadToTheSameModel) {
  const CheckpointData single = load_checkpoint(kTinyFile, ConfigOverrides::from_file(kTinyConfig));
  const CheckpointData folder = load_checkpoint(kTinyDiffusers);
  EXPECT_EQ(single.layout, "ldm");
  EXPECT_EQ(folder.layout, "diffusers");

  const ShapeMap want = without_position_ids(read_key_list(kRef + "/tiny/tiny_keys_original.txt"));
  EXPECT_EQ(want.size(), 970u);
  EXPECT_EQ(shapes_of(single.tensors), want);
  expect_same_tensors(single.tensors, folder.tensors);
  for (const auto& [k, t] : single.tensors) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << k;

  EXPECT_EQ(as_json(single.config), as_json(tiny_config()));
  EXPECT_EQ(as_json(folder.config), as_json(tiny_config()));
  EXPECT_EQ(single.dropped, (std::vector<std::string>{"cond_stage_model.transformer.text_model.embeddings.position_ids"}));
  EXPECT_EQ(folder.dropped, (std::vector<std::string>{"text_encoder.text_model.embeddings.position_ids"}));
  EXPECT_EQ(folder.metadata.at("format"), "pt");
}

TEST(Checkpoint, TinyWithoutItsConfigSaysWhatIsMissing) {
  ASSERT_EQ(find_sidecar(kTinyFile), "");
  const std::string msg = error_of([] { load_checkpoint(kTinyFile); });
  EXPECT_NE(msg.find(kTinyFile), std::string::npos) << msg;
  EXPECT_NE(msg.find("unet.norm_groups = 32 does not divide the 8 channels"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--model-config"), std::string::npos) << msg;

  // With the groups but not the text heads, the next gap is named.
  const std::string heads = error_of([] {
    load_checkpoint(kTinyFile, ConfigOverrides::parse_text(R"({"unet": {"norm_groups": 4}, "vae": {"norm_groups": 4}})", "test"));
  });
  EXPECT_NE(heads.find("text encoder's head count is unknown"), std::string::npos) << heads;
}

TEST(Checkpoint, SidecarNextToTheFileIsFound) {
  const fs::path dir = temp_dir("sidecar");
  const fs::path file = dir / "model.safetensors";
  fs::create_symlink(kTinyFile, file);
  fs::copy_file(kTinyConfig, dir / "model.json");
  EXPECT_EQ(find_sidecar(file.string()), (dir / "model.json").string());
  EXPECT_EQ(as_json(load_checkpoint(file.string()).config), as_json(tiny_config()));
}

TEST(Checkpoint, SavedDiffusersFolderLoadsBack) {
  const CheckpointData tiny = load_checkpoint(kTinyFile, ConfigOverrides::from_file(kTinyConfig));
  const fs::path dir = temp_dir("diffusers");
  save_diffusers(dir.string(), tiny.tensors, tiny.config, {{"method", "test"}});

  const CheckpointData back = load_checkpoint(dir.string());
  expect_same_tensors(back.tensors, tiny.tensors);
  EXPECT_EQ(as_json(back.config), as_json(tiny.config));
  EXPECT_EQ(back.metadata.at("method"), "test");

  // The files hold exactly the reference diffusers tensors.
  ShapeMap written;
  for (const auto& [folder, file] : {std::pair{"unet", "diffusion_pytorch_model"}, {"vae", "diffusion_pytorch_model"},
                                     {"text_encoder", "model"}}) {
    const SafeTensors st = SafeTensors::open((dir / folder / file).string() + ".safetensors");
    for (const auto& [k, info] : st.infos()) written[std::string(folder) + "." + k] = info.shape;
  }
  EXPECT_EQ(written, without_position_ids(read_key_list(kRef + "/tiny/tiny_keys_diffusers.txt")));

  std::ifstream unet_config(dir / "unet" / "config.json");
  const auto j = nlohmann::json::parse(unet_config);
  EXPECT_EQ(j.at("attention_head_dim"), 2);
  EXPECT_EQ(j.at("norm_num_groups"), 4);
  EXPECT_EQ(j.at("up_block_types").at(0), "UpBlock2D");
  EXPECT_TRUE(fs::exists(dir / "scheduler" / "scheduler_config.json"));
  std::ifstream index(dir / "model_index.json");
  EXPECT_EQ(nlohmann::json::parse(index).at("unet"), nlohmann::json::array({"diffusers", "UNet2DConditionModel"}));
  std::ifstream text_config(dir / "text_encoder" / "config.json");
  const auto t = nlohmann::json::parse(text_config);
  EXPECT_EQ(t.at("architectures"), nlohmann::json::array({"CLIPTextModel"}));
  EXPECT_EQ(t.at("num_attention_heads"), 4);
  EXPECT_EQ(t.at("hidden_act"), "quick_gelu");
}

TEST(Checkpoint, SavedSingleFileCarriesItsConfig) {
  const CheckpointData tiny = load_checkpoint(kTinyDiffusers);
  const fs::path file = temp_dir("single") / "tiny.safetensors";
  save_checkpoint(file.string(), tiny.tensors, tiny.config, {{"base_model", "tiny"}});
  const CheckpointData back = load_checkpoint(file.string());
  expect_same_tensors(back.tensors, tiny.tensors);
  EXPECT_EQ(as_json(back.config), as_json(tiny.config));
  EXPECT_EQ(back.metadata.at("base_model"), "tiny");
  EXPECT_TRUE(back.dropped.empty());

  ModelConfig wrong = tiny.config;
  wrong.unet.channel_mult = {1, 2, 4};
  const std::string msg = error_of([&] { save_checkpoint(file.string(), tiny.tensors, wrong, {}); });
  EXPECT_NE(msg.find("unet.channel_mult"), std::string::npos) << msg;
}

TEST(Checkpoint, ExtrasAreDroppedAndOldTextNamesAccepted) {
  const CheckpointData tiny = load_checkpoint(kTinyDiffusers);
  std::map<std::string, torch::Tensor> file;
  for (const auto& [k, t] : tiny.tensors) {
    // transformers < 4.0 names: no `text_model.` level.
    const std::string old_text = "cond_stage_model.transformer.text_model.";
    file[k.rfind(old_text, 0) == 0 ? "cond_stage_model.transformer." + k.substr(old_text.size()) : k] = t;
  }
  file["model_ema.diffusion_modelinput_blocks00weight"] = torch::zeros({8, 4, 3, 3});
  file["model_ema.num_updates"] = torch::tensor(3, torch::kInt32);
  file["betas"] = torch::linspace(0.0, 0.01, 1000, torch::kFloat64);
  file["alphas_cumprod"] = torch::ones({1000});
  file["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch::rand({1, 77});  // float, not 0..76
  // Linear-shaped VAE attention, as some converters write it.
  const std::string q = "first_stage_model.decoder.mid.attn_1.q.weight";
  file[q] = to_diffusers_tensor(q, tiny.tensors.at(q));
  const fs::path path = temp_dir("extras") / "model.safetensors";
  save_safetensors(path.string(), file, {{"sine.config", ConfigOverrides::of(tiny.config).values.dump()}});

  const CheckpointData loaded = load_checkpoint(path.string());
  expect_same_tensors(loaded.tensors, tiny.tensors);
  EXPECT_EQ(loaded.dropped.size(), 5u);
}

TEST(Checkpoint, MissingComponentIsNamed) {
  const CheckpointData tiny = load_checkpoint(kTinyDiffusers);
  std::map<std::string, torch::Tensor> no_text;
  for (const auto& [k, t] : tiny.tensors)
    if (k.rfind(kTextPrefix, 0) != 0) no_text[k] = t;
  const fs::path path = temp_dir("missing") / "unet_vae.safetensors";
  save_safetensors(path.string(), no_text);
  const std::string msg = error_of([&] { load_checkpoint(path.string()); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("no text encoder tensors (cond_stage_model.transformer.*)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("first_stage_model.decoder.*"), std::string::npos) << msg;

  const fs::path folder = temp_dir("missing_folder");
  fs::create_directories(folder / "unet");
  fs::copy_file(kTinyDiffusers + "/unet/diffusion_pytorch_model.safetensors", folder / "unet" / "diffusion_pytorch_model.safetensors");
  const std::string folder_msg = error_of([&] { load_checkpoint(folder.string()); });
  EXPECT_NE(folder_msg.find("vae/ is missing"), std::string::npos) << folder_msg;

  EXPECT_NE(error_of([] { load_checkpoint("/nonexistent/model.safetensors"); }).find("no such file"), std::string::npos);
  const fs::path pickle = temp_dir("pickle") / "model.ckpt";
  std::ofstream(pickle) << "not safetensors";
  EXPECT_NE(error_of([&] { load_checkpoint(pickle.string()); }).find("pickle checkpoints are not supported"), std::string::npos);
}

TEST(Checkpoint, Fp16DiffusersVariant) {
  const fs::path dir = temp_dir("fp16");
  for (const auto& [folder, stem] : {std::pair{"unet", "diffusion_pytorch_model"}, {"vae", "diffusion_pytorch_model"},
                                     {"text_encoder", "model"}}) {
    fs::create_directories(dir / folder);
    const std::string from = kTinyDiffusers + "/" + folder + "/";
    std::map<std::string, torch::Tensor> half;
    for (auto& [k, t] : load_safetensors(from + stem + ".safetensors"))
      half[k] = t.is_floating_point() ? t.to(torch::kFloat16) : t;
    save_safetensors((dir / folder / (std::string(stem) + ".fp16.safetensors")).string(), half);
    fs::copy_file(from + "config.json", dir / folder / "config.json");
  }
  const CheckpointData reference = load_checkpoint(kTinyDiffusers);
  const CheckpointData half = load_checkpoint(dir.string());
  ASSERT_EQ(shapes_of(half.tensors), shapes_of(reference.tensors));
  for (const auto& [k, t] : half.tensors) {
    EXPECT_EQ(t.scalar_type(), torch::kFloat16) << k;
    EXPECT_TRUE(torch::equal(t, reference.tensors.at(k).to(torch::kFloat16))) << k;
  }
}

TEST(ConfigOverrides, ParsingIsStrict) {
  EXPECT_NE(error_of([] { ConfigOverrides::parse_text(R"({"unet": {"heads": 2}})", "--config"); })
                .find("unknown config field 'unet.heads'"),
            std::string::npos);
  EXPECT_NE(error_of([] { ConfigOverrides::parse_text(R"({"clip": {}})", "--config"); }).find("unknown config section 'clip'"),
            std::string::npos);
  EXPECT_NE(error_of([] { ConfigOverrides::parse_text(R"({"text": {"heads": "four"}})", "x.json"); })
                .find("x.json: config field text.heads must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of([] { ConfigOverrides::parse_text("{unet", "--config"); }).find("not valid JSON"), std::string::npos);
  const auto ok = ConfigOverrides::parse_text(R"({"unet": {"num_heads": 2, "norm_groups": 4}, "vae": {}, "text": {"heads": 4}})", "cli");
  ModelConfig c;
  ok.apply_to(c);
  EXPECT_EQ(c.unet.num_heads, 2);
  EXPECT_EQ(c.unet.norm_groups, 4);
  EXPECT_EQ(c.text.heads, 4);
}

TEST(ConfigOverrides, PriorityAndShapeAgreement) {
  // unet/config.json says 2 heads; the explicit override wins.
  const auto explicit_heads = ConfigOverrides::parse_text(R"({"unet": {"num_heads": 4}})", "--config");
  EXPECT_EQ(load_checkpoint(kTinyDiffusers, explicit_heads).config.unet.num_heads, 4);

  const auto wrong = ConfigOverrides::parse_text(R"({"unet": {"model_channels": 320}})", "--config");
  const std::string msg = error_of([&] { load_checkpoint(kTinyDiffusers, wrong); });
  EXPECT_NE(msg.find("--config: unet.model_channels is 320 but the checkpoint's tensors give 8"), std::string::npos) << msg;

  const auto sidecar = ConfigOverrides::from_file(kTinyConfig);
  EXPECT_EQ(sidecar.values.at("unet").at("attention_levels"), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(sidecar.values.at("text").at("quick_gelu"), true);
  EXPECT_DOUBLE_EQ(sidecar.values.at("vae").at("scaling_factor").get<double>(), 0.18215);

  const std::string per_block = error_of([] {
    ConfigOverrides::from_diffusers_unet(nlohmann::json{{"attention_head_dim", {5, 10, 20, 20}}}, "unet/config.json");
  });
  EXPECT_NE(per_block.find("per-block values of 'attention_head_dim'"), std::string::npos) << per_block;
}
