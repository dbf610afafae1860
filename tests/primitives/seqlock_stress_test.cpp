// Stress for hwsync::seqlock, bounded in operations and seconds, each test
// under a watchdog that fails the run instead of hanging CI: millions of
// reads against two writers with no torn value, and 16 readers with a writer
// that stalls mid-write on a 2-core machine, all finishing.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "hwsync/sanitizer.hpp"
#include "hwsync/seqlock.hpp"
#include "support/seqlock_test_access.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using access = hwsync::detail::seqlock_test_access;
using steady = std::chrono::steady_clock;

using hwsync::test::watchdog;

// Every word holds the same counter; a torn read has words that differ.
template <class Word, std::size_t Count>
struct payload {
  Word w[Count];
  static payload of(std::uint64_t n) {
    payload p;
    for (auto& x : p.w) x = static_cast<Word>(n);
    return p;
  }
  bool consistent() const {
    return std::all_of(std::begin(w), std::end(w), [&](Word x) { return x == w[0]; });
  }
};

template <class P>
class SeqlockTornReads : public ::testing::Test {};
using Payloads = ::testing::Types<payload<std::uint64_t, 8>, payload<std::uint32_t, 25>>;
TYPED_TEST_SUITE(SeqlockTornReads, Payloads);

// Two writers store their own counters back to back (one with store(), one
// with update()), four readers load: 5 million reads each in release builds,
// or 2 seconds, whichever ends first (ThreadSanitizer gets the time bound).
TYPED_TEST(SeqlockTornReads, MillionsOfReadsAgainstTwoWriters) {
  watchdog dog("torn-read stress", 120s);
  constexpr int readers = 4;
  constexpr long reads_each = 5'000'000;
  const auto end = steady::now() + 2s;
  hwsync::seqlock<TypeParam> s;
  std::atomic<int> readers_left{readers};
  std::atomic<long> reads{0}, torn{0}, writes{0};
  std::vector<std::thread> ts;
  ts.emplace_back([&] {
    long n = 0;
    for (std::uint64_t v = 1; readers_left.load(std::memory_order_relaxed) > 0; v += 2, ++n)
      s.store(TypeParam::of(v));
    writes.fetch_add(n);
  });
  ts.emplace_back([&] {
    long n = 0;
    for (; readers_left.load(std::memory_order_relaxed) > 0; ++n)
      s.update([](const TypeParam& p) { return TypeParam::of(p.w[0] + 1000); });
    writes.fetch_add(n);
  });
  for (int r = 0; r < readers; ++r) {
    ts.emplace_back([&] {
      long n = 0, bad = 0;
      for (; n < reads_each && (n % 1024 != 0 || steady::now() < end); ++n)
        if (!s.load().consistent()) ++bad;
      reads.fetch_add(n);
      torn.fetch_add(bad);
      readers_left.fetch_sub(1);
    });
  }
  for (auto& t : ts) t.join();
  std::printf("%ld reads, %ld writes, %ld torn\n", reads.load(), writes.load(), torn.load());
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(writes.load(), 0);
}

// 16 readers and a writer on 2 cores. Every 16th write the writer stalls
// mid-write for 200 µs (as if preempted there), so readers pile up behind an
// odd sequence, spin their few µs and park; the write's end wakes them. All
// of it must finish (the watchdog bounds it, no timing is asserted), no load
// may be torn, and the PARKED path must have been taken.
TEST(SeqlockOversubscribed, SixteenReadersAndAStallingWriterFinish) {
  watchdog dog("16 readers and a stalling writer", 120s);
  using value = payload<std::uint64_t, 4>;
  constexpr int readers = 16;
  constexpr int stalls = 20;
  const long reads_each = hwsync::tsan::enabled ? 20'000 : 200'000;
  hwsync::seqlock<value> s;
  std::atomic<bool> stalls_done{false};
  std::atomic<long> torn{0};
  int parked_seen = 0;
  long writes = 0;
  std::vector<std::thread> ts;
  ts.emplace_back([&] {
    int stalled = 0;
    // Writes end with the stalls: back-to-back stores against 16 readers
    // would only measure how often a reader's copy is overlapped.
    for (std::uint64_t v = 1; stalled < stalls; ++v, ++writes) {
      if (v % 16 == 0 && stalled < stalls) {
        const std::uint32_t begun = access::begin_write(s);
        access::write_words(s, value::of(v));
        std::this_thread::sleep_for(200us);
        if ((access::sequence(s) & hwsync::detail::seqlock_sequence::parked) != 0) ++parked_seen;
        access::end_write(s, begun);
        if (++stalled == stalls) stalls_done = true;
      } else {
        s.store(value::of(v));
      }
    }
  });
  for (int r = 0; r < readers; ++r) {
    ts.emplace_back([&] {
      long bad = 0;
      for (long n = 0; n < reads_each || !stalls_done.load(std::memory_order_relaxed); ++n)
        if (!s.load().consistent()) ++bad;
      torn.fetch_add(bad);
    });
  }
  for (auto& t : ts) t.join();
  std::printf("%ld writes, %d stalls, %d with a parked reader\n", writes, stalls, parked_seen);
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(parked_seen, 0);
}

}  // namespace
