// hwsync::spinner: the budget ends spinning, slots cap concurrent spinners.
#include "hwsync/spin.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace {

TEST(Spinner, StopsWhenTheBudgetIsSpent) {
  if (hwsync::spinner_slots() == 0) GTEST_SKIP() << "one CPU: spinning is never allowed";
  const hwsync::spin_policy p{
      hwsync::cycle_clock::estimated_from_duration(std::chrono::microseconds(200)),
      hwsync::cycle_clock::estimated_from_duration(std::chrono::microseconds(1)),
      hwsync::cycle_clock::estimated_from_duration(std::chrono::microseconds(8))};
  hwsync::spinner s(p);
  const auto t0 = hwsync::cycle_clock::now();
  while (s.spin()) {
  }
  EXPECT_GE(hwsync::cycle_clock::now() - t0, p.budget);
  EXPECT_GT(s.steps(), 0u);
  EXPECT_FALSE(s.spin());  // stays stopped
}

// Only lower bounds on time: preemption can lengthen a step, never shorten it.
TEST(Spinner, IntervalsDoubleUpToTheMaximumAndEachStepWaitsItsInterval) {
  if (hwsync::spinner_slots() == 0) GTEST_SKIP() << "one CPU: spinning is never allowed";
  const hwsync::cycle_clock::ticks first = 1000;
  const hwsync::spin_policy p{~hwsync::cycle_clock::ticks{0} / 4, first, 8 * first};
  hwsync::spinner s(p);
  const hwsync::cycle_clock::ticks expected[] = {first,     2 * first, 4 * first,
                                                 8 * first, 8 * first, 8 * first};
  for (const auto interval : expected) {
    const auto t0 = hwsync::cycle_clock::now();
    ASSERT_TRUE(s.spin());
    EXPECT_GE(hwsync::cycle_clock::now() - t0, interval);
  }
  EXPECT_EQ(s.next_interval(), 8 * first);
}

TEST(Spinner, NeverPolicyParksAtOnce) {
  hwsync::spinner s(hwsync::spin_policy::never());
  EXPECT_FALSE(s.spin());
  EXPECT_EQ(s.steps(), 0u);
}

TEST(Spinner, AtMostOneSpinnerPerSpareCore) {
  const unsigned slots = hwsync::spinner_slots();
  // Hold every slot on this thread, then a further spinner must be refused.
  const hwsync::spin_policy forever{~hwsync::cycle_clock::ticks{0} / 2, 1, 1};
  std::vector<std::unique_ptr<hwsync::spinner>> held;
  for (unsigned i = 0; i < slots; ++i) {
    held.push_back(std::make_unique<hwsync::spinner>(forever));
    ASSERT_TRUE(held.back()->spin());
  }
  hwsync::spinner extra(forever);
  EXPECT_FALSE(extra.spin());
  held.clear();  // slots come back when spinners end
  hwsync::spinner again(forever);
  if (slots > 0) {
    EXPECT_TRUE(again.spin());
  }
}

}  // namespace
