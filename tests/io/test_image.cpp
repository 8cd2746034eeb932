#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "io/image.h"
#include "io/image_bytes.h"
#include "io/safetensors.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace fs = std::filesystem;

namespace {

const std::string kImages = std::string(SINE_SHARED_DIR) + "/data/images/";

fs::path scratch_dir() {
  auto dir = fs::temp_directory_path() / ("sine_image_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Expects `fn` to throw a sine::Error whose message contains `needle`.
template <class Fn>
void expect_error_naming(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming " << needle;
  } catch (const sine::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Bytes in memory go through the same decoder and encoder as files: an uploaded image decodes as
// the file would, and write_png writes exactly encode_png_bytes.
TEST(ImageBytes, DecodeAndEncodeAsTheFileFunctions) {
  const std::string path = testing::TempDir() + "/sine_image_bytes.png";
  torch::manual_seed(0);
  auto img = torch::randint(0, 256, {9, 7, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  const std::map<std::string, std::string> text{{"parameters", "a cat\nSteps: 2, Seed: 1, Size: 7x9"}};
  sine::write_png(path, img, text);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes, sine::encode_png_bytes(img, text));
  EXPECT_TRUE(torch::equal(sine::decode_image_rgb_bytes(bytes, "upload"), sine::read_image_rgb(path)));
  EXPECT_TRUE(torch::equal(sine::decode_mask_bytes(bytes, "upload"), sine::read_mask(path, 9, 7).view({9, 7})));
  const auto header = sine::image_bytes_header(bytes, "upload");
  EXPECT_EQ(header.width, 7);
  EXPECT_EQ(header.height, 9);
  for (const std::string bad : {std::string(), std::string("not an image")}) {
    try {
      sine::decode_image_rgb_bytes(bad, "init_images[0]");
      ADD_FAILURE() << "garbage decoded";
    } catch (const sine::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("init_images[0]: cannot read image", 0), 0u) << e.what();
    }
  }
  std::remove(path.c_str());
}

}  // namespace

TEST(Image, ReadsThePhotos) {
  const std::map<std::string, std::pair<int64_t, int64_t>> sizes{
      {"astronaut.png", {512, 512}}, {"chelsea.png", {300, 451}},         {"coffee.png", {400, 600}},
      {"horse.png", {328, 400}},     {"motorcycle_left.png", {500, 741}}, {"rocket.jpg", {427, 640}}};
  for (const auto& [name, hw] : sizes) {
    auto rgb = sine::read_image_rgb(kImages + name);
    EXPECT_EQ(rgb.scalar_type(), torch::kUInt8) << name;
    EXPECT_EQ(rgb.sizes(), (std::vector<int64_t>{hw.first, hw.second, 3})) << name;
    EXPECT_TRUE(rgb.is_contiguous());
    EXPECT_GT(rgb.to(torch::kFloat32).std().item<double>(), 10.0) << name << " looks blank";
    auto rgba = sine::read_image_rgba(kImages + name);
    EXPECT_EQ(rgba.sizes(), (std::vector<int64_t>{hw.first, hw.second, 4})) << name;
  }
  // Opaque images: RGBA is RGB plus alpha 255.
  auto rgba = sine::read_image_rgba(kImages + "rocket.jpg");
  EXPECT_TRUE(torch::equal(rgba.narrow(2, 0, 3), sine::read_image_rgb(kImages + "rocket.jpg")));
  EXPECT_EQ(rgba.select(2, 3).min().item<int64_t>(), 255);
}

TEST(Image, MatchesTheVaeFixturePreprocessing) {
  // vae_io's image is chelsea.png centre-cropped and resized to 64x64 by the reference tooling
  // (its resampler is not documented); ours should agree to within rounding on average.
  auto ref = sine::SafeTensors::open(std::string(SINE_SHARED_DIR) + "/reference/tiny/vae_io.safetensors").get("image");
  auto ours = sine::to_model_input(sine::fit_image(sine::read_image_rgb(kImages + "chelsea.png"), 64, 64));
  ASSERT_EQ(ours.sizes(), ref.sizes());
  double mean_err = (ours - ref).abs().mean().item<double>() * 127.5;
  double max_err = (ours - ref).abs().max().item<double>() * 127.5;
  std::printf("chelsea 64x64 crop vs fixture: mean abs error %.3f, max %.1f grey levels\n", mean_err, max_err);
  EXPECT_LT(mean_err, 1.0);
}

TEST(Image, AlphaCompositesOverWhiteAndGivesMasks) {
  auto dir = scratch_dir();
  // 2x2 RGBA: opaque red, transparent green, half-transparent black, opaque blue.
  const uint8_t px[16] = {255, 0, 0, 255, 0, 255, 0, 0, 0, 0, 0, 128, 0, 0, 255, 255};
  auto path = (dir / "alpha.png").string();
  ASSERT_TRUE(stbi_write_png(path.c_str(), 2, 2, 4, px, 8));
  auto rgb = sine::read_image_rgb(path);
  EXPECT_EQ(rgb[0][0][0].item<int>(), 255);
  EXPECT_EQ(rgb[0][1][1].item<int>(), 255);  // fully transparent -> white
  EXPECT_EQ(rgb[1][0][0].item<int>(), 127);  // 50% black over white
  EXPECT_EQ(rgb[1][1][2].item<int>(), 255);
  EXPECT_EQ(sine::read_image_rgba(path)[0][1][3].item<int>(), 0);
  auto mask = sine::read_mask(path, 2, 2);
  EXPECT_EQ(mask.sizes(), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_FLOAT_EQ(mask[0][0][0][1].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(mask[0][0][1][0].item<float>(), 128.0f / 255.0f);

  // Gray mask without alpha: the value itself, and gray images become three equal channels.
  const uint8_t gray[4] = {0, 255, 255, 0};
  auto gray_path = (dir / "gray.png").string();
  ASSERT_TRUE(stbi_write_png(gray_path.c_str(), 2, 2, 1, gray, 2));
  auto g = sine::read_image_rgb(gray_path);
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(g[0][1][2].item<int>(), 255);
  auto m = sine::read_mask(gray_path, 8, 8);
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{1, 1, 8, 8}));
  EXPECT_GE(m.min().item<float>(), 0.0f);
  EXPECT_LE(m.max().item<float>(), 1.0f);
  EXPECT_LT(m[0][0][0][0].item<float>(), 0.2f);
  EXPECT_GT(m[0][0][0][7].item<float>(), 0.8f);

  // horse.png stores an alpha channel: its mask is the alpha, resized.
  auto horse = sine::read_mask(kImages + "horse.png", 64, 64);
  EXPECT_EQ(horse.sizes(), (std::vector<int64_t>{1, 1, 64, 64}));
  fs::remove_all(dir);
}

TEST(Image, AppliesExifOrientation) {
  auto bytes = read_bytes(kImages + "rocket.jpg");
  ASSERT_GT(bytes.size(), 4u);
  // APP1 "Exif", little-endian TIFF, IFD0 with one entry: Orientation (0x0112) SHORT = 6.
  const unsigned char app1[] = {0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0,
                                1,    0,    0x12, 0x01, 3,   0,   1,   0,   0, 0, 6,   0,   0,  0, 0, 0, 0, 0};
  auto dir = scratch_dir();
  auto path = (dir / "rotated.jpg").string();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), 2);  // SOI
    out.write(reinterpret_cast<const char*>(app1), sizeof(app1));
    out.write(bytes.data() + 2, static_cast<std::streamsize>(bytes.size() - 2));
  }
  auto upright = sine::read_image_rgb(kImages + "rocket.jpg");
  auto turned = sine::read_image_rgb(path);
  EXPECT_EQ(turned.sizes(), (std::vector<int64_t>{640, 427, 3}));
  // Orientation 6 means "rotate 90° clockwise to display".
  EXPECT_TRUE(torch::equal(turned, upright.transpose(0, 1).flip({1})));
  fs::remove_all(dir);
}

