// Stress tests for hwsync::shared_mutex, bounded in iterations and seconds.
// Correctness is exact (occupancy, counts, the lock word back at rest); the
// only time bound is the fairness bound the issue states, and it is
// generous: it catches a writer starved for seconds, not slowness. The
// reader_preferred starvation test asserts that the starvation its policy
// documents happened, and is built so that it cannot fail by chance.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "hwsync/shared_mutex.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using hwsync::rw_policy::phase_fair;
using hwsync::rw_policy::reader_preferred;
using hwsync::rw_policy::writer_preferred;
using bits = hwsync::detail::rw_word<hwsync::detail::rw_kind::phase_fair>;

template <class M>
std::uint64_t state(const M& m) {
  return hwsync::detail::shared_mutex_access::state(m);
}
// At rest: free and nobody waiting. PHASE and ADMITTED may keep the values
// the last admission left (see the header), so they are masked.
template <class M>
std::uint64_t rest(const M& m) {
  return state(m) & ~bits::at_rest;
}

template <class M>
class SharedMutexStress : public ::testing::Test {};
using Policies =
    ::testing::Types<hwsync::shared_mutex<phase_fair>, hwsync::shared_mutex<writer_preferred>,
                     hwsync::shared_mutex<reader_preferred>,
                     hwsync::shared_mutex<hwsync::rw_policy::strict_phase_fair>>;
TYPED_TEST_SUITE(SharedMutexStress, Policies);

// Who is inside, counted by the threads themselves around every acquisition
// and release. The invariant: writers == 0 || readers == 0, writers <= 1,
// upgraders <= 1 (the upgrader is also a reader).
struct occupancy {
  std::atomic<int> writers{0};
  std::atomic<int> readers{0};
  std::atomic<int> upgraders{0};

  void enter_exclusive() {
    EXPECT_EQ(writers.fetch_add(1), 0) << "two writers inside";
    EXPECT_EQ(readers.load(), 0) << "a writer inside with readers";
  }
  void leave_exclusive() { writers.fetch_sub(1); }
  void enter_shared() {
    readers.fetch_add(1);
    EXPECT_EQ(writers.load(), 0) << "a reader inside with a writer";
  }
  void leave_shared() { readers.fetch_sub(1); }
  void enter_upgrade() {
    EXPECT_EQ(upgraders.fetch_add(1), 0) << "two upgraders inside";
    enter_shared();
  }
  void upgrade_to_exclusive() {
    upgraders.fetch_sub(1);
    readers.fetch_sub(1);
    enter_exclusive();
  }
  // Called while still exclusive, before the downgrade, so that nobody can
  // see the writer count of a thread that is already a reader.
  void downgrade() {
    writers.fetch_sub(1);
    readers.fetch_add(1);
  }
  void leave_upgrade() {
    readers.fetch_sub(1);
    upgraders.fetch_sub(1);
  }
};

