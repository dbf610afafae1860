// Stress for hwsync's semaphores with 2 to 32 threads, each run bounded in
// iterations and in seconds and under a watchdog. Every check is exact: the
// number of permit holders never exceeds the permits, the count returns to
// its initial value, no permit is lost to a timeout, and the fair semaphore
// grants in arrival order. No check depends on how fast anything ran.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "hwsync/sanitizer.hpp"
#include "hwsync/semaphore.hpp"
#include "hwsync/spin.hpp"
#include "support/watchdog.hpp"

// The test hook hwsync/semaphore.hpp declares: the raw word.
namespace hwsync::detail {
struct semaphore_test_access {
  template <class S>
  static std::uint64_t state(const S& s) {
    return s.word_.raw();
  }
};
}  // namespace hwsync::detail

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using hwsync::detail::semaphore_test_access;
using hwsync::test::watchdog;

template <class S>
std::uint32_t waiters(const S& s) {
  return hwsync::detail::semaphore_high(semaphore_test_access::state(s));
}

// How long one configuration may run; the iteration bound usually ends it
// first on an idle machine.
constexpr auto time_bound = 2s;

template <class S>
class SemaphoreStress : public ::testing::Test {};
using Semaphores =
    ::testing::Types<hwsync::counting_semaphore<>, hwsync::fair_counting_semaphore<>>;
TYPED_TEST_SUITE(SemaphoreStress, Semaphores);

// Threads take permits by acquire(), try_acquire() and try_acquire_for(),
// sometimes two at once (the second only by try_acquire, so nobody waits
// while holding one), and give them back with release(1) or release(2).
// Holders are counted around every hold: never more than the permits.
TYPED_TEST(SemaphoreStress, ContentionKeepsTheExactCount) {
  constexpr std::uint32_t permits = 3;
  const long iterations = hwsync::tsan::enabled ? 5'000 : 20'000;
  for (int threads : {2, 4, 8, 16, 32}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    watchdog dog("contention", 120s);
    TypeParam s(permits);
    std::atomic<int> holders{0}, most_holders{0};
    std::atomic<long> taken{0}, given{0};
    std::atomic<bool> stop{false};
    const auto until = steady::now() + time_bound;
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        std::minstd_rand rng(static_cast<unsigned>(t) * 7919u + 1u);
        for (long i = 0; i < iterations && !stop.load(std::memory_order_relaxed); ++i) {
          if ((i & 255) == 0 && steady::now() >= until) stop = true;
          bool got = false;
          switch (rng() % 4) {
            case 0:
            case 1:
              s.acquire();
              got = true;
              break;
            case 2:
              got = s.try_acquire();
              break;
            case 3:
              got = s.try_acquire_for(std::chrono::microseconds(rng() % 50));
              break;
          }
          if (!got) continue;
          const int held = (rng() % 8 == 0 && s.try_acquire()) ? 2 : 1;
          const int now = holders.fetch_add(held) + held;
          int seen = most_holders.load();
          while (now > seen && !most_holders.compare_exchange_weak(seen, now)) {
          }
          taken.fetch_add(held, std::memory_order_relaxed);
          holders.fetch_sub(held);
          given.fetch_add(held, std::memory_order_relaxed);
          s.release(held);
        }
      });
    }
    for (auto& th : ts) th.join();
    EXPECT_LE(most_holders.load(), static_cast<int>(permits)) << "more holders than permits";
    EXPECT_EQ(taken.load(), given.load());
    EXPECT_GT(taken.load(), 0);
    EXPECT_EQ(semaphore_test_access::state(s), permits)
        << "count back to " << permits << ", nobody registered or queued";
    for (std::uint32_t i = 0; i < permits; ++i) EXPECT_TRUE(s.try_acquire());
    EXPECT_FALSE(s.try_acquire());
  }
}

