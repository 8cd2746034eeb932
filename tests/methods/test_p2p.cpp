// Prompt-to-Prompt: token lookup, word-swap and refine mappers, schedules, the controller's
// edits, the attention store and LocalBlend's mask math.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "methods/attention_layout.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/inversion/null_text_inversion.h"
#include "methods/p2p/attention_store.h"
#include "methods/p2p/local_blend.h"
#include "methods/p2p/prompt_to_prompt.h"
#include "methods/p2p/word_alignment.h"
#include "specref_test_util.h"

namespace sine {
namespace {

const std::string kVocab = std::string(SINE_SHARED_DIR) + "/data/clip/bpe_simple_vocab_16e6.txt.gz";

const ClipTokenizer& clip() {
  static ClipTokenizer t = ClipTokenizer::from_bpe_gz(kVocab);
  return t;
}

// A word CLIP splits into several tokens.
std::string multi_token_word() {
  for (const char* w : {"hedgehog", "axolotl", "quokka", "capybara", "zebrafish", "xylophone"})
    if (clip().bpe_ids(w).size() > 1) return w;
  return "";
}

TEST(WordIndices, CountsBosAndFollowsWords) {
  EXPECT_EQ(p2p::word_indices(clip(), "a cat sitting on a car", "cat"), (std::vector<int64_t>{2}));
  EXPECT_EQ(p2p::word_indices(clip(), "a cat sitting on a car", "a"), (std::vector<int64_t>{1, 5}));
  EXPECT_TRUE(p2p::word_indices(clip(), "a cat sitting on a car", "dog").empty());
  // SpecRef's variant turns ',' and '.' into spaces first.
  EXPECT_EQ(p2p::word_indices(clip(), "a cat,sitting.", "sitting"), (std::vector<int64_t>{3}));
  // ... and then splits on single spaces like Python's split(" "): "a cat, sitting" has an empty
  // word, whose zero length advances the pointer past "sitting" before its token (faithful quirk).
  EXPECT_TRUE(p2p::word_indices(clip(), "a cat, sitting", "sitting").empty());
  const std::string w = multi_token_word();
  ASSERT_FALSE(w.empty());
  const int64_t k = static_cast<int64_t>(clip().bpe_ids(w).size());
  std::vector<int64_t> expect;
  for (int64_t i = 0; i < k; ++i) expect.push_back(2 + i);
  EXPECT_EQ(p2p::word_indices(clip(), "a " + w + " riding a bike", w), expect);
  EXPECT_EQ(p2p::word_indices(clip(), "a " + w + " riding a bike", "riding"), (std::vector<int64_t>{2 + k}));
}

TEST(WordSwapMapper, OneToOneSwap) {
  auto m = p2p::replacement_mapper(clip(), "a cat sitting on a car", "a dog sitting on a car");
  ASSERT_EQ(m.sizes(), (c10::IntArrayRef{77, 77}));
  EXPECT_TRUE(torch::equal(m, torch::eye(77)));  // same positions: identity, the swap maps 2 -> 2
}

TEST(WordSwapMapper, UnequalTokenCountsSpreadAndMisalign) {
  const std::string w = multi_token_word();
  ASSERT_FALSE(w.empty());
  const int64_t k = static_cast<int64_t>(clip().bpe_ids(w).size());
  auto m = p2p::replacement_mapper(clip(), "a cat riding a bike", "a " + w + " riding a bike");
  auto expect = torch::zeros({77, 77});
  expect[0][0] = 1;
  expect[1][1] = 1;
  for (int64_t j = 0; j < k; ++j) expect[2][2 + j] = 1.0f / k;
  // After the last swap the notebook sets M[j, j] (not M[i, j]) for the remaining positions.
  for (int64_t j = 2 + k; j < 77; ++j) expect[j][j] = 1;
  EXPECT_TRUE(torch::allclose(m, expect));
  EXPECT_THROW(p2p::replacement_mapper(clip(), "a cat", "a big dog"), Error);
}

TEST(RefineMapper, NeedlemanWunschHandCases) {
  // Insertion: [S a cat E] -> [S a big cat E].
  EXPECT_EQ(p2p::align_sequences({10, 1, 2, 11}, {10, 1, 7, 2, 11}), (std::vector<int64_t>{0, 1, -1, 2, 3}));
  // Substitution: gaps (0) beat a mismatch (-1), so the new token maps to -1.
  EXPECT_EQ(p2p::align_sequences({10, 1, 2, 11}, {10, 1, 3, 11}), (std::vector<int64_t>{0, 1, -1, 3}));
  // Deletion: [S a big cat E] -> [S a cat E].
  EXPECT_EQ(p2p::align_sequences({10, 1, 7, 2, 11}, {10, 1, 2, 11}), (std::vector<int64_t>{0, 1, 3, 4}));
  auto r = p2p::refine_mapper(clip(), "a cat sitting on a car", "a big cat sitting on a car");
  const int64_t n = 9;  // S a big cat sitting on a car E
  std::vector<int64_t> expect{0, 1, -1, 2, 3, 4, 5, 6, 7};
  for (int64_t j = 0; j < n; ++j) {
    EXPECT_EQ(r.mapper[j].item<int64_t>(), expect[j]) << j;
    EXPECT_EQ(r.alphas[j].item<float>(), expect[j] == -1 ? 0.0f : 1.0f) << j;
  }
  for (int64_t j = n; j < 77; ++j) {
    EXPECT_EQ(r.mapper[j].item<int64_t>(), j);
    EXPECT_EQ(r.alphas[j].item<float>(), 1.0f);
  }
}

TEST(Schedules, AlphaRowsAndWordOverrides) {
  auto a = p2p::cross_replace_alpha(clip(), "a dog sitting on a car", 50, {0.0, 0.8}, {});
  ASSERT_EQ(a.sizes(), (c10::IntArrayRef{51, 77}));
  EXPECT_EQ(a.narrow(0, 0, 40).min().item<float>(), 1.0f);  // int(0.8*51) = 40
  EXPECT_EQ(a.narrow(0, 40, 11).max().item<float>(), 0.0f);
  auto b = p2p::cross_replace_alpha(clip(), "a dog sitting on a car", 50, {0.0, 0.8}, {{"dog", {0.2, 0.5}}});
  for (int64_t r = 0; r < 51; ++r) {
    EXPECT_EQ(b[r][2].item<float>(), (r >= 10 && r < 25) ? 1.0f : 0.0f) << r;  // int(.2*51)=10, int(.5*51)=25
    EXPECT_EQ(b[r][3].item<float>(), r < 40 ? 1.0f : 0.0f) << r;
  }
  EXPECT_EQ(p2p::self_replace_window(50, {0.0, 0.6}), (std::pair<int64_t, int64_t>{0, 30}));
  EXPECT_EQ(p2p::self_replace_window(50, {0.2, 0.4}), (std::pair<int64_t, int64_t>{10, 20}));
}

torch::Tensor random_probs(int64_t b, int64_t heads, int64_t n, int64_t m) {
  return torch::softmax(torch::randn({b, heads, n, m}) * 3, -1);
}

TEST(Controller, EditsOnlyTheTargetCondAtTheRightStepsAndLayers) {
  torch::manual_seed(0);
  p2p::ControllerConfig c;
  c.num_steps = 50;
  const std::string src = "a cat riding a bike", tgt = "a dog riding a bike";
  p2p::Controller ctl(clip(), src, tgt, c, 32 * 32);
  auto mapper = p2p::replacement_mapper(clip(), src, tgt);
  // Cross-attention inside the window: target = base @ mapper; uncond and source untouched.
  auto probs = random_probs(4, 2, 16 * 16, 77);
  auto out = ctl.on_probs(test::make_site(10, 4, true, 16), probs.clone());
  EXPECT_TRUE(torch::equal(out.narrow(0, 0, 3), probs.narrow(0, 0, 3)));
  EXPECT_TRUE(torch::allclose(out[3], torch::matmul(probs[2], mapper), 1e-6, 1e-6));
  // Outside the window (step 40: alpha row 40 is 0) nothing changes.
  out = ctl.on_probs(test::make_site(40, 4, true, 16), probs.clone());
  EXPECT_TRUE(torch::equal(out, probs));
  // Self-attention: source maps copied into the target before step 30 for N <= 32^2 only.
  auto self = random_probs(4, 2, 16 * 16, 16 * 16);
  out = ctl.on_probs(test::make_site(29, 4, false, 16), self.clone());
  EXPECT_TRUE(torch::equal(out[3], self[2]));
  EXPECT_TRUE(torch::equal(out.narrow(0, 0, 3), self.narrow(0, 0, 3)));
  EXPECT_TRUE(torch::equal(ctl.on_probs(test::make_site(30, 4, false, 16), self.clone()), self));
  EXPECT_FALSE(ctl.needs_probs(test::make_site(0, 0, false, 64)));  // 64^2 self maps: neither edited nor stored
  EXPECT_TRUE(ctl.needs_probs(test::make_site(0, 0, true, 64)));
}

TEST(Controller, RefineAndReweight) {
  torch::manual_seed(1);
  const std::string src = "a cat sitting on a car", tgt = "a big cat sitting on a car";
  p2p::ControllerConfig c;
  c.kind = p2p::EditKind::refine;
  c.equalizer = {{"big", 2.0f}};
  p2p::Controller ctl(clip(), src, tgt, c, 32 * 32);
  auto probs = random_probs(4, 2, 8 * 8, 77);
  auto out = ctl.on_probs(test::make_site(0, 1, true, 8), probs.clone());
  auto r = p2p::refine_mapper(clip(), src, tgt);
  auto idx = torch::where(r.mapper < 0, torch::full_like(r.mapper, 76), r.mapper);
  auto expect = (probs[2].index_select(-1, idx) * r.alphas + probs[3] * (1 - r.alphas));
  auto eq = torch::ones({77});
  eq[2] = 2.0f;
  expect = expect * eq;
  EXPECT_TRUE(torch::allclose(out[3], expect, 1e-6, 1e-6));
  // Position 2 ("big") is new: its map is the target's own, doubled.
  EXPECT_TRUE(torch::allclose(out[3].select(-1, 2), probs[3].select(-1, 2) * 2, 1e-6, 1e-6));
}

TEST(AttentionStore, RunningSumAndAverage) {
  p2p::AttentionStore store(8 * 8);
  auto a = random_probs(2, 2, 64, 77), b = random_probs(2, 2, 64, 77);
  store.record(true, 1, a);
  store.record(true, 2, random_probs(2, 2, 256, 77));  // too large: not stored
  store.end_step();
  store.record(true, 1, b);
  store.end_step();
  EXPECT_EQ(store.steps(), 2);
  EXPECT_FALSE(store.sum(true, 2).defined());
  EXPECT_TRUE(torch::allclose(store.sum(true, 1), a.mean(1) + b.mean(1)));
  EXPECT_TRUE(torch::allclose(store.average(true, 1), (a.mean(1) + b.mean(1)) / 2));
}

TEST(LocalBlend, MaskMath) {
  auto tok = test::tiny_tokenizer();
  const std::string src = "a red circle in the center on a white background";
  const std::string tgt = "a blue star in the center on a white background";
  EditLayerRules rules;
  rules.latent_h = rules.latent_w = 16;
  rules.blend_h = rules.blend_w = 8;
  rules.blend_layers = {1, 4};
  rules.store_max_pixels = 64;
  p2p::LocalBlendConfig c;
  c.source_words = {"circle"};
  c.target_words = {"star"};
  c.start = 0.2;
  p2p::LocalBlend lb(*tok, src, tgt, c, rules, 10);
  const int64_t circle = p2p::word_indices(*tok, src, "circle")[0], star = p2p::word_indices(*tok, tgt, "star")[0];
  EXPECT_EQ(lb.word_alpha()[0][circle].item<float>(), 1.0f);
  EXPECT_EQ(lb.word_alpha()[1][star].item<float>(), 1.0f);
  EXPECT_EQ(lb.word_alpha().sum().item<float>(), 2.0f);
  // Source attends at map pixel (1,1), target at (6,5).
  p2p::AttentionStore store(64);
  for (int layer : {1, 4}) {
    auto maps = torch::zeros({2, 2, 64, 77});
    maps[0].select(1, 1 * 8 + 1).select(-1, circle).fill_(1.0);
    maps[1].select(1, 6 * 8 + 5).select(-1, star).fill_(1.0);
    maps[1].select(1, 0).select(-1, star).fill_(0.2);  // below th after normalisation
    store.record(true, layer, maps);
  }
  store.end_step();
  auto mask = lb.mask(store, 16, 16);
  ASSERT_EQ(mask.sizes(), (c10::IntArrayRef{2, 1, 16, 16}));
  // 3x3 max pool at 8x8 -> 3x3 cells, nearest x2 -> 6x6 pixel block.
  auto expect0 = torch::zeros({16, 16}, torch::kBool);
  expect0.narrow(0, 0, 6).narrow(1, 0, 6).fill_(true);
  auto expect1 = torch::zeros({16, 16}, torch::kBool);
  expect1.narrow(0, 10, 6).narrow(1, 8, 6).fill_(true);
  EXPECT_TRUE(torch::equal(mask[0][0], expect0));
  EXPECT_TRUE(torch::equal(mask[1][0], expect0.logical_or(expect1)));  // mask_1 = mask_0 OR mask_1
  // Blending: outside the mask the target latent becomes the source's; first int(0.2*10)=2 calls pass through.
  auto x = torch::randn({2, 4, 16, 16});
  EXPECT_TRUE(torch::equal(lb(x, store), x));
  EXPECT_TRUE(torch::equal(lb(x, store), x));
  auto y = lb(x, store);
  auto m = expect0.logical_or(expect1).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(y[1], x[0] + m * (x[1] - x[0])));
  EXPECT_TRUE(torch::equal(y[0], x[0]));
  // Substruct removes the words' (unpooled) region.
  c.source_substruct = {"circle"};
  c.target_substruct = {};
  p2p::LocalBlend sub(*tok, src, tgt, c, rules, 10);
  auto ms = sub.mask(store, 16, 16);
  auto hole = torch::zeros({16, 16}, torch::kBool);
  hole.narrow(0, 2, 2).narrow(1, 2, 2).fill_(true);
  EXPECT_TRUE(torch::equal(ms[1][0], expect0.logical_or(expect1).logical_and(hole.logical_not())));
  c.target_words = {"dog"};
  EXPECT_THROW(p2p::LocalBlend(*tok, src, tgt, c, rules, 10), Error);
}

TEST(EditLoop, HooksSeeEveryStepAndTheStoreFills) {
  Pipeline pipe = test::tiny_pipeline(2);
  const std::string src = "a red circle in the center on a white background";
  const std::string tgt = "a blue star in the center on a white background";
  const auto rules = edit_layer_rules(pipe.config().unet, 16, 16);
  p2p::ControllerConfig c;
  c.num_steps = 4;
  p2p::Controller ctl(pipe.tokenizer(), src, tgt, c, rules.store_max_pixels);
  std::set<std::pair<int, int>> seen;  // (step, cross layer)
  ctl.observer = [&](const AttentionSite& s, const torch::Tensor& p) {
    if (s.is_cross) seen.insert({s.step, s.layer});
    EXPECT_EQ(p.size(0), 4);
  };
  p2p::EditOptions o;
  o.steps = 4;
  auto z = torch::randn({1, 4, 16, 16});
  auto x = p2p::edit_latents(pipe, src, tgt, z, &ctl, &ctl.store(), nullptr, {}, o);
  EXPECT_EQ(x.sizes(), (c10::IntArrayRef{2, 4, 16, 16}));
  EXPECT_EQ(ctl.store().steps(), 4);
  EXPECT_EQ(seen.size(), 4u * 7u);  // every cross layer at every step
  // Stored: cross and self maps with N <= 8x8 (the 8x8 and 4x4 layers), not the 16x16 ones.
  for (const auto& [key, sum] : ctl.store().sums()) EXPECT_LE(sum.size(1), 64);
  EXPECT_TRUE(ctl.store().sum(true, rules.blend_layers[0]).defined());
  EXPECT_EQ(pipe.model()->unet->attention_hook(), nullptr);  // restored
  // Without any edit (kind none) both branches see the same attention: same prompts give the same latents.
  p2p::ControllerConfig none;
  none.kind = p2p::EditKind::none;
  none.num_steps = 4;
  p2p::Controller idle(pipe.tokenizer(), src, src, none, rules.store_max_pixels);
  auto same = p2p::edit_latents(pipe, src, src, z, &idle, &idle.store(), nullptr, {}, o);
  EXPECT_TRUE(torch::allclose(same[0], same[1], 1e-5, 1e-5));
}

// P2P on a real image, put together: the source branch, fed the null-text embeddings φ_t as its
// unconditional context at guidance 7.5, is exactly DDIM from z*_T with those embeddings (and lands
// nearer z*_0 than with the plain "" context); LocalBlend starts after int(start·T) steps and then
// keeps the target equal to the source outside its mask.
TEST(EditLoop, NullTextSourceBranchAndLocalBlendAtTheirSteps) {
  Pipeline pipe = test::tiny_pipeline(4);
  const std::string src = "a red circle in the center on a white background";
  const std::string tgt = "a blue circle in the center on a white background";
  torch::manual_seed(11);
  auto z0 = 0.5 * torch::randn({1, 4, 16, 16});
  auto cond = pipe.encode_prompt(src), uncond = pipe.encode_prompt("");
  InversionOptions inv;
  inv.steps = 4;
  auto latents = ddim_invert(pipe, z0, cond, inv);
  NullTextOptions nt;
  nt.inner_steps = 20;
  auto phi = null_text_inversion(pipe, latents, cond, uncond, inv, nt).embeddings;
  p2p::ReconstructionPath path;
  path.null_embeddings = phi;
  p2p::EditOptions o;
  o.steps = 4;
  o.cfg_scale = 7.5;
  const auto rules = edit_layer_rules(pipe.config().unet, 16, 16);
  auto run = [&](p2p::LocalBlend* blend) {
    p2p::ControllerConfig c;
    c.num_steps = 4;
    p2p::Controller ctl(pipe.tokenizer(), src, tgt, c, rules.store_max_pixels);
    return p2p::edit_latents(pipe, src, tgt, latents.back(), &ctl, &ctl.store(), blend, path, o);
  };
  auto plain = run(nullptr);
  auto rebuilt = ddim_sample(pipe, latents.back(), cond, uncond, 7.5, inv, phi);
  EXPECT_TRUE(torch::allclose(plain[0], rebuilt[0], 1e-4, 1e-5)) << (plain[0] - rebuilt[0]).abs().max().item<double>();
  auto without_phi = ddim_sample(pipe, latents.back(), cond, uncond, 7.5, inv);
  EXPECT_LT((rebuilt - z0).abs().mean().item<double>(), (without_phi - z0).abs().mean().item<double>());

  auto blend_config = p2p::LocalBlendConfig::for_prompts("red:blue", src, tgt, 0.9, 0.5);  // blends after step 2
  p2p::LocalBlend blend(pipe.tokenizer(), src, tgt, blend_config, rules, 4);
  auto blended = run(&blend);
  EXPECT_EQ(blend.counter(), 4);
  EXPECT_TRUE(torch::equal(blended[0], plain[0]));  // the source branch is never blended
  ASSERT_TRUE(blend.last_mask().defined());
  auto outside = blend.last_mask()[1].logical_not().expand({4, 16, 16});
  ASSERT_GT(outside.sum().item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(blended[1].masked_select(outside), blended[0].masked_select(outside)));
  EXPECT_FALSE(torch::allclose(blended[1], plain[1]));
  // start 1: never past int(1·T) = T, so the edit is the unblended one.
  p2p::LocalBlend never(pipe.tokenizer(), src, tgt, p2p::LocalBlendConfig::for_prompts("red:blue", src, tgt, 0.3, 1.0),
                        rules, 4);
  EXPECT_TRUE(torch::allclose(run(&never), plain, 1e-6, 1e-7));
}

}  // namespace
}  // namespace sine