TEST(Image, UnreadableFilesNameThePath) {
  auto dir = scratch_dir();
  auto garbage = (dir / "garbage.png").string();
  write_bytes(garbage, std::vector<char>(100, 'x'));
  expect_error_naming([&] { sine::read_image_rgb(garbage); }, garbage + ": cannot read image");
  auto truncated = (dir / "truncated.jpg").string();
  auto jpeg = read_bytes(kImages + "rocket.jpg");
  write_bytes(truncated, std::vector<char>(jpeg.begin(), jpeg.begin() + 20));
  expect_error_naming([&] { sine::read_image_rgb(truncated); }, truncated);
  expect_error_naming([&] { sine::read_image_rgb((dir / "missing.png").string()); }, "missing.png: cannot read image");
  expect_error_naming([&] { sine::read_mask(dir.string(), 8, 8); }, dir.string());
  expect_error_naming([&] { sine::read_png_text(garbage); }, garbage);
  fs::remove_all(dir);
}

TEST(Image, PngRoundTripWithText) {
  auto dir = scratch_dir();
  auto path = (dir / "out.png").string();
  torch::manual_seed(3);
  auto img = torch::randint(0, 256, {37, 53, 3}, torch::kUInt8);
  std::map<std::string, std::string> text{{"parameters", "a red star, steps 50, seed 42"},
                                          {"prompt", "un caf\xC3\xA9 \xE2\x98\x95 on a table"},
                                          {"sine", "{\"method\": \"sine\", \"v\": 0.7}"}};
  sine::write_png(path, img, text);
  EXPECT_TRUE(torch::equal(sine::read_image_rgb(path), img));
  EXPECT_EQ(sine::read_png_text(path), text);
  // A non-contiguous view writes the pixels it shows.
  auto view = img.flip({1});
  sine::write_png(path, view);
  EXPECT_TRUE(torch::equal(sine::read_image_rgb(path), view));
  EXPECT_TRUE(sine::read_png_text(path).empty());
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename(), "out.png") << "left behind: " << entry.path();
  fs::remove_all(dir);
}

