#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using sine::SafeTensors;

namespace {

fs::path temp_file(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("sine_st_errors_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out;
}

// A file with `header` as its JSON header (its true length unless `claimed_length` is given)
// followed by `data_bytes` zero bytes.
fs::path make_file(const std::string& name, const std::string& header, size_t data_bytes,
                   std::optional<uint64_t> claimed_length = std::nullopt) {
  const fs::path path = temp_file(name);
  write_bytes(path, le64(claimed_length.value_or(header.size())) + header + std::string(data_bytes, '\0'));
  return path;
}

// Opening `path` fails with a sine::Error naming the file and containing every fragment.
void expect_open_error(const fs::path& path, const std::vector<std::string>& fragments) {
  try {
    SafeTensors::open(path.string());
    ADD_FAILURE() << path << " opened without error";
  } catch (const sine::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

fs::path valid_file(const std::string& name) {
  const fs::path path = temp_file(name);
  sine::save_safetensors(path.string(), {{"alpha", torch::ones({4, 4})}, {"beta", torch::zeros({16})}});
  return path;
}


// Removes this process's scratch folder after the last test.
class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override { fs::remove_all(fs::temp_directory_path() / ("sine_st_errors_" + std::to_string(::getpid()))); }
};
const auto* const kScratchCleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);

}  // namespace

TEST(SafeTensorsErrors, TruncatedData) {
  const fs::path path = valid_file("truncated.safetensors");
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  write_bytes(path, bytes.substr(0, bytes.size() - 10));
  expect_open_error(path, {"'beta'", "lies outside the data section", "truncated"});
}

TEST(SafeTensorsErrors, TruncatedInsideHeader) {
  const fs::path path = valid_file("truncated_header.safetensors");
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  write_bytes(path, bytes.substr(0, 30));
  expect_open_error(path, {"invalid safetensors header length", "file has 30 bytes"});
}

TEST(SafeTensorsErrors, HeaderLengthLargerThanFile) {
  expect_open_error(make_file("long_header.safetensors", "{}", 0, 1000), {"header length 1000", "file has 10 bytes"});
  expect_open_error(make_file("huge_header.safetensors", "{}", 0, ~uint64_t(0)), {"invalid safetensors header length"});
}

TEST(SafeTensorsErrors, HeaderNotJson) {
  expect_open_error(make_file("not_json.safetensors", "{\"a\": [1, 2", 0), {"header is not valid JSON"});
  expect_open_error(make_file("not_object.safetensors", "[1, 2, 3]", 0), {"header is not a JSON object"});
  expect_open_error(make_file("binary.safetensors", std::string("\x89PNG\r\n\x1a\n", 8), 64), {"not valid JSON"});
}

TEST(SafeTensorsErrors, HeaderLiesAboutSizes) {
  expect_open_error(make_file("lying.safetensors", R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 24),
                    {"'w'", "header says 20 bytes but shape x F32 needs 24"});
  // A shape whose element count overflows 64 bits must not pass as zero bytes.
  expect_open_error(
      make_file("overflow.safetensors", R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", 0),
      {"'w'", "too large"});
}

TEST(SafeTensorsErrors, OverlappingRanges) {
  expect_open_error(make_file("overlap.safetensors",
                              R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                              R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                              24),
                    {"'a'", "'b'", "overlap"});
}

TEST(SafeTensorsErrors, RangeOutsideFile) {
  expect_open_error(make_file("outside.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})", 16),
                    {"'a'", "byte range [16, 32) lies outside the data section (16 bytes"});
  expect_open_error(make_file("reversed.safetensors", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 16),
                    {"'a'", "lies outside the data section"});
}

TEST(SafeTensorsErrors, UnsupportedDtype) {
  expect_open_error(make_file("dtype.safetensors", R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4),
                    {"'a'", "unsupported dtype 'F8_E4M3'"});
  expect_open_error(make_file("dtype_number.safetensors", R"({"a":{"dtype":4,"shape":[4],"data_offsets":[0,16]}})", 16),
                    {"'a'", "non-string dtype"});
}

TEST(SafeTensorsErrors, MalformedEntries) {
  expect_open_error(make_file("no_offsets.safetensors", R"({"a":{"dtype":"F32","shape":[4]}})", 16),
                    {"'a'", "lacks dtype, shape or data_offsets"});
  expect_open_error(make_file("negative_dim.safetensors", R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", 16),
                    {"'a'", "invalid dimension"});
  expect_open_error(make_file("negative_offset.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[-16,0]}})", 16),
                    {"'a'", "data_offsets must be two non-negative integers"});
  expect_open_error(make_file("metadata.safetensors", R"({"__metadata__":{"steps":500}})", 0),
                    {"__metadata__ value for 'steps' is not a string"});
}

TEST(SafeTensorsErrors, FileSmallerThanLengthField) {
  const fs::path path = temp_file("tiny.safetensors");
  write_bytes(path, std::string("\x02\0\0\0\0", 5));
  expect_open_error(path, {"truncated safetensors file (5 bytes"});
  write_bytes(path, "");
  expect_open_error(path, {"(0 bytes"});
}

TEST(SafeTensorsErrors, MissingFileOrFolder) {
  expect_open_error(temp_file("does_not_exist.safetensors"), {"cannot open", "No such file"});
  expect_open_error(temp_file(""), {"not a regular file"});
}

TEST(SafeTensorsErrors, ValidFileStillOpens) {
  const auto st = SafeTensors::open(valid_file("valid.safetensors").string());
  EXPECT_TRUE(torch::equal(st.get("alpha"), torch::ones({4, 4})));
  EXPECT_THROW(st.get("gamma"), sine::Error);
}
