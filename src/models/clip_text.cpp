#include "models/clip_text.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/torch_compat.h"

namespace sine {

namespace {

torch::nn::LayerNorm layer_norm(const TextConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width}).eps(c.layer_norm_eps));
}

// q, k, v: [B, heads, L, D]. Causal softmax attention; fused on LibTorch 2.x.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return compat::scaled_dot_product_attention(q, k, v, /*is_causal=*/true);
}

}  // namespace

CLIPEmbeddingsImpl::CLIPEmbeddingsImpl(const TextConfig& c) {
  token_embedding = register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.width));
  position_embedding = register_module("position_embedding", torch::nn::Embedding(c.context_length, c.width));
}

CLIPAttentionImpl::CLIPAttentionImpl(const TextConfig& c) : heads_(c.heads) {
  if (c.heads <= 0 || c.width % c.heads != 0)
    throw Error("text encoder config: width " + std::to_string(c.width) + " is not divisible by heads " +
                std::to_string(c.heads));
  q_proj = register_module("q_proj", AdaptableLinear(c.width, c.width, true));
  k_proj = register_module("k_proj", AdaptableLinear(c.width, c.width, true));
  v_proj = register_module("v_proj", AdaptableLinear(c.width, c.width, true));
  out_proj = register_module("out_proj", AdaptableLinear(c.width, c.width, true));
}

torch::Tensor CLIPAttentionImpl::forward(const torch::Tensor& x) {
  const auto b = x.size(0), length = x.size(1), width = x.size(2);
  auto heads = [&](const torch::Tensor& t) { return t.view({b, length, heads_, width / heads_}).transpose(1, 2); };
  auto out = causal_attention(heads(q_proj->forward(x)), heads(k_proj->forward(x)), heads(v_proj->forward(x)));
  return out_proj->forward(out.transpose(1, 2).reshape({b, length, width}));
}

CLIPMLPImpl::CLIPMLPImpl(const TextConfig& c) : quick_gelu_(c.quick_gelu) {
  fc1 = register_module("fc1", torch::nn::Linear(c.width, c.mlp_width));
  fc2 = register_module("fc2", torch::nn::Linear(c.mlp_width, c.width));
}

torch::Tensor CLIPMLPImpl::forward(const torch::Tensor& x) {
  auto h = fc1->forward(x);
  h = quick_gelu_ ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);
  return fc2->forward(h);
}

CLIPEncoderLayerImpl::CLIPEncoderLayerImpl(const TextConfig& c) {
  self_attn = register_module("self_attn", CLIPAttention(c));
  layer_norm1 = register_module("layer_norm1", layer_norm(c));
  mlp = register_module("mlp", CLIPMLP(c));
  layer_norm2 = register_module("layer_norm2", layer_norm(c));
}

torch::Tensor CLIPEncoderLayerImpl::forward(const torch::Tensor& x) {
  auto h = x + self_attn->forward(layer_norm1->forward(x));
  return h + mlp->forward(layer_norm2->forward(h));
}

CLIPEncoderImpl::CLIPEncoderImpl(const TextConfig& c) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.layers; ++i) layers->push_back(CLIPEncoderLayer(c));
}

CLIPTextTransformerImpl::CLIPTextTransformerImpl(const TextConfig& c) {
  embeddings = register_module("embeddings", CLIPEmbeddings(c));
  encoder = register_module("encoder", CLIPEncoder(c));
  final_layer_norm = register_module("final_layer_norm", layer_norm(c));
}

CLIPTextModelImpl::CLIPTextModelImpl(const TextConfig& config) : config_(config) {
  text_model = register_module("text_model", CLIPTextTransformer(config));
}

torch::Tensor CLIPTextModelImpl::token_embeddings(const torch::Tensor& input_ids) {
  if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kLong)
    throw Error("text encoder: expected input_ids [B, L] int64, got " + c10::str(input_ids.sizes()) + " " +
                c10::str(input_ids.scalar_type()));
  if (input_ids.numel() > 0) {
    const auto lo = input_ids.min().item<int64_t>(), hi = input_ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw Error("text encoder: token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary of " +
                  std::to_string(config_.vocab_size) + " (does the tokenizer match the model?)");
  }
  return text_model->embeddings->token_embedding->forward(input_ids);
}

TextEncoderOutput CLIPTextModelImpl::forward_embeddings(const torch::Tensor& token_embeds,
                                                        const torch::Tensor& input_ids, int64_t clip_skip,
                                                        bool all_hidden_states) {
  if (token_embeds.dim() != 3 || token_embeds.size(2) != config_.width)
    throw Error("text encoder: expected token embeddings [B, L, " + std::to_string(config_.width) + "], got " +
                c10::str(token_embeds.sizes()));
  const auto length = token_embeds.size(1);
  if (length > config_.context_length)
    throw Error("text encoder: " + std::to_string(length) + " tokens exceed the context length " +
                std::to_string(config_.context_length));
  if (clip_skip < 1 || clip_skip > config_.layers)
    throw Error("text encoder: clip_skip " + std::to_string(clip_skip) + " must be between 1 and " +
                std::to_string(config_.layers));
  if (input_ids.defined() && (input_ids.dim() != 2 || input_ids.size(0) != token_embeds.size(0) ||
                              input_ids.size(1) != length))
    throw Error("text encoder: input_ids " + c10::str(input_ids.sizes()) + " do not match token embeddings " +
                c10::str(token_embeds.sizes()));

  auto& layers = *text_model->encoder->layers;
  auto positions = torch::arange(length, token_embeds.options().dtype(torch::kLong));
  auto h = token_embeds + text_model->embeddings->position_embedding->forward(positions).unsqueeze(0);

  TextEncoderOutput out;
  if (all_hidden_states) out.hidden_states.push_back(h);
  const auto used_layers = static_cast<int64_t>(layers.size()) - (clip_skip - 1);
  const auto run_layers = all_hidden_states ? static_cast<int64_t>(layers.size()) : used_layers;
  torch::Tensor selected = h;
  for (int64_t i = 0; i < run_layers; ++i) {
    h = layers[i]->as<CLIPEncoderLayer>()->forward(h);
    if (all_hidden_states) out.hidden_states.push_back(h);
    if (i + 1 == used_layers) selected = h;
  }
  out.last_hidden_state = text_model->final_layer_norm->forward(selected);
  if (input_ids.defined()) {
    auto eot = input_ids.argmax(-1).to(out.last_hidden_state.device());
    auto batch = torch::arange(input_ids.size(0), eot.options());
    out.pooled = out.last_hidden_state.index({batch, eot});
  }
  return out;
}

TextEncoderOutput CLIPTextModelImpl::encode(const torch::Tensor& input_ids, int64_t clip_skip,
                                            bool all_hidden_states) {
  return forward_embeddings(token_embeddings(input_ids), input_ids, clip_skip, all_hidden_states);
}

torch::Tensor CLIPTextModelImpl::forward(const torch::Tensor& input_ids) {
  return encode(input_ids).last_hidden_state;
}

}  // namespace sine