// Every member, at random, with random short sleeps inside and outside, on 8
// threads: exercises every wait and every hand-over (admission, writer
// wake-up, upgrade-right wake-up, timeouts of each kind of waiter).
// `version` is written only under the exclusive lock: an upgrade and a
// downgrade must each see the value they left.
TYPED_TEST(SharedMutexStress, TortureKeepsTheInvariantAndReturnsToRest) {
  constexpr int threads = 8;
  const auto run_for = 1500ms;
  TypeParam m;
  occupancy occ;
  long version = 0;
  std::atomic<bool> stop{false};
  std::atomic<long> ops[4] = {};  // exclusive, shared, upgrade, timeouts
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 17);
      std::uniform_int_distribution<int> pick(0, 15);
      std::uniform_int_distribution<int> micros(0, 100);
      auto maybe_sleep = [&](int odds) {
        if (pick(rng) < odds) std::this_thread::sleep_for(std::chrono::microseconds(micros(rng)));
      };
      auto exclusive_body = [&]() {
        occ.enter_exclusive();
        const long mine = ++version;
        maybe_sleep(2);
        if (pick(rng) < 5) {
          occ.downgrade();
          m.unlock_and_lock_shared();
          EXPECT_EQ(version, mine) << "a writer ran during the downgrade";
          maybe_sleep(2);
          occ.leave_shared();
          m.unlock_shared();
        } else {
          occ.leave_exclusive();
          m.unlock();
        }
        ops[0].fetch_add(1, std::memory_order_relaxed);
      };
      auto shared_body = [&]() {
        occ.enter_shared();
        EXPECT_GE(version, 0);
        maybe_sleep(2);
        occ.leave_shared();
        m.unlock_shared();
        ops[1].fetch_add(1, std::memory_order_relaxed);
      };
      auto upgrade_body = [&]() {
        occ.enter_upgrade();
        const long seen = version;
        maybe_sleep(2);
        const int how = pick(rng);
        if (how < 8) {
          m.unlock_upgrade_and_lock();
          occ.upgrade_to_exclusive();
          EXPECT_EQ(version, seen) << "a writer ran between lock_upgrade() and the upgrade";
          ++version;
          occ.leave_exclusive();
          m.unlock();
        } else if (how < 12) {
          // Counted out before the release, as every release here is: once
          // the right is free another thread may take it and count itself in.
          occ.upgraders.fetch_sub(1);
          m.unlock_upgrade_and_lock_shared();
          maybe_sleep(2);
          occ.leave_shared();
          m.unlock_shared();
        } else {
          occ.leave_upgrade();
          m.unlock_upgrade();
        }
        ops[2].fetch_add(1, std::memory_order_relaxed);
      };
      while (!stop.load(std::memory_order_relaxed)) {
        const auto timeout = std::chrono::microseconds(micros(rng));
        switch (pick(rng)) {
          case 0:
          case 1:
          case 2:
            m.lock();
            exclusive_body();
            break;
          case 3:
            if (m.try_lock()) exclusive_body();
            break;
          case 4:
            if (m.try_lock_for(timeout)) {
              exclusive_body();
            } else {
              ops[3].fetch_add(1, std::memory_order_relaxed);
            }
            break;
          case 5:
          case 6:
          case 7:
          case 8:
            m.lock_shared();
            shared_body();
            break;
          case 9:
            if (m.try_lock_shared()) shared_body();
            break;
          case 10:
            if (m.try_lock_shared_for(timeout)) {
              shared_body();
            } else {
              ops[3].fetch_add(1, std::memory_order_relaxed);
            }
            break;
          case 11:
          case 12:
            m.lock_upgrade();
            upgrade_body();
            break;
          case 13:
            if (m.try_lock_upgrade_for(timeout)) {
              upgrade_body();
            } else {
              ops[3].fetch_add(1, std::memory_order_relaxed);
            }
            break;
          case 14:
            if (m.try_lock_shared_until(std::chrono::system_clock::now() + timeout)) {
              shared_body();
            } else {
              ops[3].fetch_add(1, std::memory_order_relaxed);
            }
            break;
          default:
            if (m.try_lock_upgrade()) upgrade_body();
        }
        maybe_sleep(3);
      }
    });
  }
  std::this_thread::sleep_for(run_for);
  stop = true;
  for (auto& t : ts) t.join();
  std::printf("exclusive %ld, shared %ld, upgrade %ld, timed out %ld\n", ops[0].load(),
              ops[1].load(), ops[2].load(), ops[3].load());
  EXPECT_GT(ops[0].load(), 0);
  EXPECT_GT(ops[1].load(), 0);
  EXPECT_GT(ops[2].load(), 0);
  EXPECT_EQ(rest(m), 0u) << std::hex << state(m);
}

