// hwsync::hybrid_logical_clock on a manual physical source: the send and
// receive rules, steps back, the loud maximum-offset rejection, the logical
// counter's borrow, and distinct timestamps from concurrent threads.
#include "hwsync/clocks/hybrid_logical_clock.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using hwsync::hlc_timestamp;
using hwsync::hybrid_logical_clock;
using hwsync::manual_source;

constexpr std::int64_t ms = 1'000'000;  // ns

// The sizes the header's contract states.
static_assert(sizeof(hlc_timestamp) == 8);
static_assert(sizeof(hybrid_logical_clock) == 24);

TEST(HlcTimestamp, PacksFortyEightPhysicalAndSixteenLogicalBits) {
  const hlc_timestamp t(0x123456789abcull, 0x0def);
  EXPECT_EQ(t.raw(), 0x123456789abc0defull);
  EXPECT_EQ(t.physical_ms(), 0x123456789abcull);
  EXPECT_EQ(t.logical(), 0x0def);
  EXPECT_LT(hlc_timestamp(5, 0xffff), hlc_timestamp(6, 0));
  EXPECT_LT(hlc_timestamp(5, 1), hlc_timestamp(5, 2));
  EXPECT_EQ(hlc_timestamp(17, 3).to_string(), "17.3");
}

TEST(HybridLogicalClock, NowFollowsTheWallClockAndCountsWithinAMillisecond) {
  manual_source wall(1000 * ms + 400'000);
  hybrid_logical_clock c(wall);
  EXPECT_EQ(c.now(), hlc_timestamp(1000, 0));
  EXPECT_EQ(c.now(), hlc_timestamp(1000, 1));
  wall.advance(300'000ns);  // still within ms 1000
  EXPECT_EQ(c.now(), hlc_timestamp(1000, 2));
  wall.advance(1ms);
  EXPECT_EQ(c.now(), hlc_timestamp(1001, 0));
  EXPECT_EQ(c.last(), hlc_timestamp(1001, 0));
}

TEST(HybridLogicalClock, StaysMonotonicWhenTheWallClockStepsBack) {
  manual_source wall(5000 * ms);
  hybrid_logical_clock c(wall);
  const auto before = c.now();
  wall.set(3000 * ms);  // NTP steps the clock two seconds back
  const auto a = c.now();
  const auto b = c.now();
  EXPECT_GT(a, before);
  EXPECT_GT(b, a);
  EXPECT_EQ(a, hlc_timestamp(5000, 1));
  wall.set(5001 * ms);  // the wall clock catches up: logical resets
  EXPECT_EQ(c.now(), hlc_timestamp(5001, 0));
  wall.set(-5 * ms);  // before the epoch reads as 0
  EXPECT_EQ(c.now(), hlc_timestamp(5001, 1));
}

TEST(HybridLogicalClock, UpdateFollowsKulkarnisReceiveRule) {
  manual_source wall(1000 * ms);
  hybrid_logical_clock c(wall, 500ms);
  c.now();                                                   // 1000.0
  EXPECT_EQ(c.update({1200, 7}), hlc_timestamp(1200, 8));    // remote ahead
  EXPECT_EQ(c.update({900, 50}), hlc_timestamp(1200, 9));    // local ahead
  EXPECT_EQ(c.update({1200, 30}), hlc_timestamp(1200, 31));  // same ms: max logical + 1
  wall.set(1300 * ms);
  EXPECT_EQ(c.update({1250, 4}), hlc_timestamp(1300, 0));  // wall ahead of both
  EXPECT_EQ(c.update({1800, 0}), hlc_timestamp(1800, 1));  // exactly max_offset ahead
  EXPECT_EQ(c.now(), hlc_timestamp(1800, 2));
}

TEST(HybridLogicalClock, RejectsARemoteTooFarAheadAndSaysByHowMuch) {
  manual_source wall(1'700'000'000'000 * ms);
  hybrid_logical_clock c(wall, 250ms);
  const auto before = c.now();
  const hlc_timestamp remote(1'700'000'000'251, 3);
  try {
    c.update(remote);
    FAIL() << "accepted a remote timestamp 251 ms ahead with a 250 ms maximum offset";
  } catch (const hwsync::max_offset_exceeded& e) {
    EXPECT_EQ(e.remote_raw(), remote.raw());
    EXPECT_EQ(e.local_physical_ms(), 1'700'000'000'000);
    EXPECT_EQ(e.offset_ms(), 251);
    EXPECT_EQ(e.max_offset_ms(), 250);
    const std::string msg = e.what();
    for (const char* part :
         {"expected a remote timestamp at most 250 ms ahead", "got 1700000000251.3", "251 ms ahead",
          "local physical time 1700000000000 ms", "maximum offset 250 ms"}) {
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' missing from: " << msg;
    }
  }
  EXPECT_EQ(c.last(), before);  // a rejected timestamp leaves no trace
  EXPECT_THROW(c.update(hlc_timestamp(hlc_timestamp::max_physical_ms, 0)),
               hwsync::max_offset_exceeded);
}

TEST(HybridLogicalClock, RequiresAPositiveMaximumOffset) {
  manual_source wall;
  EXPECT_THROW(hybrid_logical_clock(wall, 0ms), std::invalid_argument);
  EXPECT_THROW(hybrid_logical_clock(wall, -1ms), std::invalid_argument);
}

// The documented overflow choice: the 65537th timestamp of one wall-clock
// millisecond borrows into the physical field instead of blocking.
TEST(HybridLogicalClock, LogicalOverflowBorrowsIntoThePhysicalField) {
  manual_source wall(42 * ms);
  hybrid_logical_clock c(wall);
  hlc_timestamp prev = c.now();
  ASSERT_EQ(prev, hlc_timestamp(42, 0));
  for (std::uint32_t i = 1; i <= hlc_timestamp::max_logical; ++i) {
    const auto t = c.now();
    ASSERT_EQ(t, hlc_timestamp(42, static_cast<std::uint16_t>(i)));
    prev = t;
  }
  const auto borrowed = c.now();
  EXPECT_EQ(borrowed, hlc_timestamp(43, 0));
  EXPECT_GT(borrowed, prev);
  // The wall clock catching up to the borrowed millisecond continues from it.
  wall.set(43 * ms);
  EXPECT_EQ(c.now(), hlc_timestamp(43, 1));
  // A remote at the top of the logical range borrows the same way.
  EXPECT_EQ(c.update({43, 0xffff}), hlc_timestamp(44, 0));
}

TEST(HybridLogicalClock, ConcurrentCallersGetDistinctIncreasingTimestamps) {
  hwsync::test::watchdog dog("hlc concurrent now/update", 60s);
  constexpr int threads = 4;
  constexpr int per_thread = 20000;
  manual_source wall(10 * ms);
  hybrid_logical_clock c(wall);
  std::vector<std::vector<std::uint64_t>> seen(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto& mine = seen[static_cast<std::size_t>(t)];
      for (int i = 0; i < per_thread; ++i) {
        if (t == 0 && i % 100 == 0) wall.advance(1ms);
        const auto ts = (i % 4 == 0) ? c.update({10, static_cast<std::uint16_t>(i)}) : c.now();
        if (!mine.empty()) {
          ASSERT_GT(ts.raw(), mine.back());
        }
        mine.push_back(ts.raw());
      }
    });
  }
  for (auto& th : pool) th.join();
  std::vector<std::uint64_t> all;
  for (const auto& v : seen) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end())
      << "a timestamp was issued twice";
}

TEST(HybridLogicalClock, OnTheSystemClockNeverBehindTheWallClock) {
  hybrid_logical_clock c;  // system_realtime()
  for (int i = 0; i < 1000; ++i) {
    const auto wall_before = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    const auto t = c.now();
    ASSERT_GE(static_cast<std::int64_t>(t.physical_ms()), wall_before);
  }
}

}  // namespace
