#include "models/spatial_transformer.h"

namespace sine {

namespace nn = torch::nn;

CrossAttentionImpl::CrossAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim)
    : heads_(heads), is_cross_(context_dim > 0) {
  const int64_t inner = heads * head_dim;
  const int64_t kv_dim = is_cross_ ? context_dim : query_dim;
  to_q = register_module("to_q", AdaptableLinear(query_dim, inner, false));
  to_k = register_module("to_k", AdaptableLinear(kv_dim, inner, false));
  to_v = register_module("to_v", AdaptableLinear(kv_dim, inner, false));
  out_proj_ = AdaptableLinear(inner, query_dim, true);
  to_out = register_module("to_out", nn::Sequential(out_proj_, nn::Identity()));
}

void CrossAttentionImpl::set_site(int layer, const std::string& place) {
  layer_ = layer;
  place_ = place;
}

torch::Tensor CrossAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                          const AttentionCall& call, int64_t height, int64_t width) {
  const auto& source = is_cross_ ? context : x;
  auto q = to_q(x), k = to_k(source), v = to_v(source);
  torch::Tensor out;
  if (call.hook) {
    AttentionSite site;
    site.step = call.step;
    site.layer = layer_;
    site.is_cross = is_cross_;
    site.height = height;
    site.width = width;
    site.heads = heads_;
    site.place = place_;
    out = multi_head_attention(q, k, v, heads_, call.hook, &site);
  } else {
    out = multi_head_attention(q, k, v, heads_);
  }
  return out_proj_(out);
}

GEGLUImpl::GEGLUImpl(int64_t dim_in, int64_t dim_out) {
  proj = register_module("proj", nn::Linear(dim_in, dim_out * 2));
}

torch::Tensor GEGLUImpl::forward(const torch::Tensor& x) {
  auto halves = proj(x).chunk(2, -1);
  return halves[0] * torch::gelu(halves[1]);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult) {
  net = register_module("net", nn::Sequential(GEGLU(dim, dim * mult), nn::Identity(), nn::Linear(dim * mult, dim)));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) { return net->forward(x); }

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim,
                                                     int64_t context_dim) {
  attn1 = register_module("attn1", CrossAttention(dim, 0, heads, head_dim));
  ff = register_module("ff", FeedForward(dim));
  attn2 = register_module("attn2", CrossAttention(dim, context_dim, heads, head_dim));
  auto layer_norm = [&] { return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-5)); };
  norm1 = register_module("norm1", layer_norm());
  norm2 = register_module("norm2", layer_norm());
  norm3 = register_module("norm3", layer_norm());
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x_in, const torch::Tensor& context,
                                                 const AttentionCall& call, int64_t height, int64_t width) {
  auto x = attn1(norm1(x_in), context, call, height, width) + x_in;
  x = attn2(norm2(x), context, call, height, width) + x;
  return ff(norm3(x)) + x;
}

SpatialTransformerImpl::SpatialTransformerImpl(int64_t channels, int64_t heads, int64_t depth, int64_t context_dim,
                                               int64_t norm_groups) {
  // heads is the number of heads; the inner width equals the channel count in SD 1.x.
  const int64_t head_dim = channels / heads;
  norm = register_module("norm", nn::GroupNorm(nn::GroupNormOptions(norm_groups, channels).eps(1e-6)));
  proj_in = register_module("proj_in", nn::Conv2d(nn::Conv2dOptions(channels, heads * head_dim, 1)));
  transformer_blocks = register_module("transformer_blocks", nn::ModuleList());
  for (int64_t i = 0; i < depth; ++i) {
    blocks_.emplace_back(heads * head_dim, heads, head_dim, context_dim);
    transformer_blocks->push_back(blocks_.back());
  }
  proj_out = register_module("proj_out", nn::Conv2d(nn::Conv2dOptions(heads * head_dim, channels, 1)));
}

void SpatialTransformerImpl::assign_sites(const std::string& place, int& next_self, int& next_cross) {
  for (auto& block : blocks_) {
    block->attn1->set_site(next_self++, place);
    block->attn2->set_site(next_cross++, place);
  }
}

torch::Tensor SpatialTransformerImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                              const AttentionCall& call) {
  const int64_t b = x.size(0), height = x.size(2), width = x.size(3);
  auto h = proj_in(norm(x));
  const int64_t inner = h.size(1);
  // Tokens [B, H*W, C] made contiguous once here rather than inside every LayerNorm and matmul.
  h = h.flatten(2).transpose(1, 2).contiguous();
  for (auto& block : blocks_) h = block(h, context, call, height, width);
  h = h.transpose(1, 2).reshape({b, inner, height, width});
  return proj_out(h).add_(x);
}

}  // namespace sine
