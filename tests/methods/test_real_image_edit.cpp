// Real-image Prompt-to-Prompt as a library: invert_image / the inversion file / p2p_edit_image,
// checked against the building blocks called by hand (ddim_invert, null_text_inversion, edit_latents).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "methods/inversion/ddim_inversion.h"
#include "methods/inversion/null_text_inversion.h"
#include "methods/p2p/real_image_edit.h"
#include "specref_test_util.h"

namespace sine {
namespace {

namespace fs = std::filesystem;

const std::string kSource = "a cat sitting on a car";
const std::string kTarget = "a dog sitting on a car";

class RealImageEdit : public ::testing::Test {
 protected:
  Pipeline pipe = test::tiny_pipeline(2);
  torch::Tensor image = [] {
    torch::manual_seed(5);
    return torch::randint(0, 256, {64, 64, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  }();
  std::string dir = [] {
    auto d = fs::path(testing::TempDir()) / ("real_image_edit_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d.string();
  }();
  ~RealImageEdit() override { fs::remove_all(dir); }
};

TEST_F(RealImageEdit, InvertImageIsDdimInversionThenNullTextOfTheEncodedImage) {
  InvertConfig c;
  c.prompt = kSource;
  c.steps = 4;
  c.null_text = true;
  c.inner_steps = 2;
  std::vector<std::string> stages;
  int64_t steps_heard = 0;
  auto r = invert_image(pipe, image, c, false, [&](const std::string& s, int64_t) { stages.push_back(s); },
                        [&](int64_t, int64_t) { ++steps_heard; });
  EXPECT_EQ(stages, (std::vector<std::string>{"ddim invert", "null-text"}));
  EXPECT_EQ(steps_heard, 8);

  // The same by hand.
  InversionOptions inv;
  inv.steps = 4;
  inv.ddim = DDIMConfig::null_text_inversion();
  auto z0 = pipe.encode_image(image);
  auto cond = pipe.encode_prompt(kSource), uncond = pipe.encode_prompt("");
  auto latents = ddim_invert(pipe, z0, cond, inv);
  ASSERT_EQ(r.inversion.latents.size(), latents.size());
  for (size_t i = 0; i < latents.size(); ++i) EXPECT_TRUE(torch::equal(r.inversion.latents[i], latents[i])) << i;
  NullTextOptions nt;
  nt.inner_steps = 2;
  auto phi = null_text_inversion(pipe, latents, cond, uncond, inv, nt).embeddings;
  ASSERT_EQ(r.inversion.null_embeddings.size(), 4u);
  for (size_t i = 0; i < phi.size(); ++i) EXPECT_TRUE(torch::allclose(r.inversion.null_embeddings[i], phi[i])) << i;
  auto recon = pipe.decode_latents(ddim_sample(pipe, latents.back(), cond, uncond, 7.5, inv, phi));
  EXPECT_TRUE(torch::equal(r.reconstruction, from_model_output(recon[0])));
  EXPECT_NEAR(r.psnr_null_text, psnr(recon, to_model_input(image)), 1e-6);
  EXPECT_NEAR(r.psnr_vae, psnr(pipe.decode_latents(z0), to_model_input(image)), 1e-6);
  EXPECT_GT(r.adam_steps, 0);
}

TEST_F(RealImageEdit, InversionFileRoundTripsAndBadFilesNameTheProblem) {
  InvertConfig c;
  c.prompt = kSource;
  c.steps = 3;
  c.schedule = "specref";
  auto r = invert_image(pipe, image, c, false);
  r.inversion.null_embeddings = {torch::randn({1, 77, 16}), torch::randn({1, 77, 16}), torch::randn({1, 77, 16})};
  const std::string path = dir + "/inv.safetensors";
  save_inversion(path, r.inversion);
  auto back = load_inversion(path);
  EXPECT_EQ(back.prompt, kSource);
  EXPECT_EQ(back.schedule, "specref");
  EXPECT_EQ(back.steps(), 3);
  EXPECT_TRUE(back.ddim().set_alpha_to_one);
  for (size_t i = 0; i < back.latents.size(); ++i) EXPECT_TRUE(torch::equal(back.latents[i], r.inversion.latents[i]));
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(back.null_embeddings[i], r.inversion.null_embeddings[i]));
  EXPECT_EQ(SafeTensors::open(path).metadata().at("format"), "sine-inversion");

  auto expect_error = [](const std::string& file, const std::string& words) {
    try {
      load_inversion(file);
      ADD_FAILURE() << file << " loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
  };
  expect_error(dir + "/missing.safetensors", "no such file");
  save_safetensors(dir + "/other.safetensors", {{"latents", torch::zeros({3, 4, 2, 2})}}, {{"format", "sine-finetune"}});
  expect_error(dir + "/other.safetensors", "not an inversion file");
  save_safetensors(dir + "/flat.safetensors", {{"latents", torch::zeros({3, 4})}});
  expect_error(dir + "/flat.safetensors", "[steps+1, 4, h, w]");
  save_safetensors(dir + "/phi.safetensors",
                   {{"latents", torch::zeros({3, 4, 2, 2})}, {"null_embeddings", torch::zeros({5, 77, 16})}});
  expect_error(dir + "/phi.safetensors", "one per step");
  save_safetensors(dir + "/sched.safetensors", {{"latents", torch::zeros({3, 4, 2, 2})}}, {{"schedule", "cosine"}});
  expect_error(dir + "/sched.safetensors", "unknown schedule");
}

TEST_F(RealImageEdit, EditFromASavedInversionEqualsEditingWithInversionInside) {
  P2PEditConfig c;
  c.source = kSource;
  c.target = kTarget;
  c.steps = 4;
  c.local_blend = true;
  c.path = "latents";
  std::vector<std::string> stages;
  auto inside = p2p_edit_image(pipe, image, c, nullptr, false,
                               [&](const std::string& s, int64_t) { stages.push_back(s); });
  EXPECT_EQ(stages, (std::vector<std::string>{"ddim invert", "p2p edit"}));
  EXPECT_EQ(inside.controller.kind, p2p::EditKind::replace);  // as many words: auto picks the word swap
  EXPECT_TRUE(inside.blended);
  ASSERT_TRUE(inside.blend_mask.defined());
  EXPECT_EQ(inside.blend_mask.sizes(), (torch::IntArrayRef{64, 64}));

  InvertConfig ic;
  ic.prompt = kSource;
  ic.steps = 4;
  const std::string path = dir + "/inv.safetensors";
  save_inversion(path, invert_image(pipe, image, ic, false).inversion);
  auto inversion = load_inversion(path);
  stages.clear();
  auto outside = p2p_edit_image(pipe, image, c, &inversion, false,
                                [&](const std::string& s, int64_t) { stages.push_back(s); });
  EXPECT_EQ(stages, (std::vector<std::string>{"p2p edit"}));
  EXPECT_TRUE(torch::equal(inside.edited, outside.edited));
  EXPECT_TRUE(torch::equal(inside.reconstruction, outside.reconstruction));
  // The latents path overwrites the source branch with z*_t down to z*_0 = E(image): the source
  // comes back as the VAE round trip.
  const double psnr_vae = psnr(pipe.decode_latents(pipe.encode_image(image)), to_model_input(image));
  EXPECT_NEAR(inside.psnr_reconstruction, psnr_vae, 0.05);
  // The edit differs from the reconstruction (the target prompt changed the image).
  EXPECT_FALSE(torch::equal(inside.edited, inside.reconstruction));

  c.steps = 5;
  EXPECT_THROW(p2p_edit_image(pipe, image, c, &inversion, false), Error);
}

TEST_F(RealImageEdit, ConfigChecksNameTheField) {
  auto message = [&](const P2PEditConfig& c) -> std::string {
    try {
      c.validate(pipe.tokenizer());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  P2PEditConfig c;
  c.source = kSource;
  c.target = kTarget;
  EXPECT_EQ(message(c), "");
  auto bad = c;
  bad.cfg_scale = std::nan("");
  EXPECT_EQ(message(bad).rfind("cfg_scale:", 0), 0u) << message(bad);
  bad = c;
  bad.target = "a big dog sitting on a car";
  bad.edit = "replace";
  EXPECT_EQ(message(bad).rfind("edit:", 0), 0u) << message(bad);
  bad = c;
  bad.reweight = {{"dragon", 2.0f}};
  EXPECT_EQ(message(bad).rfind("reweight:", 0), 0u) << message(bad);
  bad = c;
  bad.path = "maybe";
  EXPECT_EQ(message(bad).rfind("path:", 0), 0u) << message(bad);
  bad = c;
  bad.steps = 0;
  EXPECT_EQ(message(bad).rfind("steps:", 0), 0u) << message(bad);

  EXPECT_EQ(parse_reweight("dog=2,car=0.5"), (std::map<std::string, float>{{"dog", 2.0f}, {"car", 0.5f}}));
  EXPECT_THROW(parse_reweight("dog"), Error);
  EXPECT_THROW(parse_reweight("dog=2x"), Error);
  EXPECT_THROW(parse_reweight("dog=inf"), Error);
  auto words = parse_cross_replace_words("dog=0.5,car=0.2:0.4");
  EXPECT_EQ(words.at("dog"), (p2p::Bounds{0.0, 0.5}));
  EXPECT_EQ(words.at("car"), (p2p::Bounds{0.2, 0.4}));
  EXPECT_THROW(parse_cross_replace_words("dog=a:b"), Error);
  InvertConfig ic;
  EXPECT_THROW(ic.validate(), Error);  // no prompt
  ic.prompt = "x";
  ic.schedule = "cosine";
  EXPECT_THROW(ic.validate(), Error);
}

}  // namespace
}  // namespace sine
