// The bad-input table (docs/reliability.md): what a stranger's file or a mistyped flag does to
// `sine`. Every row must exit non-zero with one stderr line that names the file or flag, and leave
// no output file behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "io/image.h"
#include "io/safetensors.h"

namespace sine {
namespace {

using cli_test::quote;
using cli_test::Scratch;
namespace fs = cli_test::fs;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

std::string safetensors(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

// A PNG whose IHDR announces `w` x `h` pixels and whose data is one empty IDAT: a decompression bomb's header.
std::string png_header_only(uint32_t w, uint32_t h) {
  auto be32 = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  std::string ihdr = "IHDR" + be32(w) + be32(h) + std::string("\x08\x02\x00\x00\x00", 5);
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + ihdr + be32(0) + be32(0) + "IEND" + be32(0);
}

struct Row {
  std::string what;   // the table's first column
  std::string args;   // after `sine -q`
  std::string named;  // the error line must contain this (the flag or the file)
};

class BadInputs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::setenv("SINE_THREADS", "1", 1);
    scratch_ = new Scratch("bad_inputs");
    ASSERT_EQ(scratch_->sine("world render --caption 'a red circle in the center on a white background' -o " +
                             quote(path("good.png")))
                  .code,
              0);
    write_bytes(path("sixteen.safetensors"), std::string(16, '\0'));
    write_bytes(path("huge_header.safetensors"), le64(uint64_t(1) << 40) + "{}");
    write_bytes(path("not_json.safetensors"), safetensors("{\"a\": nope}"));
    write_bytes(path("overflow.safetensors"),
                safetensors(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})"));
    write_bytes(path("mismatch.safetensors"),
                safetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})", std::string(8, '\0')));
    write_bytes(path("overlap.safetensors"),
                safetensors(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                            std::string(6, '\0')));
    write_bytes(path("text.png"), "this is not an image\n");
    write_bytes(path("bomb.png"), png_header_only(100000, 100000));
    write_bytes(path("empty.png"), "");
    write_bytes(path("empty.safetensors"), "");
    write_bytes(path("negative.safetensors"),
                safetensors(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,0]}})"));
    write_bytes(path("dtype.safetensors"),
                safetensors(R"({"a":{"dtype":"F8_E9M0","shape":[4],"data_offsets":[0,4]}})", std::string(4, '\0')));
    write_bytes(path("pickle.safetensors"), std::string("\x80\x02}q\x00(X\x05\x00\x00\x00state_dictq\x01", 24));
    write_bytes(path("not_object.safetensors"), safetensors("[1, 2, 3]"));
    // A micro SD 1.x model, then copies with one thing wrong.
    ASSERT_EQ(scratch_->sine("init-random --config micro -o " + quote(path("micro.safetensors"))).code, 0);
    auto micro = load_safetensors(path("micro.safetensors"));
    const auto meta = SafeTensors::open(path("micro.safetensors")).metadata();
    {
      auto bytes = cli_test::read_text(path("micro.safetensors"));
      write_bytes(path("truncated.safetensors"), bytes.substr(0, bytes.size() / 2));
    }
    const std::string key = "model.diffusion_model.out.2.weight";
    ASSERT_TRUE(micro.count(key));
    auto missing = micro;
    missing.erase(key);
    save_safetensors(path("missing_key.safetensors"), missing, meta);
    auto misshaped = micro;
    misshaped[key] = torch::zeros({3, 3});
    save_safetensors(path("misshaped.safetensors"), misshaped, meta);
    auto nan = micro;
    nan[key] = torch::full_like(micro[key], std::numeric_limits<float>::quiet_NaN());
    save_safetensors(path("nan.safetensors"), nan, meta);
    fs::create_directories(path("diffusers_no_unet/vae"));
    fs::create_directories(path("diffusers_no_unet/text_encoder"));
    write_bytes(path("diffusers_no_unet/model_index.json"), "{}");
    // Images: a 0x0 PNG header, a truncated PNG, a corrupt fine-tune and inversion.
    write_bytes(path("zero.png"), png_header_only(0, 0));
    {
      auto bytes = cli_test::read_text(path("good.png"));
      write_bytes(path("truncated.png"), bytes.substr(0, bytes.size() / 3));
    }
    write_bytes(path("corrupt_ft.safetensors"), safetensors(R"({"__metadata__":{"format":"sine-finetune"}})"));
    write_bytes(path("corrupt_inv.safetensors"), safetensors(R"({"__metadata__":{"format":"sine-inversion"}})"));
    fs::create_directories(path("a_folder.png"));
  }
  static void TearDownTestSuite() {
    delete scratch_;
    scratch_ = nullptr;
  }
  static std::string path(const std::string& name) { return scratch_->path(name); }
  static Scratch* scratch_;

  // `output` and every file the rows may name as output must stay absent.
  void check(const Row& row, const std::string& output) {
    for (const auto& o : {output, path("out.png"), path("ft.safetensors")}) fs::remove(o);
    auto r = scratch_->sine(row.args);
    if (std::getenv("SINE_BAD_INPUTS_TABLE")) {  // the docs' table: what | exit | the line
      std::string line = r.err.substr(0, r.err.find('\n'));
      for (std::string dir = scratch_->dir().string() + "/"; line.find(dir) != std::string::npos;)
        line.replace(line.find(dir), dir.size(), "");
      std::printf("| %s | %d | %s |\n", row.what.c_str(), r.code, line.c_str());
    }
    EXPECT_NE(r.code, 0) << row.what << ": " << row.args;
    EXPECT_NE(r.code, -1) << row.what << ": killed (" << row.args << ")";
    EXPECT_NE(r.err.find(row.named), std::string::npos) << row.what << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << row.what << ": " << r.err;
    for (const auto& o : {output, path("out.png"), path("ft.safetensors")}) {
      EXPECT_FALSE(fs::exists(o)) << row.what << ": wrote " << o;
      EXPECT_FALSE(fs::exists(o + ".tmp")) << row.what;
    }
  }
};
Scratch* BadInputs::scratch_ = nullptr;

