// Stress tests for hwsync::mutex, bounded in iterations and in seconds.
// Correctness is exact (counts, mutual exclusion); the one time bound is the
// fairness bound the issue states, and it is generous: it catches starvation
// (a waiter passed over for seconds), not slowness.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "hwsync/cycle_clock.hpp"
#include "hwsync/mutex.hpp"

namespace {

using namespace std::chrono_literals;

// A few shared cache lines written under the lock with plain stores: a lost
// update or a torn critical section shows up as a wrong count (and as a race
// under ThreadSanitizer).
struct alignas(64) line {
  std::uint64_t value = 0;
};

class CounterStress : public ::testing::TestWithParam<int> {};

TEST_P(CounterStress, EveryIncrementUnderTheLockIsCounted) {
  const int threads = GetParam();
  constexpr long total_ops = 1'000'000;
  const long per_thread = total_ops / threads;
  hwsync::mutex m;
  line lines[4];
  std::vector<std::thread> ts;
  std::atomic<int> go{0};
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      go.fetch_add(1);
      while (go.load() < threads) std::this_thread::yield();
      for (long i = 0; i < per_thread; ++i) {
        std::lock_guard g(m);
        for (line& l : lines) ++l.value;
      }
    });
  }
  for (auto& t : ts) t.join();
  for (const line& l : lines) EXPECT_EQ(l.value, static_cast<std::uint64_t>(per_thread * threads));
}

INSTANTIATE_TEST_SUITE_P(Threads, CounterStress, ::testing::Values(2, 8, 32));

// Threads take the lock with lock(), try_lock() and try_lock_for(), sleeping
// for random short times inside and outside; an occupancy count proves that
// no two threads are ever inside at once, and every hand-off path (barging,
// wake-up, hand-off mode, timeout) gets exercised.
TEST(MutexHandoffTorture, MutualExclusionUnderRandomSleeps) {
  constexpr int threads = 8;
  const auto run_for = 2s;
  hwsync::timed_mutex m;
  std::atomic<int> inside{0};
  std::atomic<bool> stop{false};
  std::atomic<long> acquisitions{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1);
      std::uniform_int_distribution<int> pick(0, 9);
      std::uniform_int_distribution<int> micros(0, 200);
      while (!stop.load(std::memory_order_relaxed)) {
        const int how = pick(rng);
        bool got;
        if (how < 6) {
          m.lock();
          got = true;
        } else if (how < 8) {
          got = m.try_lock();
        } else {
          got = m.try_lock_for(std::chrono::microseconds(micros(rng)));
        }
        if (got) {
          EXPECT_EQ(inside.fetch_add(1), 0);
          if (pick(rng) < 3) std::this_thread::sleep_for(std::chrono::microseconds(micros(rng)));
          EXPECT_EQ(inside.fetch_sub(1), 1);
          m.unlock();
          acquisitions.fetch_add(1, std::memory_order_relaxed);
        }
        if (pick(rng) < 3) std::this_thread::sleep_for(std::chrono::microseconds(micros(rng)));
      }
    });
  }
  std::this_thread::sleep_for(run_for);
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_GT(acquisitions.load(), 0);
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

// Starvation: seven threads hammer the lock back to back (their next lock()
// follows their unlock() at once, so without the hand-off they win nearly
// every race); one victim takes it now and then and records its longest
// single wait.
TEST(MutexFairness, LongestWaitStaysUnderTheStatedBound) {
  // The stated bound. The algorithm's own bound is about 1 ms of waiting
  // before hand-off; the rest is the scheduler: 9 runnable threads on this
  // 2-core machine (and ThreadSanitizer's slowdown).
  constexpr auto stated_bound = 1s;
  constexpr int hammers = 7;
  const auto run_for = 2s;
  hwsync::mutex m;
  std::atomic<bool> stop{false};
  long hammer_ops[hammers] = {};
  std::vector<std::thread> ts;
  for (int t = 0; t < hammers; ++t) {
    ts.emplace_back([&, t] {
      long n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        m.lock();
        ++n;
        m.unlock();
      }
      hammer_ops[t] = n;
    });
  }
  std::chrono::nanoseconds longest{0};
  long victim_ops = 0;
  const auto end = std::chrono::steady_clock::now() + run_for;
  while (std::chrono::steady_clock::now() < end) {
    const auto t0 = std::chrono::steady_clock::now();
    m.lock();
    const auto waited = std::chrono::steady_clock::now() - t0;
    m.unlock();
    longest = std::max(longest, std::chrono::duration_cast<std::chrono::nanoseconds>(waited));
    ++victim_ops;
    std::this_thread::sleep_for(100us);
  }
  stop = true;
  for (auto& t : ts) t.join();
  RecordProperty("longest_wait_us", static_cast<int>(longest.count() / 1000));
  std::printf("victim: %ld acquisitions, longest wait %.3f ms; hammers: %ld..%ld acquisitions\n",
              victim_ops, static_cast<double>(longest.count()) / 1e6,
              *std::min_element(hammer_ops, hammer_ops + hammers),
              *std::max_element(hammer_ops, hammer_ops + hammers));
  EXPECT_GT(victim_ops, 10);
  EXPECT_LT(longest, stated_bound);
}

}  // namespace
