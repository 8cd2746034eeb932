#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using sine::SafeTensors;

TEST(SafeTensors, ReadsReferenceFixture) {
  auto st = SafeTensors::open(std::string(SINE_SHARED_DIR) + "/reference/tiny/unet_io.safetensors");
  EXPECT_TRUE(st.contains("eps"));
  auto eps = st.get("eps");
  EXPECT_EQ(eps.sizes(), (std::vector<int64_t>{1, 4, 16, 16}));
  EXPECT_EQ(st.get("timestep").item<int64_t>(), 500);
}

TEST(SafeTensors, RoundTripWithMetadata) {
  auto dir = fs::temp_directory_path() / "sine_st_test";
  fs::create_directories(dir);
  auto path = (dir / "rt.safetensors").string();
  std::map<std::string, torch::Tensor> in{{"a", torch::randn({3, 5})},
                                          {"b", torch::randn({2}).to(torch::kFloat16)},
                                          {"c", torch::randn({4, 1}).to(torch::kBFloat16)},
                                          {"ids", torch::arange(7)}};
  sine::save_safetensors(path, in, {{"method", "test"}});
  auto st = SafeTensors::open(path);
  EXPECT_EQ(st.metadata().at("method"), "test");
  for (auto& [k, v] : in) EXPECT_TRUE(torch::equal(st.get(k), v)) << k;
}