TEST_F(BadInputs, ModelFilesNameTheFile) {
  const std::string out = path("out.png");
  for (const std::string file : {"sixteen", "huge_header", "not_json", "overflow", "mismatch", "overlap", "missing"}) {
    const std::string model = path(file + ".safetensors");
    check({file, "generate -m " + quote(model) + " -p a -o " + quote(out), model}, out);
  }
}

TEST_F(BadInputs, MoreModelFilesNameTheFileOrKey) {
  const std::string out = path("out.png");
  for (const std::string file : {"empty", "negative", "dtype", "pickle", "not_object", "truncated"}) {
    const std::string model = path(file + ".safetensors");
    check({file, "generate -m " + quote(model) + " -p a -o " + quote(out), model}, out);
  }
  const std::string key = "model.diffusion_model.out.2.weight";
  check({"missing_key", "generate -m " + quote(path("missing_key.safetensors")) + " -p a -o " + quote(out), key}, out);
  // generate reads each network's values when it first uses it (after the tokenizer, which this
  // micro model lacks); finetune loads all three at once and meets the NaN there.
  check({"nan", "finetune -m " + quote(path("nan.safetensors")) + " -i " + quote(path("good.png")) +
                    " --class x -o " + quote(path("ft.safetensors")),
         key},
        out);
  // A mis-shaped output conv: the shapes now say 3 output channels, which the file's own config contradicts.
  check({"misshaped", "generate -m " + quote(path("misshaped.safetensors")) + " -p a -o " + quote(out), "out_channels"},
        out);
  check({"diffusers folder without unet/", "generate -m " + quote(path("diffusers_no_unet")) + " -p a -o " + quote(out),
         "unet"},
        out);
}

TEST_F(BadInputs, MethodFilesAndOutputPaths) {
  const std::string out = path("out.png"), good = quote(path("good.png"));
  const std::vector<Row> rows = {
      {"corrupt fine-tune", "edit --finetuned " + quote(path("corrupt_ft.safetensors")) + " -p a -o " + quote(out),
       "corrupt_ft.safetensors"},
      {"fine-tune that is an image", "edit --finetuned " + good + " -p a -o " + quote(out), "good.png"},
      {"corrupt inversion", "p2p " + good + " -p 'a red circle' --target 'a blue circle' --inversion " +
                                quote(path("corrupt_inv.safetensors")) + " -o " + quote(out),
       "corrupt_inv.safetensors"},
      {"concept that is a model", "insert generate -c " + quote(path("micro.safetensors")) + " -p '* circle' -o " + quote(out),
       "micro.safetensors"},
      {"missing concept", "insert generate -c " + quote(path("nope.safetensors")) + " -p '* circle' -o " + quote(out),
       "nope.safetensors"},
      {"output is a folder", "generate -p a --steps 1 -o " + quote(path("a_folder.png")), "a_folder.png"},
      {"output folder missing", "generate -p a --steps 1 -o " + quote(path("no/such/dir/out.png")), "no/such/dir"},
      {"batch count 0", "generate -p a -b 0 -o " + quote(out), "--batch-count"},
      {"0x0 image", "generate -p a -i " + quote(path("zero.png")) + " -o " + quote(out), "zero.png"},
      {"truncated image", "generate -p a -i " + quote(path("truncated.png")) + " -o " + quote(out), "truncated.png"},
      {"image is a folder", "generate -p a -i " + quote(path("a_folder.png")) + " -o " + quote(out), "a_folder.png"},
      {"mask without image", "generate -p a --mask " + good + " -o " + quote(out), "--mask"},
      {"mask not an image", "generate -p a -i " + good + " --mask " + quote(path("text.png")) + " -o " + quote(out),
       "text.png"},
      {"mask blur negative", "generate -p a -i " + good + " --mask " + good + " --mask-blur -1 -o " + quote(out),
       "--mask-blur"},
      {"masked content", "generate -p a -i " + good + " --mask " + good + " --masked-content blur -o " + quote(out),
       "--masked-content"},
      {"render too large", "world render -W 100000 -H 100000 --caption 'a red circle' -o " + quote(out), "-W/-H"},
      {"render count 0", "world render --count 0 -o " + quote(path("renders")), "--count"},
      {"buckets not WxH", "world train --work-dir " + quote(path("wt")) + " --buckets 64x63 -o " + quote(out),
       "--buckets"},
      {"eval width negative", "world eval --renders --count 1 -W -8 -o " + quote(path("ev")), "-W/--width"},
      {"compare not json", "world compare " + quote(path("text.png")) + " " + quote(path("text.png")), "text.png"},
      {"insert training prompt", "world bench-insert --training-prompt long --concepts 2 --seeds 1", "long"},
      {"insert prompt template", "insert train -i " + good + " --mask " + good +
           " --class circle --prompt-template 'a photo' -o " + quote(path("c.safetensors")),
       "--prompt-template"},
      {"finetune template", "finetune -i " + good + " --class circle --template 'a photo' -o " +
           quote(path("f.safetensors")),
       "--template"},
      {"init noise batch", "generate -p a --init-noise " + quote(path("ft.safetensors")) + " -b 2 -o " + quote(out),
       "--init-noise"},
  };
  for (const auto& row : rows) check(row, out);
}

