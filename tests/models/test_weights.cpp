#include <gtest/gtest.h>

#include "core/error.h"
#include "models/weights.h"

using sine::load_module_weights;

namespace {

// Parameters "proj.weight" [2, 3], "proj.bias" [2] and a persistent buffer "scale" [2].
struct Probe : torch::nn::Module {
  Probe() {
    proj = register_module("proj", torch::nn::Linear(3, 2));
    scale = register_buffer("scale", torch::ones({2}));
  }
  torch::nn::Linear proj{nullptr};
  torch::Tensor scale;
};

std::map<std::string, torch::Tensor> probe_tensors() {
  return {{"net.proj.weight", torch::arange(6.0).reshape({2, 3})},
          {"net.proj.bias", torch::tensor({0.5, -0.5})},
          {"net.scale", torch::tensor({2.0, 3.0})}};
}

std::string load_error(std::map<std::string, torch::Tensor> tensors, const std::vector<std::string>& ignore = {}) {
  Probe probe;
  try {
    load_module_weights(probe, tensors, "net.", "probe.safetensors", ignore);
  } catch (const sine::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a sine::Error";
  return "";
}

}  // namespace

TEST(Weights, LoadsConvertingDtype) {
  auto tensors = probe_tensors();
  tensors["net.proj.weight"] = tensors["net.proj.weight"].to(torch::kFloat16);  // the file's dtype is not the model's
  tensors["other.weight"] = torch::zeros({7});                                   // outside the prefix: not ours
  Probe probe;
  load_module_weights(probe, tensors, "net.", "probe.safetensors");
  EXPECT_EQ(probe.proj->weight.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(probe.proj->weight, torch::arange(6.0, torch::kFloat32).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(probe.proj->bias, torch::tensor({0.5f, -0.5f})));
  EXPECT_TRUE(torch::equal(probe.scale, torch::tensor({2.0f, 3.0f})));

  const auto state = sine::module_state(probe, "net.");
  ASSERT_EQ(state.size(), 3u);
  for (const auto& [k, t] : probe_tensors()) EXPECT_TRUE(torch::equal(state.at(k), t.to(torch::kFloat32))) << k;
  EXPECT_EQ(sine::count_parameters(probe), 8);
}

TEST(Weights, MissingKeyNamesKeyAndShape) {
  auto tensors = probe_tensors();
  tensors.erase("net.proj.bias");
  const std::string msg = load_error(tensors);
  EXPECT_NE(msg.find("probe.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing tensor 'net.proj.bias'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2]"), std::string::npos) << msg;
}

TEST(Weights, MisShapedKeyNamesBothShapes) {
  auto tensors = probe_tensors();
  tensors["net.proj.weight"] = torch::zeros({2, 4});
  const std::string msg = load_error(tensors);
  EXPECT_NE(msg.find("probe.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'net.proj.weight' has shape [2, 4] but the model expects [2, 3]"), std::string::npos) << msg;
}

TEST(Weights, UnexpectedKeyIsNamedUnlessIgnored) {
  auto tensors = probe_tensors();
  tensors["net.proj.extra"] = torch::zeros({5});
  const std::string msg = load_error(tensors);
  EXPECT_NE(msg.find("unexpected tensor 'net.proj.extra'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5]"), std::string::npos) << msg;

  Probe probe;
  EXPECT_NO_THROW(load_module_weights(probe, tensors, "net.", "probe.safetensors", {"proj.extra"}));
}
