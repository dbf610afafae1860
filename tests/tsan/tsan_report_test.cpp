// Under -fsanitize=thread, hwsync::mutex must look like a mutex to TSan: a
// planted race and a planted lock-order inversion are reported, correct code
// is not. Each case runs as a child process (tests/tsan/planted.cpp) because
// a report ends the reporting process.
#include <gtest/gtest.h>

#include <string>

#include "hwsync/sanitizer.hpp"
#include "support/child_process.hpp"

namespace {

hwsync::test::child_result run_planted(const char* which) {
  const std::string program = hwsync::test::env_path("HWSYNC_TSAN_PLANTED");
  EXPECT_FALSE(program.empty()) << "HWSYNC_TSAN_PLANTED is not set (run through ctest)";
  return hwsync::test::run_child({program, which});
}

TEST(TsanReports, PlantedDataRaceIsReported) {
  if (!hwsync::tsan::enabled) GTEST_SKIP() << "not a ThreadSanitizer build";
  const auto r = run_planted("race");
  EXPECT_NE(r.output.find("WARNING: ThreadSanitizer: data race"), std::string::npos) << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
}

TEST(TsanReports, PlantedLockOrderInversionIsReported) {
  if (!hwsync::tsan::enabled) GTEST_SKIP() << "not a ThreadSanitizer build";
  const auto r = run_planted("inversion");
  EXPECT_NE(r.output.find("WARNING: ThreadSanitizer: lock-order-inversion (potential deadlock)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
}

TEST(TsanReports, CorrectCodeRunsClean) {
  if (!hwsync::tsan::enabled) GTEST_SKIP() << "not a ThreadSanitizer build";
  const auto r = run_planted("clean");
  EXPECT_EQ(r.output.find("ThreadSanitizer"), std::string::npos) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// In every build: the planted programs behave as plain programs would.
TEST(TsanReports, CleanCaseComputesTheRightCount) {
  const auto r = run_planted("clean");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
