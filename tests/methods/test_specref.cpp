// SpecRef: layer rules (SD 1.5 gives the official numbers), the K/V cache, SR-attention against a
// hand-computed masked attention, mask ablations, M_t accumulation, and the whole method on a
// random-weight tiny pipeline.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

#include "core/error.h"
#include "methods/attention_layout.h"
#include "methods/specref/specref.h"
#include "methods/p2p/word_alignment.h"
#include "models/presets.h"
#include "specref_test_util.h"

namespace sine {
namespace {

TEST(AttentionLayout, SD15GivesTheOfficialLayers) {
  const auto c = model_config_preset("sd15").unet;
  auto layers = attention_layout(c, 64, 64);
  ASSERT_EQ(layers.size(), 16u);
  const std::vector<int64_t> sizes{64, 64, 32, 32, 16, 16, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64};
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(layers[i].height, sizes[i]) << i;
  EXPECT_EQ(layers[6].place, "mid");
  auto rules = edit_layer_rules(c, 64, 64);
  EXPECT_EQ(rules.sr_layers, (std::vector<int>{10, 11, 12, 13, 14, 15}));  // speckv_layer [10, 16)
  EXPECT_EQ(rules.blend_layers, (std::vector<int>{4, 5, 7, 8, 9}));       // down_cross[2:4] + up_cross[:3]
  EXPECT_EQ(rules.blend_h, 16);
  EXPECT_EQ(rules.store_max_pixels, 32 * 32);
  // The used part of the K/V store in fp16: layers 10-15, steps 4-49 (the spec's "1.0 GB fp16").
  EXPECT_EQ(specref::planned_cache_bytes(c, 64, 64, 4, 50), int64_t(46) * 3 * (1024 * 640 + 4096 * 320) * 2 * 2);
  // The whole fp32 store (16 layers x 50 steps) is the spec's 4.3 GB.
  int64_t full = 0;
  for (const auto& l : layers) full += 2 * l.height * l.width * l.channels * 4;
  EXPECT_NEAR(full * 50 / 1073741824.0, 4.3, 0.05);  // GiB, as the spec (88 MiB/step)
}

TEST(AttentionLayout, TinyRulesMatchTheSitesTheUNetReports) {
  Pipeline pipe = test::tiny_pipeline(3);
  auto rules = edit_layer_rules(pipe.config().unet, 16, 16);
  EXPECT_EQ(rules.sr_layers, (std::vector<int>{3, 4, 5, 6}));
  EXPECT_EQ(rules.blend_layers, (std::vector<int>{1, 3, 4}));
  EXPECT_EQ(rules.blend_h, 8);
  EXPECT_EQ(rules.store_max_pixels, 64);
  struct Recorder : AttentionHook {
    std::vector<AttentionSite> sites;
    void on_qkv(const AttentionSite& s, torch::Tensor&, torch::Tensor&, torch::Tensor&) override {
      if (!s.is_cross) sites.push_back(s);
    }
  } rec;
  {
    ScopedAttentionHook guard(pipe.model()->unet, &rec);
    torch::NoGradGuard ng;
    pipe.predict_eps(torch::randn({1, 4, 16, 16}), torch::tensor(10), pipe.encode_prompt(""));
  }
  auto layout = attention_layout(pipe.config().unet, 16, 16);
  ASSERT_EQ(rec.sites.size(), layout.size());
  for (size_t i = 0; i < layout.size(); ++i) {
    EXPECT_EQ(rec.sites[i].layer, layout[i].layer);
    EXPECT_EQ(rec.sites[i].place, layout[i].place);
    EXPECT_EQ(rec.sites[i].height, layout[i].height);
  }
}

// Hand loop: per head, per query, softmax over the masked keys.
torch::Tensor hand_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& ms, int64_t heads) {
  const int64_t n = q.size(0), m = k.size(0), c = q.size(1), d = c / heads;
  auto out = torch::zeros({n, c}, torch::kFloat64);
  auto q64 = q.to(torch::kFloat64), k64 = k.to(torch::kFloat64), v64 = v.to(torch::kFloat64);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> logits;
      double best = -1e300;
      for (int64_t j = 0; j < m; ++j) {
        if (ms[j].item<float>() < 0.5f) continue;
        double s = (q64[i].narrow(0, h * d, d) * k64[j].narrow(0, h * d, d)).sum().item<double>() / std::sqrt(double(d));
        logits.push_back(s);
        best = std::max(best, s);
      }
      double z = 0;
      for (double s : logits) z += std::exp(s - best);
      size_t idx = 0;
      for (int64_t j = 0; j < m; ++j) {
        if (ms[j].item<float>() < 0.5f) continue;
        out[i].narrow(0, h * d, d) += std::exp(logits[idx++] - best) / z * v64[j].narrow(0, h * d, d);
      }
    }
  return out.to(torch::kFloat32);
}

