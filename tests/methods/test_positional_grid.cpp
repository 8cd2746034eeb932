// SINE's positional grid and patch sampler against the official formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "io/image.h"
#include "methods/sine/positional_grid.h"
#include "methods/sine/sine_patch.h"
#include "models/unet.h"

using namespace sine;

namespace {

double expected_embedding(int64_t p, int64_t k, int64_t dim) {
  // e(p)[k] = sin(p w_k), e(p)[half + k] = cos(p w_k), w_k = exp(-k ln(10000)/(half-1)).
  const int64_t half = dim / 2;
  const int64_t j = k % half;
  const double w = std::exp(-static_cast<double>(j) * std::log(10000.0) / static_cast<double>(half - 1));
  return k < half ? std::sin(static_cast<double>(p) * w) : std::cos(static_cast<double>(p) * w);
}

}  // namespace

TEST(PositionalGrid, TableIsSinCosAtIntegerPositionsWithZeroPadding) {
  // The SD 1.x setting: 160 values per axis, 80 frequencies, positions 1..128.
  auto table = sinusoidal_embedding_table(129, 160);
  ASSERT_EQ(table.sizes(), (std::vector<int64_t>{129, 160}));
  EXPECT_EQ(table[0].abs().max().item<float>(), 0.0f) << "row 0 is the padding row";
  for (int64_t p : {1, 2, 7, 64, 128})
    for (int64_t k : {0, 1, 40, 79, 80, 81, 120, 159})
      EXPECT_NEAR(table[p][k].item<float>(), expected_embedding(p, k, 160), 2e-4) << "p=" << p << " k=" << k;
  // w_0 = 1 and w_79 = 1e-4 exactly.
  EXPECT_NEAR(table[3][0].item<float>(), std::sin(3.0), 1e-6);
  EXPECT_NEAR(table[3][79].item<float>(), std::sin(3e-4), 1e-7);
  EXPECT_THROW(sinusoidal_embedding_table(10, 2), Error);
}

TEST(PositionalGrid, ChannelLayoutColumnsThenRows) {
  PositionalGrid grid({16, 6, GridInterpolation::Bilinear});  // D = 8 per axis
  const auto& g = grid.full();
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{16, 6, 6}));
  auto table = sinusoidal_embedding_table(7, 8);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 6; ++c)
      for (int64_t k = 0; k < 8; ++k) {
        ASSERT_FLOAT_EQ(g[k][r][c].item<float>(), table[c + 1][k].item<float>()) << "column channels use e(col+1)";
        ASSERT_FLOAT_EQ(g[8 + k][r][c].item<float>(), table[r + 1][k].item<float>()) << "row channels use e(row+1)";
      }
  // No cell carries the padding embedding (all positions are 1..G).
  EXPECT_GT(g.abs().sum(0).min().item<float>(), 0.0f);
  EXPECT_THROW(PositionalGrid({10, 6, GridInterpolation::Bilinear}), Error);
}

TEST(PositionalGrid, CropSlicesAndInterpolatesAlignCorners) {
  PositionalGrid grid({8, 32, GridInterpolation::Bilinear});
  const auto& g = grid.full();
  CropBox box{3, 5, 11, 9};  // rows 3..10, columns 5..8
  // Same size as the box: the exact slice.
  auto same = grid.crop(box, 8, 4);
  ASSERT_EQ(same.sizes(), (std::vector<int64_t>{1, 8, 8, 4}));
  EXPECT_TRUE(torch::equal(same[0], g.slice(1, 3, 11).slice(2, 5, 9)));
  // Stretched to 15 x 7 (2n-1): align_corners keeps the corners and puts averages in between.
  auto up = grid.crop(box, 15, 7)[0];
  EXPECT_TRUE(torch::allclose(up.select(1, 0).select(1, 0), g.select(1, 3).select(1, 5)));
  EXPECT_TRUE(torch::allclose(up.select(1, 14).select(1, 6), g.select(1, 10).select(1, 8)));
  auto mid = (g.select(1, 3).select(1, 5) + g.select(1, 4).select(1, 5)) / 2;
  EXPECT_TRUE(torch::allclose(up.select(1, 1).select(1, 0), mid, 1e-5, 1e-6));
  // Nearest: every value is one of the slice's values.
  PositionalGrid nearest({8, 32, GridInterpolation::Nearest});
  auto nn = nearest.crop(box, 16, 8)[0];
  EXPECT_TRUE(torch::equal(nn.select(1, 1).select(1, 1), g.select(1, 3).select(1, 5)));
  EXPECT_TRUE(torch::equal(nn.select(1, 2).select(1, 2), g.select(1, 4).select(1, 6)));
  EXPECT_THROW(grid.crop({0, 0, 33, 4}, 4, 4), Error);
  EXPECT_THROW(grid.crop({5, 5, 5, 9}, 4, 4), Error);
}