TEST_F(BadInputs, ImagesNameTheFileAndBombsAreRefusedBeforeDecoding) {
  const std::string out = path("out.png");
  for (const std::string file : {"text.png", "bomb.png", "empty.png", "missing.png"})
    check({file, "generate -p a -i " + quote(path(file)) + " -o " + quote(out), path(file)}, out);
  auto r = scratch_->sine("generate -p a -i " + quote(path("bomb.png")) + " -o " + quote(out));
  EXPECT_NE(r.err.find("too large"), std::string::npos) << r.err;  // stb refuses it from the header
}

TEST_F(BadInputs, NumericFlagsAreFiniteAndInRange) {
  const std::string out = path("out.png"), good = quote(path("good.png"));
  const std::string ft = path("ft.safetensors");
  const std::vector<Row> rows = {
      {"cfg nan", "generate -p a --cfg-scale nan -o " + quote(out), "--cfg-scale"},
      {"cfg inf", "generate -p a --cfg-scale inf -o " + quote(out), "--cfg-scale"},
      {"cfg negative", "generate -p a --cfg-scale -3 -o " + quote(out), "--cfg-scale"},
      {"steps 0", "generate -p a --steps 0 -o " + quote(out), "--steps"},
      {"strength 2", "generate -p a -i " + good + " --strength 2 -o " + quote(out), "--strength"},
      {"width huge", "generate -p a -W 100000 -H 64 -o " + quote(out), "--width"},
      {"width odd", "generate -p a -W 61 -H 64 -o " + quote(out), "--width"},
      {"too large for memory", "generate -p a -W 65536 -H 65536 -o " + quote(out), "--width"},
      {"eta nan", "generate -p a --eta nan -o " + quote(out), "--eta"},
      {"sampler", "generate -p a --sampling-method plms -o " + quote(out), "plms"},
      {"K -1", "edit --finetuned " + quote(ft) + " -p a -K -1 -o " + quote(out), "-K"},
      {"v 1.5", "edit --finetuned " + quote(ft) + " -p a --v 1.5 -o " + quote(out), "--v"},
      {"finetune lr inf", "finetune -i " + good + " --class dog --lr inf -o " + quote(ft), "--lr"},
      {"finetune steps -1", "finetune -i " + good + " --class dog --steps -1 -o " + quote(ft), "--steps"},
      {"finetune optimizer state", "finetune -i " + good + " --class dog --optimizer-state int8 -o " + quote(ft),
       "--optimizer-state"},
      {"invert steps 0", "invert " + good + " -p a --steps 0 -o " + quote(ft), "--steps"},
      {"invert schedule", "invert " + good + " -p a --schedule cosine -o " + quote(ft), "--schedule"},
      {"p2p cross-replace", "p2p " + good + " -p 'a red circle' --target 'a blue circle' --cross-replace 2 -o " + quote(out),
       "--cross-replace"},
      {"p2p reweight", "p2p " + good + " -p 'a red circle' --target 'a blue circle' --reweight blue=x -o " + quote(out),
       "--reweight"},
      {"specref threshold", "specref " + good + " " + good + " -p 'a red circle' --target 'a blue circle' --words blue --threshold nan -o " + quote(out),
       "--threshold"},
  };
  for (const auto& row : rows) check(row, out);
}

}  // namespace
}  // namespace sine
