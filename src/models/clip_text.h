#pragma once
#include <torch/torch.h>

#include <vector>

#include "models/config.h"
#include "models/lora_linear.h"

namespace sine {

struct TextEncoderOutput {
  torch::Tensor last_hidden_state;           // [B, L, C], after final_layer_norm
  std::vector<torch::Tensor> hidden_states;  // embeddings, then each layer's output before the final LN
  torch::Tensor pooled;                      // [B, C] at the first EOT; undefined without input_ids
};

class CLIPEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit CLIPEmbeddingsImpl(const TextConfig& config);

  // position_ids is deliberately not a buffer: real files may lack it or hold junk; 0..L-1 is used.
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(CLIPEmbeddings);

// Multi-head self-attention with a causal mask (each token sees itself and earlier tokens).
class CLIPAttentionImpl : public torch::nn::Module {
 public:
  explicit CLIPAttentionImpl(const TextConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  // Adaptable so LoRA (SingleInsert, SINE's LoRA mode) can attach to the projections.
  AdaptableLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(CLIPAttention);

class CLIPMLPImpl : public torch::nn::Module {
 public:
  explicit CLIPMLPImpl(const TextConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  bool quick_gelu_;
};
TORCH_MODULE(CLIPMLP);

// Pre-LN transformer layer.
class CLIPEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit CLIPEncoderLayerImpl(const TextConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  CLIPAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  CLIPMLP mlp{nullptr};
};
TORCH_MODULE(CLIPEncoderLayer);

class CLIPEncoderImpl : public torch::nn::Module {
 public:
  explicit CLIPEncoderImpl(const TextConfig& config);

  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(CLIPEncoder);

class CLIPTextTransformerImpl : public torch::nn::Module {
 public:
  explicit CLIPTextTransformerImpl(const TextConfig& config);

  CLIPEmbeddings embeddings{nullptr};
  CLIPEncoder encoder{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(CLIPTextTransformer);

// The CLIP ViT-L/14 text tower SD 1.x conditions on, named like Hugging Face's CLIPTextModel
// (`text_model.*`; the single-file checkpoint adds the prefix `cond_stage_model.transformer.`).
class CLIPTextModelImpl : public torch::nn::Module {
 public:
  explicit CLIPTextModelImpl(const TextConfig& config = {});

  // input_ids [B, L] int64 -> last_hidden_state [B, L, C] (after final_layer_norm).
  torch::Tensor forward(const torch::Tensor& input_ids);
  // The token table lookup only, [B, L, C]: callers may edit rows (SingleInsert's '*' token)
  // and pass the result to forward_embeddings.
  torch::Tensor token_embeddings(const torch::Tensor& input_ids);
  // Runs from token embeddings; position embeddings are added here. input_ids only locate the
  // pooled (first EOT) position. clip_skip = 1 uses the last layer (SD 1.x); clip_skip = k uses
  // the output of layer (layers - k + 1) passed through final_layer_norm. all_hidden_states
  // fills hidden_states with the embeddings and every layer's output (all layers are then run).
  TextEncoderOutput forward_embeddings(const torch::Tensor& token_embeds, const torch::Tensor& input_ids = {},
                                       int64_t clip_skip = 1, bool all_hidden_states = false);
  TextEncoderOutput encode(const torch::Tensor& input_ids, int64_t clip_skip = 1, bool all_hidden_states = false);

  const TextConfig& config() const { return config_; }

  CLIPTextTransformer text_model{nullptr};

 private:
  TextConfig config_;
};
TORCH_MODULE(CLIPTextModel);

}  // namespace sine