TEST(Image, FailedWritesLeaveNoFile) {
  auto dir = scratch_dir();
  auto img = torch::zeros({8, 8, 3}, torch::kUInt8);
  auto missing = (dir / "no_such_folder" / "out.png").string();
  expect_error_naming([&] { sine::write_png(missing, img); }, missing);
  EXPECT_FALSE(fs::exists(missing));
  auto bad_key = (dir / "bad_key.png").string();
  expect_error_naming([&] { sine::write_png(bad_key, img, {{"", "x"}}); }, "PNG text key");
  expect_error_naming([&] { sine::write_png(bad_key, torch::zeros({8, 8, 4}, torch::kUInt8)); }, bad_key);
  // A write whose final rename fails (the target is a non-empty folder) cleans up too.
  auto occupied = (dir / "occupied.png");
  fs::create_directories(occupied / "child");
  EXPECT_THROW(sine::write_png(occupied.string(), img), sine::Error);
  EXPECT_TRUE(fs::is_directory(occupied));
  fs::remove_all(occupied);
  EXPECT_TRUE(fs::is_empty(dir)) << "files left behind in " << dir;
  fs::remove_all(dir);
}

TEST(Image, ModelInputAndOutputRoundTrip) {
  auto img = torch::arange(0, 256, torch::kInt64).to(torch::kUInt8).repeat({3, 1}).t().reshape({16, 16, 3});
  auto x = sine::to_model_input(img);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{1, 3, 16, 16}));
  EXPECT_EQ(x.scalar_type(), torch::kFloat32);
  EXPECT_FLOAT_EQ(x.min().item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(x.max().item<float>(), 1.0f);
  EXPECT_TRUE(torch::equal(sine::from_model_output(x), img));
  EXPECT_TRUE(torch::equal(sine::from_model_output(x.to(torch::kFloat64).squeeze(0)), img));
  auto clipped = sine::from_model_output(torch::full({1, 3, 2, 2}, 5.0));
  EXPECT_EQ(clipped.min().item<int>(), 255);
  EXPECT_THROW(sine::from_model_output(torch::zeros({2, 3, 4, 4})), sine::Error);
}