// Producers release permits in batches of 1 to 3; consumers, most of the
// threads, take them one by one with acquire() and park when none is free.
// Each consumer claims a ticket before each acquire, so exactly `total`
// acquires happen; if the time bound stops the producers early, the test
// releases the rest in one release(n). Every permit moves exactly once.
TYPED_TEST(SemaphoreStress, ProducersAndConsumersMoveEveryPermitOnce) {
  const long total = hwsync::tsan::enabled ? 50'000 : 200'000;
  for (int threads : {2, 4, 8, 16, 32}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    watchdog dog("producers/consumers", 120s);
    TypeParam s(0);
    const int producers = std::max(1, threads / 4);
    const int consumers = threads - producers;
    std::atomic<long> to_produce{total}, tickets{0}, consumed{0};
    const auto until = steady::now() + time_bound;
    std::vector<std::thread> producer_threads, consumer_threads;
    for (int p = 0; p < producers; ++p) {
      producer_threads.emplace_back([&, p] {
        std::minstd_rand rng(static_cast<unsigned>(p) + 11u);
        for (long i = 0;; ++i) {
          if ((i & 255) == 0 && steady::now() >= until) return;
          const long want = 1 + static_cast<long>(rng() % 3);
          long left = to_produce.load();
          long n = 0;
          do {
            n = std::min(want, left);
            if (n == 0) return;
          } while (!to_produce.compare_exchange_weak(left, left - n));
          s.release(n);
        }
      });
    }
    for (int c = 0; c < consumers; ++c) {
      consumer_threads.emplace_back([&] {
        while (tickets.fetch_add(1) < total) {
          s.acquire();
          consumed.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (auto& th : producer_threads) th.join();
    const long produced = total - to_produce.load();
    EXPECT_GT(produced, 0);
    if (produced < total) s.release(total - produced);
    for (auto& th : consumer_threads) th.join();
    EXPECT_EQ(consumed.load(), total);
    EXPECT_EQ(semaphore_test_access::state(s), 0u) << "every permit taken, nobody waiting";
  }
}

// A permit handed to a waiter whose deadline passes at that moment must not
// vanish: one thread releases permits one by one while timed waiters with
// deadlines of 0 to 100 µs take them. Everything released is taken or still
// free at the end.
TYPED_TEST(SemaphoreStress, TimeoutsRacingReleasesLoseNoPermit) {
  const long releases = hwsync::tsan::enabled ? 20'000 : 50'000;
  for (int threads : {2, 8, 32}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    watchdog dog("timeouts", 120s);
    TypeParam s(0);
    std::atomic<long> released{0}, taken{0}, timeouts{0};
    std::atomic<bool> releaser_done{false};
    const auto until = steady::now() + time_bound;
    std::vector<std::thread> ts;
    ts.emplace_back([&] {
      std::minstd_rand rng(5);
      for (long i = 0; i < releases && steady::now() < until; ++i) {
        released.fetch_add(1);
        s.release();
        for (unsigned spin = rng() % 64; spin != 0; --spin) hwsync::cpu_relax();
      }
      releaser_done = true;
    });
    for (int t = 1; t < threads; ++t) {
      ts.emplace_back([&, t] {
        std::minstd_rand rng(static_cast<unsigned>(t) * 31u);
        while (!releaser_done.load() || taken.load() < released.load()) {
          if (steady::now() >= until + 1s) return;  // the check below reports
          if (s.try_acquire_for(std::chrono::microseconds(rng() % 100))) {
            taken.fetch_add(1);
          } else {
            timeouts.fetch_add(1, std::memory_order_relaxed);
          }
        }
      });
    }
    for (auto& th : ts) th.join();
    const std::uint64_t left = hwsync::detail::semaphore_count(semaphore_test_access::state(s));
    EXPECT_EQ(taken.load() + static_cast<long>(left), released.load())
        << "permits lost: " << timeouts.load() << " timeouts";
    EXPECT_EQ(waiters(s), 0u);
  }
}

// The fair semaphore's order with up to 32 waiters: every round queues the
// threads one after another (each started once the previous one is seen
// queued), then releases permits in batches of 1 to 3; each batch must go to
// exactly the next waiters in arrival order.
TEST(FairSemaphoreStress, ManyWaitersAreGrantedInArrivalOrder) {
  const int rounds = hwsync::tsan::enabled ? 10 : 20;
  for (int threads : {2, 4, 8, 16, 32}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    watchdog dog("fair order", 120s);
    const auto until = steady::now() + time_bound;
    std::minstd_rand rng(static_cast<unsigned>(threads));
    for (int round = 0; round < rounds && steady::now() < until; ++round) {
      hwsync::fair_counting_semaphore<> s(0);
      std::vector<std::atomic<bool>> done(static_cast<std::size_t>(threads));
      std::atomic<int> finished{0};
      std::vector<std::thread> ts;
      for (int i = 0; i < threads; ++i) {
        ts.emplace_back([&, i] {
          s.acquire();
          done[static_cast<std::size_t>(i)] = true;
          finished.fetch_add(1);
        });
        while (waiters(s) != static_cast<std::uint32_t>(i + 1)) std::this_thread::yield();
      }
      int granted = 0;
      while (granted < threads) {
        const int batch = std::min(threads - granted, 1 + static_cast<int>(rng() % 3));
        s.release(batch);
        granted += batch;
        while (finished.load() != granted) std::this_thread::yield();
        for (int i = 0; i < threads; ++i)
          ASSERT_EQ(done[static_cast<std::size_t>(i)].load(), i < granted)
              << "round " << round << ": waiter " << i << " after " << granted << " grants";
      }
      for (auto& th : ts) th.join();
      EXPECT_EQ(semaphore_test_access::state(s), 0u);
    }
  }
}

}  // namespace
