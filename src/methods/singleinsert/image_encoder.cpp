#include "methods/singleinsert/image_encoder.h"

#include <cmath>

#include "core/error.h"
#include "io/safetensors.h"

namespace sine {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

ImageEncoderConfig ImageEncoderConfig::preset(const std::string& name, int64_t text_width) {
  ImageEncoderConfig c;
  if (name == "vit-b32") {
    // defaults are ViT-B/32
  } else if (name == "tiny") {
    c.image_size = 64;
    c.patch_size = 8;
    c.width = 64;
    c.layers = 2;
    c.heads = 4;
  } else {
    throw Error("encoder: unknown image encoder '" + name + "' (known: vit-b32, tiny)");
  }
  c.output_dim = text_width;
  return c;
}

ImageEncoderConfig ImageEncoderConfig::for_text_width(int64_t text_width) {
  return preset(text_width >= 768 ? "vit-b32" : "tiny", text_width);
}

nlohmann::json ImageEncoderConfig::to_json() const {
  return {{"image_size", image_size}, {"patch_size", patch_size}, {"width", width},
          {"layers", layers},         {"heads", heads},           {"output_dim", output_dim}};
}

ImageEncoderConfig ImageEncoderConfig::from_json(const nlohmann::json& j) {
  ImageEncoderConfig c;
  c.image_size = j.at("image_size");
  c.patch_size = j.at("patch_size");
  c.width = j.at("width");
  c.layers = j.at("layers");
  c.heads = j.at("heads");
  c.output_dim = j.at("output_dim");
  return c;
}

VisionAttentionImpl::VisionAttentionImpl(int64_t width, int64_t heads) : heads_(heads) {
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * width, width}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * width}));
  out_proj = register_module("out_proj", nn::Linear(width, width));
  nn::init::xavier_uniform_(in_proj_weight);
  torch::NoGradGuard no_grad;
  out_proj->bias.zero_();
}

torch::Tensor VisionAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2), d = C / heads_;
  auto qkv = F::linear(x, in_proj_weight, in_proj_bias).chunk(3, -1);
  auto split = [&](const torch::Tensor& t) { return t.reshape({B, N, heads_, d}).transpose(1, 2); };
  auto q = split(qkv[0]), k = split(qkv[1]), v = split(qkv[2]);
  auto probs = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(d)), -1);
  auto out = torch::matmul(probs, v).transpose(1, 2).reshape({B, N, C});
  return out_proj(out);
}

VisionMLPImpl::VisionMLPImpl(int64_t width) {
  c_fc = register_module("c_fc", nn::Linear(width, 4 * width));
  c_proj = register_module("c_proj", nn::Linear(4 * width, width));
}

torch::Tensor VisionMLPImpl::forward(const torch::Tensor& x) {
  auto h = c_fc(x);
  return c_proj(h * torch::sigmoid(1.702 * h));  // QuickGELU
}

VisionResidualBlockImpl::VisionResidualBlockImpl(int64_t width, int64_t heads) {
  attn = register_module("attn", VisionAttention(width, heads));
  ln_1 = register_module("ln_1", nn::LayerNorm(nn::LayerNormOptions({width})));
  mlp = register_module("mlp", VisionMLP(width));
  ln_2 = register_module("ln_2", nn::LayerNorm(nn::LayerNormOptions({width})));
}

torch::Tensor VisionResidualBlockImpl::forward(const torch::Tensor& x) {
  auto h = x + attn(ln_1(x));
  return h + mlp(ln_2(h));
}

namespace {
struct HolderImpl : nn::Module {};
TORCH_MODULE(Holder);
}  // namespace

