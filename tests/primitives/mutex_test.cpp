// hwsync::mutex and hwsync::timed_mutex: semantics, std adaptors, timeouts,
// the lock word's return to rest, and debug-check aborts.
#include "hwsync/mutex.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "support/child_process.hpp"
#include "support/lock_checks.hpp"
#include "support/misuse.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

template <class M>
class MutexTest : public ::testing::Test {};
using MutexTypes = ::testing::Types<hwsync::mutex, hwsync::timed_mutex>;
TYPED_TEST_SUITE(MutexTest, MutexTypes);

TYPED_TEST(MutexTest, IsConstexprConstructibleAndOneWord) {
  static_assert(std::is_nothrow_default_constructible_v<TypeParam>);
  static_assert(!std::is_copy_constructible_v<TypeParam> &&
                !std::is_move_constructible_v<TypeParam>);
  if constexpr (!hwsync::debug::checks_enabled) {
    static_assert(sizeof(TypeParam) == 4);
  }
  static constinit TypeParam global;  // no dynamic initialization
  global.lock();
  global.unlock();
}

TYPED_TEST(MutexTest, TryLockFailsWhileAnotherThreadHoldsIt) {
  TypeParam m;
  m.lock();
  bool got = true;
  std::thread([&] { got = m.try_lock(); }).join();
  EXPECT_FALSE(got);
  m.unlock();
  std::thread([&] {
    got = m.try_lock();
    if (got) m.unlock();
  }).join();
  EXPECT_TRUE(got);
}

TYPED_TEST(MutexTest, StdAdaptorsWork) {
  TypeParam m;
  {
    std::lock_guard<TypeParam> g(m);
    std::thread([&] { EXPECT_FALSE(m.try_lock()); }).join();
  }
  {
    std::unique_lock<TypeParam> u(m, std::try_to_lock);
    EXPECT_TRUE(u.owns_lock());
    u.unlock();
    EXPECT_FALSE(u.owns_lock());
    u.lock();
  }
  std::unique_lock<TypeParam> d(m, std::defer_lock);
  EXPECT_TRUE(d.try_lock());
}

TYPED_TEST(MutexTest, ScopedLockOverSeveralAvoidsDeadlock) {
  // Two threads take the same three mutexes named in opposite orders; with
  // std::scoped_lock's deadlock avoidance both finish.
  TypeParam a, b, c;
  long shared = 0;
  constexpr int rounds = 20000;
  std::thread t1([&] {
    for (int i = 0; i < rounds; ++i) {
      std::scoped_lock l(a, b, c);
      ++shared;
    }
  });
  std::thread t2([&] {
    for (int i = 0; i < rounds; ++i) {
      std::scoped_lock l(c, b, a);
      ++shared;
    }
  });
  t1.join();
  t2.join();
  EXPECT_EQ(shared, 2 * rounds);
}

TYPED_TEST(MutexTest, UnlockPublishesWritesToTheNextLocker) {
  TypeParam m;
  hwsync::test::expect_unlock_publishes<std::lock_guard>(m);
}

TEST(TimedMutex, TryLockForOnAHeldMutexTimesOutAfterTheDuration) {
  hwsync::timed_mutex m;
  m.lock();
  std::thread([&] {
    const auto start = steady::now();
    EXPECT_FALSE(m.try_lock_for(50ms));
    const auto waited = steady::now() - start;
    EXPECT_GE(waited, 50ms);
    // A hang guard, not a speed test: a missed wake-up would wait forever.
    EXPECT_LT(waited, 50ms + 5s);
  }).join();
  m.unlock();
}

using hwsync::test::slow_clock;  // tests/support/lock_checks.hpp

TEST(TimedMutex, TryLockUntilHonoursSteadySystemAndOtherClocks) {
  hwsync::timed_mutex m;
  m.lock();
  std::thread([&] {
    auto t0 = steady::now();
    EXPECT_FALSE(m.try_lock_until(steady::now() + 20ms));
    EXPECT_GE(steady::now() - t0, 20ms);

    const auto sys_deadline = std::chrono::system_clock::now() + 20ms;
    EXPECT_FALSE(m.try_lock_until(sys_deadline));
    EXPECT_GE(std::chrono::system_clock::now(), sys_deadline);

    const auto slow_deadline = slow_clock::now() + 10ms;  // 20 ms of steady time
    t0 = steady::now();
    EXPECT_FALSE(m.try_lock_until(slow_deadline));
    EXPECT_GE(slow_clock::now(), slow_deadline);
    EXPECT_GE(steady::now() - t0, 20ms);
  }).join();
  m.unlock();
}

TEST(TimedMutex, TryLockForSucceedsWhenTheHolderUnlocksInTime) {
  hwsync::timed_mutex m;
  std::atomic<bool> holding{false};
  std::thread holder([&] {
    m.lock();
    holding = true;
    std::this_thread::sleep_for(20ms);
    m.unlock();
  });
  while (!holding) std::this_thread::yield();
  EXPECT_TRUE(m.try_lock_for(10s));
  m.unlock();
  holder.join();
}

TEST(TimedMutex, ExpiredDeadlineBehavesLikeTryLock) {
  hwsync::timed_mutex m;
  EXPECT_TRUE(m.try_lock_for(-1s));
  m.unlock();
  EXPECT_TRUE(m.try_lock_until(steady::now() - 1h));
  std::thread([&] {
    EXPECT_FALSE(m.try_lock_for(0s));
    EXPECT_FALSE(m.try_lock_until(std::chrono::system_clock::now() - 1s));
  }).join();
  m.unlock();
}

