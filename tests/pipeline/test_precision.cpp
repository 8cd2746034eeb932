// Reduced precision on the CPU: the tiny reference model loaded in bf16 (built in bf16, weights
// converted per tensor at load) against the fp32 fixtures, within the bounds docs/performance.md
// states; fp16 where this LibTorch has the CPU kernels. And the fp32 load equals the fixtures.
#include "precision_util.h"

#include "core/runtime.h"

namespace sine::test {
namespace {

struct OneThread : ::testing::Environment {
  void SetUp() override { torch::set_num_threads(1); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new OneThread);

// bf16 keeps 8 bits of mantissa (relative rounding 2^-9 = 2e-3 per operation); through the tiny
// networks the measured errors are 1.5e-2 (text, UNet), 3e-2 (5-step txt2img) and 6e-2 (VAE decode,
// LibTorch 1.13; 4.5e-2 on 2.11), relative to max(1, max|ref|): docs/performance.md. Bound: 8e-2.
constexpr double kBf16Bound = 8e-2;
// fp16: 11 bits of mantissa; the same path measures 1.5e-3 to 5e-3 (LibTorch 2.11's CPU kernels).
constexpr double kFp16Bound = 1e-2;

TEST(Precision, Fp32LoadMatchesTheFixtures) {
  auto e = tiny_component_errors(torch::kCPU, torch::kFloat32);
  expect_within(e, 1e-4, "fp32");
}

TEST(Precision, Bf16OnTheCpuWithinTheStatedBound) {
  auto e = tiny_component_errors(torch::kCPU, torch::kBFloat16);
  expect_within(e, kBf16Bound, "bf16");
}

TEST(Precision, Bf16ModelIsBuiltAndStoredInBf16) {
  Pipeline pipe = load_tiny_pipeline(torch::kCPU, torch::kBFloat16);
  for (const auto& p : pipe.model()->named_parameters())
    ASSERT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
}

TEST(Precision, Fp16OnTheCpuWhereSupported) {
  ComponentErrors e;
  try {
    e = tiny_component_errors(torch::kCPU, torch::kFloat16);
  } catch (const c10::Error& err) {
    GTEST_SKIP() << "this LibTorch lacks fp16 CPU kernels: " << err.what_without_backtrace();
  }
  expect_within(e, kFp16Bound, "fp16");
}

}  // namespace
}  // namespace sine::test