TEST(Image, ResizeFitAndSnap) {
  auto photo = sine::read_image_rgb(kImages + "coffee.png");  // 400x600
  auto small = sine::resize_rgb(photo, 100, 150);
  EXPECT_EQ(small.sizes(), (std::vector<int64_t>{100, 150, 3}));
  auto flat = torch::full({30, 40, 3}, 77, torch::kUInt8);
  EXPECT_TRUE(torch::equal(sine::resize_rgb(flat, 13, 71), torch::full({13, 71, 3}, 77, torch::kUInt8)));

  for (auto policy : {sine::FitPolicy::CenterCrop, sine::FitPolicy::Resize, sine::FitPolicy::Pad}) {
    auto fit = sine::fit_image(photo, 64, 64, policy);
    EXPECT_EQ(fit.sizes(), (std::vector<int64_t>{64, 64, 3})) << sine::fit_policy_name(policy);
    EXPECT_EQ(sine::parse_fit_policy(sine::fit_policy_name(policy)), policy);
  }
  // Pad keeps the 3:2 aspect: 64 wide, ~43 high, white bands above and below.
  auto padded = sine::fit_image(photo, 64, 64, sine::FitPolicy::Pad);
  EXPECT_EQ(padded[0].min().item<int>(), 255);
  EXPECT_EQ(padded[63].min().item<int>(), 255);
  // Crop of a left/right split image keeps the centre.
  auto split = torch::zeros({10, 30, 3}, torch::kUInt8);
  split.narrow(1, 10, 10).fill_(200);
  EXPECT_TRUE(torch::equal(sine::fit_image(split, 10, 10, sine::FitPolicy::CenterCrop),
                           torch::full({10, 10, 3}, 200, torch::kUInt8)));
  EXPECT_THROW(sine::parse_fit_policy("stretch"), sine::Error);
  EXPECT_THROW(sine::fit_image(photo, 0, 64), sine::Error);
  EXPECT_NE(std::string(sine::kImageFitPolicyHelp).find("crop"), std::string::npos);

  EXPECT_EQ(sine::snap_size(427, 640), (std::pair<int64_t, int64_t>{424, 640}));
  EXPECT_EQ(sine::snap_size(5, 1023), (std::pair<int64_t, int64_t>{8, 1016}));
  EXPECT_EQ(sine::snap_size(100, 100, 64), (std::pair<int64_t, int64_t>{64, 64}));
}

TEST(Image, GridLayoutAndLabels) {
  std::vector<torch::Tensor> images;
  for (int i = 0; i < 5; ++i) images.push_back(torch::full({32, 48, 3}, 10 * i, torch::kUInt8));
  auto grid = sine::make_grid(images, 3, 4);
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{2 * 32 + 3 * 4, 3 * 48 + 4 * 4, 3}));
  EXPECT_EQ(grid[0][0][0].item<int>(), 255);                 // padding is white
  EXPECT_EQ(grid[4 + 36][4][0].item<int>(), 30);             // image 3 starts row 2
  EXPECT_EQ(grid[4 + 36][4 + 52][0].item<int>(), 40);
  EXPECT_EQ(grid[4 + 36][4 + 2 * 52][0].item<int>(), 255);   // the sixth cell is empty

  auto labelled = sine::make_grid(images, 5, 2, {"a", "b", "v=0.7", "K=400", "caf\xC3\xA9"});
  EXPECT_EQ(labelled.size(0), 32 + 14 + 2 * 2);
  EXPECT_EQ(labelled.size(1), 5 * 48 + 6 * 2);
  auto band = labelled.narrow(0, 2 + 32, 14);
  EXPECT_EQ(band.min().item<int>(), 0) << "label text is drawn in black";
  EXPECT_THROW(sine::make_grid(images, 2, 2, {"only one"}), sine::Error);
  EXPECT_THROW(sine::make_grid({}, 2), sine::Error);

  // Mixed sizes are centred in cells of the largest size.
  auto mixed = sine::make_grid({torch::zeros({8, 8, 3}, torch::kUInt8), torch::zeros({16, 4, 3}, torch::kUInt8)}, 2, 0);
  EXPECT_EQ(mixed.sizes(), (std::vector<int64_t>{16, 16, 3}));
  EXPECT_EQ(mixed[0][0][0].item<int>(), 255);
  EXPECT_EQ(mixed[8][4][0].item<int>(), 0);
}
