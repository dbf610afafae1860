// hwsync::lamport_clock: the three rules, the total order, the range check,
// and unique timestamps from concurrent threads.
#include "hwsync/clocks/lamport_clock.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "support/watchdog.hpp"

namespace {

using hwsync::lamport_clock;
using hwsync::lamport_timestamp;

static_assert(sizeof(lamport_clock) == 16);  // the header's contract

TEST(LamportClock, TickAndSendCountLocalEvents) {
  lamport_clock c(7);
  EXPECT_EQ(c.now(), (lamport_timestamp{0, 7}));
  EXPECT_EQ(c.tick(), (lamport_timestamp{1, 7}));
  EXPECT_EQ(c.send(), (lamport_timestamp{2, 7}));
  EXPECT_EQ(c.now().counter, 2u);
  EXPECT_EQ(c.node(), 7u);
}

TEST(LamportClock, ReceiveTakesTheMaximumPlusOne) {
  lamport_clock c(1, 10);
  EXPECT_EQ(c.receive({3, 2}).counter, 11u);   // local ahead: local + 1
  EXPECT_EQ(c.receive({40, 2}).counter, 41u);  // remote ahead: remote + 1
  EXPECT_EQ(c.receive({41, 2}).counter, 42u);  // equal: + 1
  EXPECT_EQ(c.tick().counter, 43u);
}

TEST(LamportClock, TimestampsOrderByCounterThenNode) {
  EXPECT_LT((lamport_timestamp{1, 9}), (lamport_timestamp{2, 0}));
  EXPECT_LT((lamport_timestamp{5, 1}), (lamport_timestamp{5, 2}));
  EXPECT_EQ((lamport_timestamp{5, 1}), (lamport_timestamp{5, 1}));
}

TEST(LamportClock, MessageChainIsOrdered) {
  lamport_clock a(1), b(2), c(3);
  const auto s1 = a.send();
  const auto r1 = b.receive(s1);
  const auto s2 = b.send();
  const auto r2 = c.receive(s2);
  EXPECT_LT(s1, r1);
  EXPECT_LT(r1, s2);
  EXPECT_LT(s2, r2);
}

TEST(LamportClock, ReceiveRejectsACounterThatWouldApproachWrapping) {
  lamport_clock c(4, 5);
  EXPECT_EQ(c.receive({lamport_clock::max_counter, 1}).counter, lamport_clock::max_counter + 1);
  lamport_clock d(4, 5);
  try {
    d.receive({lamport_clock::max_counter + 1, 9});
    FAIL() << "no clock_overflow";
  } catch (const hwsync::clock_overflow& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("expected a remote counter of at most 4611686018427387904"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("got 4611686018427387905 from node 9"), std::string::npos) << msg;
  }
  EXPECT_EQ(d.now().counter, 5u);  // unchanged
}

TEST(LamportClock, ConcurrentEventsGetDistinctIncreasingCounters) {
  hwsync::test::watchdog dog("lamport concurrent ticks", std::chrono::seconds(60));
  constexpr int threads = 4;
  constexpr int per_thread = 20000;
  lamport_clock c(0);
  std::vector<std::vector<std::uint64_t>> seen(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto& mine = seen[static_cast<std::size_t>(t)];
      for (int i = 0; i < per_thread; ++i) {
        // Alternate local events and receives of a counter from the past.
        const auto ts = (i % 3 == 0) ? c.receive({static_cast<std::uint64_t>(i), 99}) : c.tick();
        if (!mine.empty()) {
          ASSERT_GT(ts.counter, mine.back());
        }
        mine.push_back(ts.counter);
      }
    });
  }
  for (auto& th : pool) th.join();
  std::vector<std::uint64_t> all;
  for (const auto& v : seen) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "a counter was issued twice";
  EXPECT_GE(c.now().counter, all.size());
}

}  // namespace
