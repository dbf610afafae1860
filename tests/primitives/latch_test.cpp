// hwsync::latch: std::latch's semantics, parked waiters released by the last
// count_down, the ordering count_down -> wait, timed waits on every kind of
// clock, and the debug-check aborts (as child processes).
#include "hwsync/latch.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/misuse.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using hwsync::test::watchdog;

TEST(Latch, MaxCoversThirtyOneBits) {
  EXPECT_EQ(hwsync::latch::max(), (std::ptrdiff_t{1} << 31) - 1);
  hwsync::latch l(hwsync::latch::max());
  EXPECT_FALSE(l.try_wait());
  l.count_down(hwsync::latch::max());
  EXPECT_TRUE(l.try_wait());
}

TEST(Latch, OpensWhenTheCountReachesZero) {
  hwsync::latch l(3);
  EXPECT_FALSE(l.try_wait());
  l.count_down(2);
  EXPECT_FALSE(l.try_wait());
  l.count_down(0);
  EXPECT_FALSE(l.try_wait());
  l.count_down();
  EXPECT_TRUE(l.try_wait());
  l.wait();  // open: returns at once
  EXPECT_TRUE(l.wait_for(0s));
}

TEST(Latch, AZeroLatchIsOpenFromTheStart) {
  hwsync::latch l(0);
  EXPECT_TRUE(l.try_wait());
  l.wait();
  l.arrive_and_wait(0);
}

TEST(Latch, ConstexprConstructible) {
  static constinit hwsync::latch l(1);
  EXPECT_FALSE(l.try_wait());
  l.count_down();
  EXPECT_TRUE(l.try_wait());
}

// Waiters that have parked (they have slept well past the spin budget) are
// all released by the one count_down that reaches zero, and each sees what
// the counting threads wrote before counting down.
TEST(Latch, ParkedWaitersAllSeeTheWritesOfEveryCountDown) {
  watchdog dog("latch waiters", 60s);
  constexpr int waiters = 8, counters = 4;
  hwsync::latch l(counters);
  int written[counters] = {};
  std::atomic<int> released{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < waiters; ++i) {
    ts.emplace_back([&] {
      l.wait();
      for (int c = 0; c < counters; ++c) EXPECT_EQ(written[c], c + 1);
      released.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(50ms);  // let them park; a waiter still spinning passes too
  EXPECT_EQ(released.load(), 0);
  for (int c = 0; c < counters; ++c) {
    ts.emplace_back([&, c] {
      written[c] = c + 1;
      l.count_down();
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(released.load(), waiters);
}

TEST(Latch, ArriveAndWaitReleasesEveryoneTogether) {
  watchdog dog("latch arrive_and_wait", 60s);
  constexpr int threads = 16;
  hwsync::latch l(threads);
  std::vector<int> slot(threads, 0);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      slot[static_cast<std::size_t>(i)] = i + 1;
      l.arrive_and_wait();
      for (int j = 0; j < threads; ++j) EXPECT_EQ(slot[static_cast<std::size_t>(j)], j + 1);
    });
  }
  for (auto& t : ts) t.join();
}

// A clock the kernel cannot wait on: detail::wait_until_on waits in
// steady_clock slices and re-reads this one.
struct offset_clock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<offset_clock>;
  [[maybe_unused]] static constexpr bool is_steady = false;
  static time_point now() noexcept {
    return time_point(std::chrono::steady_clock::now().time_since_epoch() + 1h);
  }
};

TEST(LatchTimed, ExpiresOnEveryClockAndStaysUsable) {
  hwsync::latch l(1);
  EXPECT_FALSE(l.wait_for(20ms));
  EXPECT_FALSE(l.wait_until(std::chrono::steady_clock::now() + 20ms));
  EXPECT_FALSE(l.wait_until(std::chrono::system_clock::now() + 20ms));
  EXPECT_FALSE(l.wait_until(offset_clock::now() + 20ms));
  EXPECT_FALSE(l.wait_until(std::chrono::steady_clock::now() - 1s));  // already past: one look
  EXPECT_FALSE(l.wait_for(-5ms));
  l.count_down();
  EXPECT_TRUE(l.wait_for(0ms));
  EXPECT_TRUE(l.wait_until(std::chrono::system_clock::now() - 1s));
  EXPECT_TRUE(l.wait_until(offset_clock::now() + 1h));
}

TEST(LatchTimed, ExpiresNoEarlierThanTheDeadline) {
  hwsync::latch l(1);
  const auto deadline = std::chrono::steady_clock::now() + 30ms;
  EXPECT_FALSE(l.wait_until(deadline));
  EXPECT_GE(std::chrono::steady_clock::now(), deadline);
}

TEST(LatchTimed, ReturnsTrueWhenOpenedBeforeTheDeadline) {
  watchdog dog("latch timed wait", 60s);
  hwsync::latch l(2);
  std::thread counter([&] {
    std::this_thread::sleep_for(20ms);
    l.count_down();
    std::this_thread::sleep_for(20ms);
    l.count_down();
  });
  std::thread steady([&] { EXPECT_TRUE(l.wait_for(30s)); });
  std::thread system([&] { EXPECT_TRUE(l.wait_until(std::chrono::system_clock::now() + 30s)); });
  std::thread other([&] { EXPECT_TRUE(l.wait_until(offset_clock::now() + 30s)); });
  EXPECT_TRUE(l.wait_until(std::chrono::steady_clock::now() + 30s));
  for (auto* t : {&counter, &steady, &system, &other}) t->join();
}

// A waiter whose wait timed out leaves PARKED set; a later waiter and the
// final count_down must still meet.
TEST(LatchTimed, ATimedOutWaiterLeavesNoLostWakeUp) {
  watchdog dog("latch after timeout", 60s);
  hwsync::latch l(1);
  EXPECT_FALSE(l.wait_for(10ms));
  std::thread waiter([&] { l.wait(); });
  std::this_thread::sleep_for(20ms);
  l.count_down();
  waiter.join();
  EXPECT_TRUE(l.try_wait());
}

// Debug checks: each misuse aborts in a child process with a message.
using hwsync::test::misuse_case;

class LatchMisuse : public ::testing::TestWithParam<misuse_case> {};

TEST_P(LatchMisuse, AbortsWithAMessage) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "built without HWSYNC_DEBUG_CHECKS";
  hwsync::test::expect_misuse_aborts(GetParam(), "hwsync::latch at 0x");
}

INSTANTIATE_TEST_SUITE_P(
    DebugChecks, LatchMisuse,
    ::testing::Values(misuse_case{"latch_count_down_past_zero", "count_down(n) past zero: n = 3"},
                      misuse_case{"latch_count_down_past_zero", "(limit 2)"},
                      misuse_case{"latch_negative_count_down", "n outside 0..max(): n = -1"},
                      misuse_case{"latch_expected_above_max",
                                  "expected count outside 0..max(): 2147483648"}));

}  // namespace