TEST(PositionalGrid, SamplingStretchesTheWholeGrid) {
  PositionalGrid grid({8, 32, GridInterpolation::Bilinear});
  const auto& g = grid.full();
  EXPECT_TRUE(torch::allclose(grid.stretched(32, 32)[0], g));
  // 2x width: the corners are the grid's corners, each row still holds e(row+1) on the row channels.
  auto wide = grid.stretched(16, 32)[0];
  ASSERT_EQ(wide.sizes(), (std::vector<int64_t>{8, 16, 32}));
  EXPECT_TRUE(torch::allclose(wide.select(1, 0).select(1, 0), g.select(1, 0).select(1, 0)));
  EXPECT_TRUE(torch::allclose(wide.select(1, 15).select(1, 31), g.select(1, 31).select(1, 31)));
  // Stretched over the output, not tiled: the column channels never repeat a column's value.
  auto col_channel = wide[0][0];
  EXPECT_FALSE(torch::allclose(col_channel.slice(0, 0, 16), col_channel.slice(0, 16, 32)));
  EXPECT_TRUE(torch::allclose(grid.crop({0, 0, 32, 32}, 16, 32), grid.stretched(16, 32)));
}

TEST(PositionalGrid, ConvInAdditionChangesTheUNetOnlyWhenNonZero) {
  torch::manual_seed(0);
  UNetConfig c;
  c.model_channels = 8;
  c.channel_mult = {1, 2};
  c.attention_levels = {1};
  c.num_heads = 2;
  c.context_dim = 16;
  c.norm_groups = 4;
  c.sample_size = 8;
  UNetModel unet(c);
  unet->eval();
  torch::NoGradGuard ng;
  auto x = torch::randn({1, 4, 8, 8});
  auto t = torch::tensor({500}, torch::kLong);
  auto ctx = torch::randn({1, 5, 16});
  auto plain = unet->forward(x, t, ctx);
  EXPECT_TRUE(torch::equal(plain, unet->forward(x, t, ctx, torch::zeros({1, 8, 8, 8}))));
  PositionalGrid grid({8, 16, GridInterpolation::Bilinear});
  auto with_grid = unet->forward(x, t, ctx, grid.stretched(8, 8));
  EXPECT_GT((with_grid - plain).abs().max().item<float>(), 1e-4);
  // A different crop of the grid gives a different prediction: the position is visible to the UNet.
  auto other = unet->forward(x, t, ctx, grid.crop({0, 0, 8, 8}, 8, 8));
  EXPECT_GT((with_grid - other).abs().max().item<float>(), 1e-5);
}

TEST(PatchSampler, BoxesInBoundsWithOfficialFractions) {
  auto image = torch::randint(0, 256, {40, 50, 3}, torch::kUInt8);
  PatchSampler sampler(image, 16, 16);  // 2x res = 32 px, 2 px per cell
  EXPECT_EQ(sampler.pixels_per_cell(), 2);
  EXPECT_EQ(sampler.high_res().sizes(), (std::vector<int64_t>{32, 32, 3}));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  int64_t min_side = 100, max_side = 0;
  bool touches_bottom_right = false, touches_top_left = false;
  for (int i = 0; i < 2000; ++i) {
    CropBox b = sampler.draw_box(gen);
    ASSERT_GE(b.y0, 0);
    ASSERT_GE(b.x0, 0);
    ASSERT_LE(b.y1, 16);
    ASSERT_LE(b.x1, 16);
    ASSERT_GE(b.height(), 1);  // int(16 * 0.1) = 1
    ASSERT_GE(b.width(), 1);
    min_side = std::min({min_side, b.height(), b.width()});
    max_side = std::max({max_side, b.height(), b.width()});
    touches_bottom_right |= b.y1 == 16 && b.x1 == 16;
    touches_top_left |= b.y0 == 0 && b.x0 == 0;
  }
  EXPECT_EQ(min_side, 1);
  EXPECT_GE(max_side, 15);
  EXPECT_TRUE(touches_bottom_right) << "offsets reach G - ph inclusive";
  EXPECT_TRUE(touches_top_left);
}

TEST(PatchSampler, DeterministicFromTheGeneratorAndCropsTheBox) {
  auto image = torch::randint(0, 256, {32, 32, 3}, torch::kUInt8);
  PatchSampler sampler(image, 16, 8);
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(11);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(11);
  for (int i = 0; i < 20; ++i) {
    PatchSample a = sampler.sample(g1), b = sampler.sample(g2);
    ASSERT_EQ(a.box.y0, b.box.y0);
    ASSERT_EQ(a.box.x1, b.box.x1);
    ASSERT_TRUE(torch::equal(a.image, b.image));
    ASSERT_EQ(a.image.sizes(), (std::vector<int64_t>{16, 16, 3}));
  }
  // A crop is the high-res region of the box (4 px per cell) resized to the training size.
  CropBox box{2, 1, 6, 5};
  auto expected = resize_rgb(sampler.high_res().slice(0, 8, 24).slice(1, 4, 20).contiguous(), 16, 16);
  EXPECT_TRUE(torch::equal(sampler.crop(box), expected));
  // The full box is the whole image at the training size.
  EXPECT_TRUE(torch::equal(sampler.crop({0, 0, 8, 8}), resize_rgb(sampler.high_res(), 16, 16)));
  EXPECT_THROW(PatchSampler(image, 16, 7), Error);
}