ImageEncoderImpl::ImageEncoderImpl(const ImageEncoderConfig& config) : config_(config) {
  if (config.image_size % config.patch_size)
    throw Error("image encoder: image size " + std::to_string(config.image_size) + " is not a multiple of patch " +
                std::to_string(config.patch_size));
  if (config.width % config.heads)
    throw Error("image encoder: width " + std::to_string(config.width) + " is not divisible by heads " +
                std::to_string(config.heads));
  const int64_t w = config.width, grid = config.image_size / config.patch_size;
  conv1 = register_module(
      "conv1", nn::Conv2d(nn::Conv2dOptions(3, w, config.patch_size).stride(config.patch_size).bias(false)));
  class_embedding = register_parameter("class_embedding", torch::empty({w}));
  positional_embedding = register_parameter("positional_embedding", torch::empty({grid * grid + 1, w}));
  ln_pre = register_module("ln_pre", nn::LayerNorm(nn::LayerNormOptions({w})));
  auto transformer = register_module("transformer", Holder());
  resblocks = nn::ModuleList();
  for (int64_t i = 0; i < config.layers; ++i) resblocks->push_back(VisionResidualBlock(w, config.heads));
  transformer->register_module("resblocks", resblocks);
  ln_post = register_module("ln_post", nn::LayerNorm(nn::LayerNormOptions({w})));
  proj = register_parameter("proj", torch::empty({w, config.output_dim}));
  reset_parameters();
}

void ImageEncoderImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const double scale = std::pow(static_cast<double>(config_.width), -0.5);
  class_embedding.copy_(torch::randn_like(class_embedding) * scale);
  positional_embedding.copy_(torch::randn_like(positional_embedding) * scale);
  proj.copy_(torch::randn_like(proj) * scale);
}

torch::Tensor ImageEncoderImpl::preprocess(const torch::Tensor& rgb_u8) const {
  if (rgb_u8.dim() != 3 || rgb_u8.size(2) != 3) throw Error("image encoder: expected an RGB image [H, W, 3]");
  auto x = rgb_u8.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32) / 255.0;
  x = F::interpolate(x, F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{config_.image_size, config_.image_size})
                            .mode(torch::kBilinear)
                            .align_corners(false));
  return (x - 0.5) / 0.5;
}

torch::Tensor ImageEncoderImpl::forward(const torch::Tensor& pixels) {
  auto x = conv1(pixels.to(proj.device(), proj.scalar_type()));  // [B, w, g, g]
  const int64_t B = x.size(0);
  x = x.flatten(2).transpose(1, 2);                               // [B, g*g, w]
  x = torch::cat({class_embedding.view({1, 1, -1}).expand({B, 1, config_.width}), x}, 1);
  x = ln_pre(x + positional_embedding.unsqueeze(0));
  for (const auto& block : *resblocks) x = block->as<VisionResidualBlockImpl>()->forward(x);
  return torch::matmul(ln_post(x.select(1, 0)), proj);
}

NamedTensors ImageEncoderImpl::named_trainables(const std::string& prefix) const {
  NamedTensors out;
  for (const auto& p : named_parameters()) out.emplace_back(prefix + p.key(), p.value());
  return out;
}

std::string ImageEncoderImpl::load_weights(const std::string& path) {
  auto tensors = load_safetensors(path);
  const bool prefixed = tensors.count("visual.conv1.weight") != 0;
  const std::string prefix = prefixed ? "visual." : "";
  std::string note;
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    auto it = tensors.find(prefix + p.key());
    if (it == tensors.end())
      throw Error(path + ": missing image encoder tensor '" + prefix + p.key() + "' (expected OpenAI CLIP visual.*)");
    if (it->second.sizes() != p.value().sizes()) {
      if (p.key() == "proj") {
        note = "proj has shape " + c10::str(it->second.sizes()) + " in " + path + ", the text width needs " +
               c10::str(p.value().sizes()) + ": re-initialised";
        continue;
      }
      throw Error(path + ": image encoder tensor '" + prefix + p.key() + "' has shape " +
                  c10::str(it->second.sizes()) + ", this encoder needs " + c10::str(p.value().sizes()));
    }
    p.value().copy_(it->second.to(p.value().device(), p.value().scalar_type()));
  }
  return note;
}

}  // namespace sine
