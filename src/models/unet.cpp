#include "models/unet.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"
#include "models/checkpointing.h"

namespace sine {

namespace nn = torch::nn;

namespace {

std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

}  // namespace

void UNetBlockImpl::add(ResBlock layer) {
  register_module(next_name(), layer);
  layers_.push_back({layer, nullptr, nullptr, nullptr});
}

void UNetBlockImpl::add(SpatialTransformer layer) {
  register_module(next_name(), layer);
  layers_.push_back({nullptr, layer, nullptr, nullptr});
}

void UNetBlockImpl::add(Downsample layer) {
  register_module(next_name(), layer);
  layers_.push_back({nullptr, nullptr, layer, nullptr});
}

void UNetBlockImpl::add(Upsample layer) {
  register_module(next_name(), layer);
  layers_.push_back({nullptr, nullptr, nullptr, layer});
}

std::vector<SpatialTransformer> UNetBlockImpl::transformers() const {
  std::vector<SpatialTransformer> out;
  for (const auto& l : layers_)
    if (l.transformer) out.push_back(l.transformer);
  return out;
}

torch::Tensor UNetBlockImpl::forward(torch::Tensor x, const torch::Tensor& emb, const torch::Tensor& context,
                                     const AttentionCall& call, bool checkpointed,
                                     c10::optional<std::vector<int64_t>> upsample_size) {
  for (auto& l : layers_) {
    if (l.res) {
      if (checkpointed) {
        ResBlock res = l.res;
        x = checkpoint([res](const std::vector<torch::Tensor>& in) mutable { return res->forward(in[0], in[1]); }, {x, emb},
                       *res);
      } else {
        x = l.res(x, emb);
      }
    } else if (l.transformer) {
      if (checkpointed) {
        // Captured by value: the recomputation runs during backward, after this frame is gone.
        SpatialTransformer transformer = l.transformer;
        AttentionCall captured = call;
        x = checkpoint(
            [transformer, captured](const std::vector<torch::Tensor>& in) mutable {
              return transformer->forward(in[0], in[1], captured);
            },
            {x, context}, *transformer);
      } else {
        x = l.transformer(x, context, call);
      }
    } else if (l.down) {
      x = l.down(x);
    } else {
      x = l.up(x, upsample_size);
    }
  }
  return x;
}

UNetModelImpl::UNetModelImpl(const UNetConfig& config) : config_(config) {
  const int64_t mc = config.model_channels;
  const int64_t emb_dim = mc * 4;
  const int64_t levels = static_cast<int64_t>(config.channel_mult.size());
  const int64_t groups = config.norm_groups;
  if (levels == 0 || config.num_heads <= 0 || config.num_res_blocks <= 0)
    throw Error("UNet config: channel_mult, num_heads and num_res_blocks must be positive");
  auto has_attention = [&](int64_t level) {
    return std::find(config.attention_levels.begin(), config.attention_levels.end(), level) !=
           config.attention_levels.end();
  };
  auto transformer = [&](int64_t ch) {
    if (ch % config.num_heads)
      throw Error("UNet config: " + std::to_string(ch) + " channels do not split into num_heads=" +
                  std::to_string(config.num_heads) + " heads");
    return SpatialTransformer(ch, config.num_heads, config.transformer_depth, config.context_dim, groups);
  };

  time_embed = register_module("time_embed", nn::Sequential(nn::Linear(mc, emb_dim), nn::SiLU(),
                                                            nn::Linear(emb_dim, emb_dim)));

  input_blocks = register_module("input_blocks", nn::ModuleList());
  conv_in_ = nn::Conv2d(nn::Conv2dOptions(config.in_channels, mc, 3).padding(1));
  input_blocks->push_back(nn::Sequential(conv_in_));
  std::vector<int64_t> skip_channels{mc};
  int64_t ch = mc;
  for (int64_t level = 0; level < levels; ++level) {
    const int64_t out_ch = mc * config.channel_mult[level];
    for (int64_t r = 0; r < config.num_res_blocks; ++r) {
      UNetBlock block;
      block->add(ResBlock(ch, emb_dim, out_ch, groups));
      ch = out_ch;
      if (has_attention(level)) block->add(transformer(ch));
      down_.push_back(block);
      input_blocks->push_back(block);
      skip_channels.push_back(ch);
    }
    if (level != levels - 1) {
      UNetBlock block;
      block->add(Downsample(ch));
      down_.push_back(block);
      input_blocks->push_back(block);
      skip_channels.push_back(ch);
    }
  }

  middle_block = register_module("middle_block", UNetBlock());
  middle_block->add(ResBlock(ch, emb_dim, ch, groups));
  middle_block->add(transformer(ch));
  middle_block->add(ResBlock(ch, emb_dim, ch, groups));

  output_blocks = register_module("output_blocks", nn::ModuleList());
  for (int64_t level = levels - 1; level >= 0; --level) {
    const int64_t out_ch = mc * config.channel_mult[level];
    for (int64_t r = 0; r <= config.num_res_blocks; ++r) {
      UNetBlock block;
      block->add(ResBlock(ch + skip_channels.back(), emb_dim, out_ch, groups));
      skip_channels.pop_back();
      ch = out_ch;
      if (has_attention(level)) block->add(transformer(ch));
      if (level > 0 && r == config.num_res_blocks) block->add(Upsample(ch));
      up_.push_back(block);
      output_blocks->push_back(block);
    }
  }

  out_norm_ = nn::GroupNorm(nn::GroupNormOptions(groups, ch).eps(1e-5));
  out_conv_ = nn::Conv2d(nn::Conv2dOptions(ch, config.out_channels, 3).padding(1));
  out = register_module("out", nn::Sequential(out_norm_, nn::SiLU(), out_conv_));

  int next_self = 0, next_cross = 0;
  auto number = [&](const UNetBlock& block, const char* place) {
    for (auto& t : block->transformers()) t->assign_sites(place, next_self, next_cross);
  };
  for (const auto& b : down_) number(b, "down");
  number(middle_block, "mid");
  for (const auto& b : up_) number(b, "up");
  num_attention_layers_ = next_self;
}

torch::Tensor UNetModelImpl::forward(const torch::Tensor& x, const torch::Tensor& timesteps,
                                     const torch::Tensor& context_in, const torch::Tensor& conv_in_addition) {
  if (x.dim() != 4 || x.size(1) != config_.in_channels)
    throw Error("UNet: input latent has shape " + shape_str(x.sizes()) + ", expected [B, " +
                std::to_string(config_.in_channels) + ", h, w]");
  const int64_t batch = x.size(0);
  auto t = timesteps.reshape({-1}).to(x.device());
  if (t.size(0) == 1 && batch > 1) t = t.expand({batch});
  if (t.size(0) != batch)
    throw Error("UNet: " + std::to_string(t.size(0)) + " timesteps for a batch of " + std::to_string(batch));
  if (!context_in.defined() || context_in.dim() != 3 || context_in.size(2) != config_.context_dim ||
      (context_in.size(0) != batch && context_in.size(0) != 1))
    throw Error("UNet: context has shape " + (context_in.defined() ? shape_str(context_in.sizes()) : "(none)") +
                ", expected [" + std::to_string(batch) + ", tokens, " + std::to_string(config_.context_dim) + "]");
  auto context = context_in.size(0) == batch ? context_in : context_in.expand({batch, -1, -1});

  const bool checkpointed = config_.use_checkpoint && is_training() && torch::GradMode::is_enabled();
  auto tap = [&](const char* name, const torch::Tensor& v) {
    if (tap_) tap_(name, v);
  };

  auto t_emb = timestep_embedding(t, config_.model_channels).to(x.scalar_type());
  tap("time_proj", t_emb);
  auto emb = time_embed->forward(t_emb);
  tap("time_embedding", emb);

  auto h = conv_in_(channels_last_ ? x.contiguous(at::MemoryFormat::ChannelsLast) : x);
  if (conv_in_addition.defined()) {
    const auto& a = conv_in_addition;
    if (a.dim() != 4 || (a.size(0) != batch && a.size(0) != 1) || a.sizes().slice(1) != h.sizes().slice(1))
      throw Error("UNet: conv_in_addition has shape " + shape_str(a.sizes()) + " but conv_in's output is " +
                  shape_str(h.sizes()));
    h.add_(a);
  }
  tap("conv_in", h);

  std::vector<torch::Tensor> skips{h};
  const int64_t levels = static_cast<int64_t>(config_.channel_mult.size());
  size_t k = 0;
  for (int64_t level = 0; level < levels; ++level) {
    const int64_t n = config_.num_res_blocks + (level != levels - 1 ? 1 : 0);
    for (int64_t i = 0; i < n; ++i) {
      h = down_[k++]->forward(h, emb, context, call_, checkpointed);
      skips.push_back(h);
    }
    tap(("down_blocks." + std::to_string(level)).c_str(), h);
  }

  h = middle_block->forward(h, emb, context, call_, checkpointed);
  tap("mid_block", h);

  k = 0;
  for (int64_t level = levels - 1; level >= 0; --level) {
    for (int64_t i = 0; i <= config_.num_res_blocks; ++i) {
      h = torch::cat({h, skips.back()}, 1);
      skips.pop_back();
      c10::optional<std::vector<int64_t>> up_size;
      if (!skips.empty()) up_size = std::vector<int64_t>{skips.back().size(2), skips.back().size(3)};
      h = up_[k++]->forward(h, emb, context, call_, checkpointed, up_size);
    }
    tap(("up_blocks." + std::to_string(levels - 1 - level)).c_str(), h);
  }

  h = out_norm_(h);
  tap("conv_norm_out", h);
  // A tap may keep the normalised tensor, so it is not overwritten in place then.
  h = out_conv_(tap_ ? torch::silu(h) : silu_on_temporary(h));
  tap("conv_out", h);
  return channels_last_ ? h.contiguous() : h;
}

void UNetModelImpl::set_channels_last(bool on) {
  torch::NoGradGuard no_grad;
  const auto format = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& p : parameters())
    if (p.dim() == 4 && p.numel() > 0) p.set_data(p.contiguous(format));
  channels_last_ = on;
}

}  // namespace sine