TEST(SRAttention, ReferenceAttentionEqualsHandComputedMaskedAttention) {
  torch::manual_seed(4);
  auto q = torch::randn({12, 8}), k = torch::randn({9, 8}), v = torch::randn({9, 8});
  auto ms = torch::tensor({1, 0, 0, 1, 1, 0, 1, 0, 0}, torch::kFloat32);
  auto got = specref::reference_attention(q, k, v, ms, 2);
  EXPECT_TRUE(torch::allclose(got, hand_attention(q, k, v, ms, 2), 1e-5, 1e-5));
  // Empty M_s: float32-min logits give a uniform average of V, never NaN.
  auto empty = specref::reference_attention(q, k, v, torch::zeros({9}), 2);
  EXPECT_FALSE(empty.isnan().any().item<bool>());
  EXPECT_TRUE(torch::allclose(empty, v.mean(0).expand({12, 8}), 1e-5, 1e-5));
}

TEST(SRAttention, TargetMapIsMinMaxNormalisedCumulativeMean) {
  auto sum = torch::zeros({4, 77});
  sum[0][5] = 2;
  sum[1][5] = 6;
  sum[3][6] = 4;  // other token: ignored
  auto m = specref::target_map(sum, 2, {5}, 2, 2);
  EXPECT_TRUE(torch::allclose(m, torch::tensor({1.0f / 3, 1.0f, 0.0f, 0.0f}).view({2, 2})));
  EXPECT_TRUE(torch::equal(specref::target_map(torch::zeros({4, 77}), 1, {5}, 2, 2), torch::zeros({2, 2})));
  // Layer masks: nearest resize and >= threshold.
  auto lm = specref::layer_mask(torch::tensor({0.0f, 0.5f, 0.49f, 1.0f}).view({2, 2}), 4, 4, 0.5, false);
  EXPECT_EQ(lm.sum().item<float>(), 8.0f);
  EXPECT_EQ(lm[0][2].item<float>(), 1.0f);
  EXPECT_EQ(lm[2][0].item<float>(), 0.0f);
}

struct SRFixture {
  EditLayerRules rules;
  specref::ReferenceKV cache;
  torch::Tensor k_ref, v_ref, ms_pixels;
  SRFixture() {
    rules.latent_h = rules.latent_w = 4;
    rules.blend_h = rules.blend_w = 2;
    rules.blend_layers = {1};
    rules.sr_layers = {5};
    rules.store_max_pixels = 4;
    torch::manual_seed(5);
    k_ref = torch::randn({16, 8});
    v_ref = torch::randn({16, 8});
    cache.put(7, 5, k_ref, v_ref);
    ms_pixels = torch::zeros({4, 4});
    ms_pixels.narrow(1, 0, 2).fill_(1.0);  // left half of the reference is the object
  }
};

// Feeds one cross map whose edited token (5) attends to the top-left 2x2 pixel only.
void feed_mt(specref::SRAttention& sr) {
  auto probs = torch::full({4, 2, 4, 77}, 1.0f / 77);
  probs[3].select(1, 0).select(-1, 5).fill_(0.9f);
  sr.on_probs(test::make_site(7, 1, true, 2), probs);
}

