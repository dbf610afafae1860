// hwsync::interval_clock: the interval from the error estimate, its growth
// and refresh, the unsynchronized bound, commit wait (on a manual source:
// no sleeping; and once for real on the system clock), and concurrent
// readers of the cached sample.
#include "hwsync/clocks/interval_clock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using hwsync::clock_error_estimate;
using hwsync::interval_clock;
using hwsync::manual_source;

constexpr std::int64_t ms = 1'000'000;  // ns

clock_error_estimate synced(std::chrono::nanoseconds max_error) {
  return {max_error, max_error / 2, true};
}

TEST(IntervalClock, SynchronizedIntervalIsTheKernelsMaxError) {
  manual_source wall(1000 * ms);
  wall.set_error_estimate(synced(2ms));
  interval_clock c(wall);
  const auto iv = c.now();
  EXPECT_EQ(iv.earliest_ns, 998 * ms);
  EXPECT_EQ(iv.latest_ns, 1002 * ms);
  EXPECT_TRUE(iv.synchronized);
  EXPECT_EQ(iv.estimated_error_ns, 1 * ms);
  EXPECT_EQ(iv.half_width_ns(), 2 * ms);
}

TEST(IntervalClock, BoundGrowsAtTheKernelsRateUntilTheNextSample) {
  manual_source wall(1000 * ms);
  wall.set_error_estimate(synced(2ms));
  interval_clock c(wall, {.unsynchronized_bound = 1s, .refresh_interval = 10ms});
  (void)c.now();
  wall.set_error_estimate(synced(1ms));  // not looked at until the refresh
  wall.advance(8ms);
  auto iv = c.now();
  EXPECT_EQ(iv.half_width_ns(), 2 * ms + 8 * ms / 1'000'000 * 500);  // + 500 ppm of 8 ms
  EXPECT_EQ(iv.earliest_ns + iv.half_width_ns(), 1008 * ms);
  wall.advance(3ms);  // 11 ms after the sample: re-read
  iv = c.now();
  EXPECT_EQ(iv.half_width_ns(), 1 * ms);
}

