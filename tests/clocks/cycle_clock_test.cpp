// hwsync::cycle_clock. Also run by ctest as cycle_clock_fallback_test with
// HWSYNC_CYCLE_CLOCK=monotonic, which forces the clock_gettime fallback.
#include "hwsync/cycle_clock.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <thread>

namespace {

using namespace std::chrono_literals;

bool fallback_forced() {
  const char* v = std::getenv("HWSYNC_CYCLE_CLOCK");
  return v && std::strcmp(v, "monotonic") == 0;
}

TEST(CycleClock, ModeFollowsTheOverride) {
  if (fallback_forced()) {
    EXPECT_FALSE(hwsync::cycle_clock::is_invariant_tsc());
    EXPECT_EQ(hwsync::cycle_clock::ticks_per_second(), 1e9);
  } else {
    // Every x86-64 machine this project targets has an invariant TSC; a
    // machine without one would still pass through the fallback branch.
    EXPECT_GT(hwsync::cycle_clock::ticks_per_second(), 1e8);
  }
}

TEST(CycleClock, NowNeverGoesBackwardsOnOneThread) {
  auto prev = hwsync::cycle_clock::now();
  for (int i = 0; i < 100000; ++i) {
    const auto t = hwsync::cycle_clock::now();
    ASSERT_GE(t, prev);
    prev = t;
  }
}

TEST(CycleClock, SerializedReadsBracketARegion) {
  const auto a = hwsync::cycle_clock::start();
  const auto b = hwsync::cycle_clock::stop();
  EXPECT_GE(b, a);
}

TEST(CycleClock, CalibrationAgreesWithTheMonotonicClock) {
  const double hz = hwsync::cycle_clock::ticks_per_second();
  const auto c0 = std::chrono::steady_clock::now();
  const auto t0 = hwsync::cycle_clock::now();
  std::this_thread::sleep_for(50ms);
  const auto t1 = hwsync::cycle_clock::now();
  const auto c1 = std::chrono::steady_clock::now();
  const double measured = static_cast<double>(t1 - t0) / hz;
  const double reference = std::chrono::duration<double>(c1 - c0).count();
  // Both spans bracket the same sleep; only the reads' own placement differs.
  EXPECT_NEAR(measured / reference, 1.0, 0.02);
}

TEST(CycleClock, EstimateIsCloseToTheCalibration) {
  const double estimate = hwsync::cycle_clock::estimated_ticks_per_second();
  const double calibrated = hwsync::cycle_clock::ticks_per_second();
  EXPECT_NEAR(estimate / calibrated, 1.0, 0.05);
}

TEST(CycleClock, DurationConversionsRoundTrip) {
  const auto ticks = hwsync::cycle_clock::from_duration(10ms);
  const auto back = hwsync::cycle_clock::to_duration<std::chrono::microseconds>(ticks);
  EXPECT_NEAR(static_cast<double>(back.count()), 10000.0, 2.0);
  EXPECT_EQ(hwsync::cycle_clock::from_duration(-5ms), 0u);
}

}  // namespace