TEST(SRAttention, TouchesOnlyBatchElementThreeInsideMt) {
  SRFixture f;
  specref::SRConfig cfg;
  cfg.sr_start = 4;
  cfg.sr_end = 10;
  specref::SRAttention sr(nullptr, &f.cache, f.rules, cfg, {5}, f.ms_pixels);
  feed_mt(sr);
  auto q = torch::randn({4, 16, 8}), out = torch::randn({4, 16, 8});
  auto site = test::make_site(7, 5, false, 4);
  EXPECT_TRUE(sr.is_sr_site(site));
  EXPECT_FALSE(sr.needs_probs(site));
  auto res = sr.on_output(site, out.clone(), q, q, q);
  EXPECT_TRUE(torch::equal(res.narrow(0, 0, 3), out.narrow(0, 0, 3)));
  // M_t: map pixel (0,0) -> the top-left 2x2 of the 4x4 layer.
  auto mt = torch::zeros({4, 4});
  mt.narrow(0, 0, 2).narrow(1, 0, 2).fill_(1.0);
  auto ms_flat = f.ms_pixels.flatten();
  auto o_ref = hand_attention(q[3], f.k_ref.to(torch::kHalf).to(torch::kFloat32), f.v_ref.to(torch::kHalf).to(torch::kFloat32), ms_flat, 2);
  auto mcol = mt.flatten().unsqueeze(1);
  EXPECT_TRUE(torch::allclose(res[3], mcol * o_ref + (1 - mcol) * out[3], 1e-4, 1e-4));
  EXPECT_TRUE(torch::equal(res[3].index_select(0, torch::nonzero(mt.flatten() == 0).flatten()),
                           out[3].index_select(0, torch::nonzero(mt.flatten() == 0).flatten())));
  // Outside the SR steps or layers nothing happens.
  EXPECT_TRUE(torch::equal(sr.on_output(test::make_site(3, 5, false, 4), out.clone(), q, q, q), out));
  EXPECT_TRUE(torch::equal(sr.on_output(test::make_site(7, 4, false, 4), out.clone(), q, q, q), out));
  EXPECT_TRUE(torch::equal(sr.on_output(test::make_site(7, 5, true, 4), out.clone(), q, q, q), out));
}