TEST(IntervalClock, UnsynchronizedClockWidensByTheDocumentedBound) {
  manual_source wall(50'000 * ms);
  wall.set_error_estimate({16s, 16s, false});
  interval_clock c(wall, {.unsynchronized_bound = 3s, .refresh_interval = 10ms});
  const auto iv = c.now();
  EXPECT_FALSE(iv.synchronized);
  EXPECT_EQ(iv.half_width_ns(), std::chrono::nanoseconds(16s + 3s).count());
  EXPECT_EQ(interval_clock::options{}.unsynchronized_bound, 1s);  // the documented default
}

TEST(IntervalClock, AStepBackIsNoticedAtOnce) {
  manual_source wall(9000 * ms);
  wall.set_error_estimate(synced(1ms));
  interval_clock c(wall);
  (void)c.now();
  wall.set_error_estimate({16s, 16s, false});  // what the kernel says after a step
  wall.set(8000 * ms);
  const auto iv = c.now();
  EXPECT_FALSE(iv.synchronized);
  EXPECT_EQ(iv.earliest_ns, 8000 * ms - std::chrono::nanoseconds(16s + 1s).count());
}

TEST(IntervalClock, AfterAndBefore) {
  manual_source wall(100 * ms);
  wall.set_error_estimate(synced(5ms));
  interval_clock c(wall);
  EXPECT_TRUE(c.after(94 * ms));
  EXPECT_FALSE(c.after(95 * ms));
  EXPECT_TRUE(c.before(106 * ms));
  EXPECT_FALSE(c.before(105 * ms));
}

TEST(IntervalClock, CommitWaitSleepsUntilTheTimestampIsCertainlyPast) {
  manual_source wall(1000 * ms);
  wall.set_error_estimate(synced(4ms));
  interval_clock c(wall);
  const std::int64_t commit = c.now().latest_ns;  // 1004 ms
  const auto iv = c.wait_until_after(commit);
  EXPECT_GT(iv.earliest_ns, commit);
  EXPECT_GE(wall.now_ns(), 1008 * ms);  // two half-widths later
  EXPECT_GE(wall.sleeps(), 1u);
  const auto sleeps = wall.sleeps();
  (void)c.wait_until_after(commit);  // already past: no sleep
  EXPECT_EQ(wall.sleeps(), sleeps);
}

TEST(IntervalClock, RejectsNegativeOptions) {
  manual_source wall;
  EXPECT_THROW(interval_clock(wall, {.unsynchronized_bound = -1ns}), std::invalid_argument);
  EXPECT_THROW(interval_clock(wall, {.refresh_interval = -1ns}), std::invalid_argument);
}

// The system clock and its real sleep, with the kernel's error estimate
// replaced by a small one: an unsynchronized host would make this wait 34 s.
class realtime_with_small_error final : public hwsync::physical_source {
 public:
  std::int64_t now_ns() noexcept override { return hwsync::system_realtime().now_ns(); }
  clock_error_estimate error_estimate() noexcept override { return synced(1ms); }
  void sleep_for(std::chrono::nanoseconds d) noexcept override {
    hwsync::system_realtime().sleep_for(d);
  }
};

TEST(IntervalClock, CommitWaitOnTheSystemClockSleeps) {
  hwsync::test::watchdog dog("interval_clock commit wait", 60s);
  realtime_with_small_error source;
  interval_clock c(source);
  const std::int64_t commit = c.now().latest_ns;
  const auto iv = c.wait_until_after(commit);
  EXPECT_GT(iv.earliest_ns, commit);
  EXPECT_GT(hwsync::system_realtime().now_ns(), commit + 1 * ms);
}

TEST(IntervalClock, SystemClockIntervalReflectsTheKernelsState) {
  interval_clock c;
  const auto kernel = hwsync::system_realtime().error_estimate();
  const auto iv = c.now();
  EXPECT_LE(iv.earliest_ns, iv.latest_ns);
  EXPECT_GE(iv.half_width_ns(), kernel.max_error.count() - 1);
  if (!kernel.synchronized && !iv.synchronized) {
    EXPECT_GE(iv.half_width_ns(), std::chrono::nanoseconds(kernel.max_error + 1s).count() - 1);
  }
  const auto wall = hwsync::system_realtime().now_ns();
  EXPECT_LT(iv.earliest_ns, wall);
}

// Readers racing a thread that keeps moving the time and switching the
// estimate between (2 ms, synchronized) and (500 ms, unsynchronized): a torn
// read of the cached sample would pair one estimate's flag with the other's
// width. Growth over the whole run stays below 10 ms (15 s at 500 ppm).
TEST(IntervalClock, ConcurrentReadersSeeWholeSamples) {
  hwsync::test::watchdog dog("interval_clock concurrent readers", 60s);
  manual_source wall(1000 * ms);
  wall.set_error_estimate(synced(2ms));
  interval_clock c(wall, {.unsynchronized_bound = 1s, .refresh_interval = 1ms});
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  std::atomic<int> bad{0};
  std::atomic<int> reads{0};
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        const auto iv = c.now();
        const std::int64_t w = iv.half_width_ns();
        const bool whole =
            iv.synchronized
                ? (w >= 2 * ms && w < 12 * ms && iv.estimated_error_ns == 1 * ms)
                : (w >= 1500 * ms && w < 1510 * ms && iv.estimated_error_ns == 250 * ms);
        if (iv.earliest_ns > iv.latest_ns || !whole) bad.fetch_add(1);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int i = 0; i < 20000; ++i) {
    wall.advance(std::chrono::microseconds(250 + i % 1000));
    wall.set_error_estimate(i % 2 ? synced(2ms) : clock_error_estimate{500ms, 250ms, false});
    if (i % 64 == 0) std::this_thread::yield();
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0) << "of " << reads.load() << " reads";
}

}  // namespace