// Read-modify-write through the upgradeable mode against plain writers and
// readers: every increment is counted exactly once, and the value read
// under the upgrade lock is still the value once the upgrade completes.
TYPED_TEST(SharedMutexStress, UpgradesAndDowngradesAreAtomicUnderContention) {
  const auto run_for = 500ms;
  TypeParam m;
  long counter = 0;  // plain: only the lock orders it
  std::atomic<bool> stop{false};
  std::atomic<long> upgrades{0}, writes{0}, reads{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t) {
    ts.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        m.lock_upgrade();
        const long seen = counter;
        m.unlock_upgrade_and_lock();
        EXPECT_EQ(counter, seen);
        counter = seen + 1;
        m.unlock_and_lock_shared();
        EXPECT_EQ(counter, seen + 1);
        m.unlock_shared();
        upgrades.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int t = 0; t < 2; ++t) {
    ts.emplace_back([&, t] {
      int i = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        m.lock();
        const long mine = ++counter;
        if (++i % 2 == t) {
          m.unlock_and_lock_shared();
          EXPECT_EQ(counter, mine);
          m.unlock_shared();
        } else {
          m.unlock();
        }
        writes.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int t = 0; t < 3; ++t) {
    ts.emplace_back([&] {
      long last = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        m.lock_shared();
        EXPECT_GE(counter, last);
        last = counter;
        m.unlock_shared();
        reads.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::yield();
      }
    });
  }
  std::this_thread::sleep_for(run_for);
  stop = true;
  for (auto& t : ts) t.join();
  std::printf("upgrades %ld, writes %ld, reads %ld\n", upgrades.load(), writes.load(),
              reads.load());
  EXPECT_GT(upgrades.load(), 0);
  EXPECT_GT(writes.load(), 0);
  EXPECT_EQ(counter, upgrades.load() + writes.load());
  EXPECT_EQ(rest(m), 0u) << std::hex << state(m);
}

// ---------------------------------------------------------------------------
// Fairness under a continuous stream of readers.
//
// The stream is a relay: each reader leaves only once another reader has
// entered after it, so the lock is never without a reader for as long as
// new readers can get in. (Under phase_fair and writer_preferred a waiting
// writer holds new readers back, so a reader there also leaves after
// `hold_limit`: otherwise the relay would wait for a successor that waits
// for the writer that waits for the relay.) This is the worst case for a
// writer: a stream of overlapping readers.

struct relay {
  std::atomic<std::uint64_t> entries{0};
  std::atomic<std::uint64_t> reads{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;

  template <class M>
  void start(M& m, int n, std::chrono::microseconds hold_limit) {
    for (int i = 0; i < n; ++i) {
      readers.emplace_back([this, &m, hold_limit] {
        while (!stop.load(std::memory_order_relaxed)) {
          m.lock_shared();
          const std::uint64_t mine = entries.fetch_add(1) + 1;
          const auto t0 = steady::now();
          while (entries.load() == mine && !stop.load(std::memory_order_relaxed)) {
            if (hold_limit.count() != 0 && steady::now() - t0 >= hold_limit) break;
            std::this_thread::yield();
          }
          m.unlock_shared();
          reads.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    // Running: several hand-overs have happened.
    while (entries.load() < 2u * static_cast<unsigned>(n)) std::this_thread::yield();
  }
  void finish() {
    stop = true;
    for (auto& t : readers) t.join();
  }
};

// phase_fair and writer_preferred: a waiting writer lets readers in for its
// grace window (Policy::writer_grace, 50 µs by default), then holds back new
// readers and waits only for the ones inside, so its wait is bounded by the
// window plus how long they stay (here at most hold_limit, 1 ms) plus
// wake-ups. The stated bound is 1 s: about 1000 times that, for 17 runnable
// threads on this 2-core machine and ThreadSanitizer's slowdown.
template <class M>
void writer_wait_stays_under_the_bound(int reader_threads) {
  constexpr auto hold_limit = 1000us;
  constexpr std::chrono::milliseconds stated_bound = 1s;
  static_assert(M::policy::writer_grace + hold_limit < stated_bound / 100,
                "the stated bound leaves room for scheduling, not for the algorithm's own wait");
  const auto run_for = 300ms;
  M m;
  relay r;
  r.start(m, reader_threads, hold_limit);
  std::chrono::nanoseconds longest{0};
  long writes = 0;
  const auto end = steady::now() + run_for;
  while (steady::now() < end) {
    const auto t0 = steady::now();
    m.lock();
    const auto waited = steady::now() - t0;
    m.unlock();
    longest = std::max(longest, std::chrono::duration_cast<std::chrono::nanoseconds>(waited));
    ++writes;
    std::this_thread::sleep_for(1ms);
  }
  const std::uint64_t reads = r.reads.load();
  r.finish();
  std::printf("%d readers: writer %ld acquisitions, longest wait %.3f ms; %llu reads\n",
              reader_threads, writes, static_cast<double>(longest.count()) / 1e6,
              static_cast<unsigned long long>(reads));
  EXPECT_GT(writes, 10);
  EXPECT_GT(reads, 0u);
  EXPECT_LT(longest, stated_bound);
  EXPECT_EQ(rest(m), 0u) << std::hex << state(m);
}

class PhaseFairWriterBound : public ::testing::TestWithParam<int> {};
TEST_P(PhaseFairWriterBound, WritersWaitUnderTheStatedBound) {
  writer_wait_stays_under_the_bound<hwsync::shared_mutex<phase_fair>>(GetParam());
}
INSTANTIATE_TEST_SUITE_P(Readers, PhaseFairWriterBound, ::testing::Values(2, 4, 8, 16));

class WriterPreferredWriterBound : public ::testing::TestWithParam<int> {};
TEST_P(WriterPreferredWriterBound, WritersWaitUnderTheStatedBound) {
  writer_wait_stays_under_the_bound<hwsync::shared_mutex<writer_preferred>>(GetParam());
}
INSTANTIATE_TEST_SUITE_P(Readers, WriterPreferredWriterBound, ::testing::Values(2, 4, 8, 16));

// reader_preferred: readers never wait for a waiting writer, so while the
// relay runs (with no hold limit: a reader leaves only after a successor is
// inside) the lock never empties and the writer cannot get in. This is the
// documented starvation, shown deterministically: the writer is registered
// as waiting, and does not get in during the window whatever the scheduler
// does; it gets in once the relay stops.
// Brandenburg and Anderson's rule, with no grace window: the same bound.
class StrictPhaseFairWriterBound : public ::testing::TestWithParam<int> {};
TEST_P(StrictPhaseFairWriterBound, WritersWaitUnderTheStatedBound) {
  writer_wait_stays_under_the_bound<hwsync::shared_mutex<hwsync::rw_policy::strict_phase_fair>>(
      GetParam());
}
INSTANTIATE_TEST_SUITE_P(Readers, StrictPhaseFairWriterBound, ::testing::Values(2, 16));

class ReaderPreferredStarvation : public ::testing::TestWithParam<int> {};
TEST_P(ReaderPreferredStarvation, AContinuousReaderStreamStarvesTheWriter) {
  const auto window = 300ms;
  hwsync::shared_mutex<reader_preferred> m;
  relay r;
  r.start(m, GetParam(), 0us);
  std::atomic<bool> got_in{false};
  std::chrono::nanoseconds waited{0};
  std::thread writer([&] {
    const auto t0 = steady::now();
    m.lock();
    waited = steady::now() - t0;
    got_in = true;
    m.unlock();
  });
  // The writer is waiting (registered in the word) before the window opens.
  const auto give_up = steady::now() + 10s;
  while (((state(m) & bits::wwait_mask) == 0) && steady::now() < give_up) std::this_thread::yield();
  ASSERT_NE(state(m) & bits::wwait_mask, 0u) << "the writer never started waiting";
  const std::uint64_t reads_before = r.reads.load();
  const auto t0 = steady::now();
  std::this_thread::sleep_for(window);
  const bool starved = !got_in.load();
  const std::uint64_t reads_during = r.reads.load() - reads_before;
  const auto window_measured = steady::now() - t0;
  r.finish();
  writer.join();
  std::printf("%d readers: %llu reads in %.0f ms while the writer waited; writer waited %.1f ms\n",
              GetParam(), static_cast<unsigned long long>(reads_during),
              std::chrono::duration<double, std::milli>(window_measured).count(),
              std::chrono::duration<double, std::milli>(waited).count());
  EXPECT_TRUE(starved) << "the writer got in while readers streamed";
  EXPECT_GT(reads_during, 0u) << "readers did not stream during the window";
  EXPECT_GE(waited, window) << "the measured wait should span the whole window";
  EXPECT_EQ(rest(m), 0u) << std::hex << state(m);
}
INSTANTIATE_TEST_SUITE_P(Readers, ReaderPreferredStarvation, ::testing::Values(2, 4, 8, 16));

}  // namespace