// The lock word must come back to 0 (free, no waiters, no hand-off) once
// every thread has left, whatever the mix of waits and timeouts was.
TEST(MutexWord, ReturnsToRestAfterContentionAndTimeouts) {
  hwsync::detail::mutex_word w;
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t) {
    ts.emplace_back([&, t] {
      int i = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (t % 2 == 0) {
          w.lock();
          if (++i % 64 == 0) std::this_thread::sleep_for(200us);
          w.unlock();
        } else if (w.lock_until(hwsync::futex::deadline::after(100us))) {
          w.unlock();
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(w.raw(), 0u);
}

// Regression: a waiter that had switched the mutex to hand-off mode and then
// timed out must not leave HANDOFF set with no waiter to take the lock.
TEST(MutexWord, TimedOutStarvingWaiterDoesNotStrandHandoff) {
  hwsync::detail::mutex_word w;
  w.lock();
  std::thread waiter([&] {
    // Long enough to pass the fairness bound (at most 1.5 ms) and re-park
    // once; the holder never unlocks in time.
    const auto d = hwsync::futex::deadline::after(30ms);
    while (!d.passed()) {
      if (w.lock_until(d)) {
        w.unlock();
        ADD_FAILURE() << "acquired a mutex that was held throughout";
      }
    }
  });
  // Wake the waiter repeatedly so it re-parks past its bound and sets HANDOFF.
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(1ms);
    hwsync::futex::wake_all(*reinterpret_cast<const hwsync::futex::word*>(&w));
  }
  waiter.join();
  EXPECT_EQ(w.raw(), hwsync::detail::mutex_word::locked);
  w.unlock();
  EXPECT_EQ(w.raw(), 0u);
  EXPECT_TRUE(w.try_lock());
  w.unlock();
}

// Debug checks: each misuse aborts in a child process with a message that
// names the primitive and the thread.
using hwsync::test::misuse_case;

class MutexMisuse : public ::testing::TestWithParam<misuse_case> {};

TEST_P(MutexMisuse, AbortsWithAMessage) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "built without HWSYNC_DEBUG_CHECKS";
  hwsync::test::expect_misuse_aborts(GetParam(), nullptr);
}

INSTANTIATE_TEST_SUITE_P(
    DebugChecks, MutexMisuse,
    ::testing::Values(
        misuse_case{"unlock_by_non_owner", "hwsync::mutex at 0x"},
        misuse_case{"unlock_by_non_owner", "unlock() by a thread that does not hold it"},
        misuse_case{"unlock_unlocked", "unlock() of a mutex that is not locked"},
        misuse_case{"relock_by_holder", "lock() by the thread that already holds it"},
        misuse_case{"destroy_held", "destroyed while locked"},
        misuse_case{"timed_unlock_by_non_owner", "hwsync::timed_mutex at 0x"},
        misuse_case{"recursive_unlock_by_non_owner", "hwsync::recursive_mutex at 0x"}));

}  // namespace

namespace {

template <class M>
class RecursiveMutexTest : public ::testing::Test {};
using RecursiveTypes = ::testing::Types<hwsync::recursive_mutex, hwsync::recursive_timed_mutex>;
TYPED_TEST_SUITE(RecursiveMutexTest, RecursiveTypes);

TYPED_TEST(RecursiveMutexTest, TheHolderRelocksAndOthersWaitForTheLastUnlock) {
  TypeParam m;
  m.lock();
  EXPECT_TRUE(m.try_lock());
  m.lock();
  std::atomic<bool> got{false};
  std::thread other([&] {
    std::lock_guard g(m);
    got = true;
  });
  m.unlock();
  m.unlock();
  std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(got.load());  // still held once
  m.unlock();
  other.join();
  EXPECT_TRUE(got.load());
}

TYPED_TEST(RecursiveMutexTest, StdAdaptorsNest) {
  TypeParam m;
  std::lock_guard a(m);
  std::unique_lock b(m);
  std::scoped_lock c(m);
  EXPECT_TRUE(b.owns_lock());
}

TEST(RecursiveTimedMutex, TimedLockOfAnotherThreadsMutexTimesOut) {
  hwsync::recursive_timed_mutex m;
  m.lock();
  std::thread([&] {
    const auto t0 = steady::now();
    EXPECT_FALSE(m.try_lock_for(20ms));
    EXPECT_GE(steady::now() - t0, 20ms);
    EXPECT_FALSE(m.try_lock_until(std::chrono::system_clock::now() + 5ms));
  }).join();
  EXPECT_TRUE(m.try_lock_for(0ms));  // the holder relocks at once
  m.unlock();
  m.unlock();
}

// Depth overflow is reported, not wrapped: a one-byte depth reaches it.
TEST(RecursiveMutex, DepthOverflowThrowsAndLeavesTheLockConsistent) {
  hwsync::detail::basic_recursive_mutex<std::uint8_t> m;
  int self = 0;
  for (int i = 0; i < 255; ++i) m.lock("test", &self);
  EXPECT_EQ(m.depth(), 255);
  try {
    m.lock("test", &self);
    FAIL() << "lock() past the maximum depth did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::resource_unavailable_try_again);
    EXPECT_NE(std::string(e.what()).find("maximum depth 255"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(m.try_lock(nullptr, &self));
  EXPECT_EQ(m.depth(), 255);
  for (int i = 0; i < 255; ++i) m.unlock("test", &self);
  EXPECT_EQ(m.depth(), 0);
  bool free_for_others = false;
  std::thread([&] {
    free_for_others = m.try_lock(nullptr, &self);
    if (free_for_others) m.unlock("test", &self);
  }).join();
  EXPECT_TRUE(free_for_others);
}

}  // namespace