TEST(SRAttention, AblationSwitchesChangeTheRightMasks) {
  SRFixture f;
  auto q = torch::randn({4, 16, 8}), out = torch::randn({4, 16, 8});
  auto site = test::make_site(7, 5, false, 4);
  auto kf = f.k_ref.to(torch::kHalf).to(torch::kFloat32), vf = f.v_ref.to(torch::kHalf).to(torch::kFloat32);
  auto mt = torch::zeros({4, 4});
  mt.narrow(0, 0, 2).narrow(1, 0, 2).fill_(1.0);
  auto run = [&](specref::MaskMode mode, const torch::Tensor& ms_pixels) {
    specref::SRConfig cfg;
    cfg.mask_mode = mode;
    specref::SRAttention sr(nullptr, &f.cache, f.rules, cfg, {5}, ms_pixels);
    feed_mt(sr);
    return sr.on_output(site, out.clone(), q, q, q)[3];
  };
  auto blend = [&](const torch::Tensor& m, const torch::Tensor& ms) {
    auto col = m.flatten().unsqueeze(1);
    return col * hand_attention(q[3], kf, vf, ms.flatten(), 2) + (1 - col) * out[3];
  };
  auto ones = torch::ones({4, 4});
  EXPECT_TRUE(torch::allclose(run(specref::MaskMode::both, f.ms_pixels), blend(mt, f.ms_pixels), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(run(specref::MaskMode::ms_only, f.ms_pixels), blend(ones, f.ms_pixels), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(run(specref::MaskMode::mt_only, f.ms_pixels), blend(mt, ones), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(run(specref::MaskMode::none, f.ms_pixels), blend(ones, ones), 1e-4, 1e-4));
  // An empty M_s yields finite values.
  EXPECT_FALSE(run(specref::MaskMode::both, torch::zeros({4, 4})).isnan().any().item<bool>());
  EXPECT_EQ(specref::parse_mask_mode("ms"), specref::MaskMode::ms_only);
  EXPECT_THROW(specref::parse_mask_mode("half"), Error);
}

// The options users give (CLI flags, server fields) become the method's config; every check names
// its field.
TEST(SpecRefOptions, ConfigFromOptionsAndChecksNamingTheField) {
  Pipeline pipe = test::tiny_pipeline(6);
  specref::SpecRefInputs in;
  in.source_prompt = "a red circle in the center on a white background";
  in.target_prompt = "a blue star in the center on a white background";
  in.edit_words = {"blue", "star"};
  specref::SpecRefOptions o;
  o.steps = 20;
  o.masks = "mt";
  o.blend_start = 0.4;
  const specref::SpecRefConfig c = o.config(pipe.tokenizer(), in);
  EXPECT_EQ(c.sr.sr_start, 4);
  EXPECT_EQ(c.sr.sr_end, 20);  // 0: to the last step
  EXPECT_EQ(c.sr.mask_mode, specref::MaskMode::mt_only);
  EXPECT_EQ(c.p2p.kind, p2p::EditKind::replace);  // same word count
  EXPECT_DOUBLE_EQ(c.p2p.cross_replace.second, 0.8);
  EXPECT_TRUE(c.local_blend);
  EXPECT_DOUBLE_EQ(c.blend.start, 0.4);
  auto field_of = [&](specref::SpecRefOptions bad, specref::SpecRefInputs inputs) {
    try {
      bad.config(pipe.tokenizer(), inputs);
    } catch (const Error& e) {
      const std::string m = e.what();
      return m.substr(0, m.find(':'));
    }
    return std::string();
  };
  specref::SpecRefOptions bad = o;
  bad.sr_end = 30;
  EXPECT_EQ(field_of(bad, in), "sr_start");
  bad = o;
  bad.threshold = 0;
  EXPECT_EQ(field_of(bad, in), "threshold");
  bad = o;
  bad.masks = "half";
  EXPECT_EQ(field_of(bad, in), "mask_mode");
  bad = o;
  bad.cross_replace = 1.5;
  EXPECT_EQ(field_of(bad, in), "cross_replace");
  auto words = in;
  words.edit_words = {"dog"};
  EXPECT_EQ(field_of(o, words), "edit_words");
  words.edit_words.clear();
  EXPECT_EQ(field_of(o, words), "edit_words");
}

TEST(SpecRef, CacheHoldsOnlyWhatIsUsedAndMatchesARegeneratedPass) {
  Pipeline pipe = test::tiny_pipeline(6);
  specref::SpecRefInputs in;
  torch::manual_seed(7);
  in.source = torch::randint(0, 255, {64, 64, 3}, torch::kUInt8);
  in.reference = torch::randint(0, 255, {64, 64, 3}, torch::kUInt8);
  in.source_prompt = "a red circle in the center on a white background";
  in.target_prompt = "a blue star in the center on a white background";
  in.edit_words = {"blue", "star"};
  specref::SpecRefConfig c;
  c.steps = 6;
  c.sr.sr_start = 2;
  c.sr.sr_end = 6;
  auto joint = specref::invert_jointly(pipe, in, c, false);
  ASSERT_EQ(joint.source_latents.size(), 7u);
  EXPECT_EQ(joint.cache.entries(), 4u * 4u);  // 4 SR layers x steps 2..5
  for (int layer : joint.rules.sr_layers)
    for (int64_t s = 0; s < 6; ++s) EXPECT_EQ(joint.cache.has(s, layer), s >= 2) << s << " " << layer;
  auto [k, v] = joint.cache.get(3, 6);
  EXPECT_EQ(k.scalar_type(), torch::kHalf);
  EXPECT_EQ(k.sizes(), (c10::IntArrayRef{256, 8}));
  // Regenerate: UNet(z_ref[steps-1-s], t_s, "") gives the same K (the exact alternative to caching).
  specref::ReferenceKV again;
  specref::KVRecorder rec(again, joint.rules.sr_layers, 6, 2, 6, 0);
  DDIMScheduler sched(c.ddim, 6);
  const int64_t s = 3, i = 6 - 1 - s;
  {
    ScopedAttentionHook guard(pipe.model()->unet, &rec);
    pipe.model()->unet->set_step(static_cast<int>(i));
    torch::NoGradGuard ng;
    pipe.predict_eps(joint.reference_latents[i], sched.timesteps()[s], pipe.encode_prompt(""));
  }
  EXPECT_TRUE(torch::allclose(again.get(s, 6).first.to(torch::kFloat32), k.to(torch::kFloat32), 1e-3, 1e-3));
  // fp16: 4 steps x (2 layers at 8x8 x 16 ch + 2 layers at 16x16 x 8 ch) x (K + V) x 2 bytes.
  EXPECT_EQ(joint.cache.bytes(), 4 * (2 * 64 * 16 + 2 * 256 * 8) * 2 * 2);
  EXPECT_EQ(joint.cache.bytes(), specref::planned_cache_bytes(pipe.config().unet, 16, 16, 2, 6));
}

TEST(SpecRef, EndToEndMasksAndAblationsMatter) {
  Pipeline pipe = test::tiny_pipeline(8);
  specref::SpecRefInputs in;
  torch::manual_seed(9);
  in.source = torch::randint(0, 255, {64, 64, 3}, torch::kUInt8);
  in.reference = torch::randint(0, 255, {64, 64, 3}, torch::kUInt8);
  in.source_prompt = "a red circle in the center on a white background";
  in.target_prompt = "a blue star in the center on a white background";
  in.edit_words = {"star"};
  in.ms_pixels = torch::zeros({64, 64});
  in.ms_pixels.narrow(0, 16, 32).narrow(1, 16, 32).fill_(1.0);
  specref::SpecRefConfig c;
  c.steps = 5;
  c.sr.sr_start = 1;
  c.sr.sr_end = 5;
  c.blend.source_words = {"red", "circle"};
  c.blend.target_words = {"blue", "star"};
  auto joint = specref::invert_jointly(pipe, in, c, false);
  auto both = specref::edit_with_reference(pipe, joint, in, c, false);
  EXPECT_EQ(both.result.sizes(), (c10::IntArrayRef{64, 64, 3}));
  EXPECT_FALSE(both.ms_derived);
  ASSERT_TRUE(both.mt.defined());
  ASSERT_TRUE(both.blend_mask.defined());
  auto plain = c;
  plain.sr.sr_start = plain.sr.sr_end = 5;  // no SR steps: plain P2P
  auto p2p_only = specref::edit_with_reference(pipe, joint, in, plain, false);
  // SR never touches the source branch: equal up to the rounding of the attention kernel, which
  // differs between SR's explicit path and the fused one (SDPA on LibTorch 2.x) -- at most one
  // uint8 level on a pixel.
  EXPECT_LE((p2p_only.source_recon.to(torch::kInt) - both.source_recon.to(torch::kInt)).abs().max().item<int>(), 1);
  auto none = c;
  none.sr.mask_mode = specref::MaskMode::none;
  auto r_none = specref::edit_with_reference(pipe, joint, in, none, false);
  EXPECT_FALSE(torch::equal(r_none.result, p2p_only.result));
  EXPECT_FALSE(torch::equal(r_none.result, both.result));
  // No M_s given: derived from the reference's cross-attention, and said so.
  auto derived_in = in;
  derived_in.ms_pixels = torch::Tensor();
  auto derived = specref::edit_with_reference(pipe, joint, derived_in, c, false);
  EXPECT_TRUE(derived.ms_derived);
  ASSERT_TRUE(derived.ms_pixels.defined());
  EXPECT_EQ(derived.ms_pixels.sizes(), (c10::IntArrayRef{64, 64}));
  EXPECT_GE(derived.ms_pixels.min().item<float>(), 0.0f);
  EXPECT_LE(derived.ms_pixels.max().item<float>(), 1.0f);
  EXPECT_GT(derived.ms_pixels.max().item<float>(), 0.5f);  // min-max normalised, then bilinear
  in.edit_words = {"dog"};
  EXPECT_THROW(specref::edit_with_reference(pipe, joint, in, c, false), Error);
}

}  // namespace
}  // namespace sine
