// hwsync::counting_semaphore, binary_semaphore and fair_counting_semaphore:
// std semantics, parking and waking, timeouts, FIFO order and hand-off of the
// fair one, the word's return to rest, and debug-check aborts. Every wait on
// another thread is for a state the test observes (a waiter registered or
// queued), never for a length of time.
#include "hwsync/semaphore.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <semaphore>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "hwsync/sanitizer.hpp"
#include "support/child_process.hpp"
#include "support/lock_checks.hpp"
#include "support/misuse.hpp"
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
using hwsync::test::watchdog;

template <class S>
std::uint32_t count(const S& s) {
  return hwsync::detail::semaphore_count(hwsync::detail::semaphore_test_access::state(s));
}
// Registered waiters (counting_semaphore) or queued waiters (fair).
template <class S>
std::uint32_t waiters(const S& s) {
  return hwsync::detail::semaphore_high(hwsync::detail::semaphore_test_access::state(s));
}
template <class S>
void await_waiters(const S& s, std::uint32_t n) {
  while (waiters(s) != n) std::this_thread::yield();
}

// A process-wide semaphore needs no dynamic initialization.
constinit hwsync::binary_semaphore g_constinit_binary{1};
constinit hwsync::fair_counting_semaphore<4> g_constinit_fair{4};

TEST(SemaphoreApi, MaxAndTypesAreStds) {
  static_assert(std::is_same_v<hwsync::binary_semaphore, hwsync::counting_semaphore<1>>);
  static_assert(hwsync::binary_semaphore::max() == 1);
  static_assert(hwsync::counting_semaphore<7>::max() == 7);
  static_assert(hwsync::fair_counting_semaphore<3>::max() == 3);
  // The default matches libstdc++'s, so swapping std:: for hwsync:: keeps it.
  static_assert(hwsync::counting_semaphore<>::max() == std::counting_semaphore<>::max());
  static_assert(!std::is_copy_constructible_v<hwsync::counting_semaphore<>>);
  static_assert(!std::is_move_constructible_v<hwsync::fair_counting_semaphore<>>);
  static_assert(!std::is_convertible_v<std::ptrdiff_t, hwsync::binary_semaphore>,
                "the constructor is explicit, as std's");
  static_assert(noexcept(std::declval<hwsync::counting_semaphore<>&>().acquire()));
  static_assert(noexcept(std::declval<hwsync::counting_semaphore<>&>().release()));
  if constexpr (!hwsync::debug::checks_enabled) {
    static_assert(sizeof(hwsync::counting_semaphore<>) == 8);
  }
  EXPECT_TRUE(g_constinit_binary.try_acquire());
  EXPECT_FALSE(g_constinit_binary.try_acquire());
  g_constinit_binary.release();
  EXPECT_TRUE(g_constinit_fair.try_acquire());
  g_constinit_fair.release();
}

template <class S>
class SemaphoreTest : public ::testing::Test {};
using Semaphores =
    ::testing::Types<hwsync::counting_semaphore<>, hwsync::fair_counting_semaphore<>>;
TYPED_TEST_SUITE(SemaphoreTest, Semaphores);

TYPED_TEST(SemaphoreTest, TryAcquireTakesExactlyTheCount) {
  TypeParam s(3);
  EXPECT_EQ(count(s), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(s.try_acquire()) << i;
  EXPECT_FALSE(s.try_acquire());
  s.release(2);
  EXPECT_EQ(count(s), 2u);
  s.release(0);  // std: an update of 0 is valid and changes nothing
  EXPECT_EQ(count(s), 2u);
  EXPECT_TRUE(s.try_acquire());
  s.acquire();  // a permit is free: no blocking
  EXPECT_FALSE(s.try_acquire());
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u);
}

TYPED_TEST(SemaphoreTest, AcquireParksAndReleaseWakesIt) {
  watchdog dog("acquire/release", 60s);
  TypeParam s(0);
  std::atomic<bool> done{false};
  std::thread t([&] {
    s.acquire();
    done = true;
  });
  await_waiters(s, 1);  // registered to park (or queued): it has no permit
  EXPECT_FALSE(done.load());
  s.release();
  t.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u) << "word back at rest";
}

TYPED_TEST(SemaphoreTest, TryAcquireNeverBlocksWhileOthersWait) {
  watchdog dog("try_acquire with waiters", 60s);
  TypeParam s(0);
  std::thread t([&] { s.acquire(); });
  await_waiters(s, 1);
  for (int i = 0; i < 1000; ++i) ASSERT_FALSE(s.try_acquire());
  EXPECT_FALSE(s.try_acquire_for(0s));
  EXPECT_FALSE(s.try_acquire_until(steady::now() - 1h));
  EXPECT_FALSE(s.try_acquire_until(std::chrono::system_clock::now() - 1s));
  s.release();
  t.join();
}

TYPED_TEST(SemaphoreTest, ReleaseOfNLetsExactlyNWaitersThrough) {
  watchdog dog("release(n)", 60s);
  TypeParam s(0);
  constexpr int n_threads = 5;
  std::atomic<int> done{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < n_threads; ++i) {
    ts.emplace_back([&] {
      s.acquire();
      done.fetch_add(1);
    });
  }
  await_waiters(s, n_threads);
  s.release(2);
  while (done.load() != 2) std::this_thread::yield();
  await_waiters(s, n_threads - 2);  // the others are back (or still) waiting
  EXPECT_EQ(count(s), 0u);
  EXPECT_EQ(done.load(), 2);
  s.release(3);
  for (auto& t : ts) t.join();
  EXPECT_EQ(done.load(), n_threads);
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u);
}

TYPED_TEST(SemaphoreTest, ReleaseHappensBeforeTheAcquireThatTakesItsPermit) {
  watchdog dog("ordering", 60s);
  TypeParam s(0);
  std::vector<int> data;  // plain memory: TSan reports a race if ordering broke
  std::thread producer([&] {
    data.assign(1000, 7);
    s.release();
  });
  s.acquire();
  ASSERT_EQ(data.size(), 1000u);
  EXPECT_EQ(data[999], 7);
  producer.join();
}

// The waiter destroys the semaphore as soon as its acquire() returns, as a
// one-shot completion signal on the waiter's side would. release() must not
// touch the semaphore after the point where the waiter can return; an early
// fair hand-off released its internal lock after granting, a use after free
// that TSan reports here as a race with the delete.
TYPED_TEST(SemaphoreTest, ReleaseLeavesTheSemaphoreAloneOnceTheWaiterCanReturn) {
  watchdog dog("destroy after acquire", 120s);
  const int rounds = hwsync::tsan::enabled ? 100 : 500;
  for (int i = 0; i < rounds; ++i) {
    auto* s = new TypeParam(0);
    std::thread waiter([s] {
      s->acquire();
      delete s;
    });
    await_waiters(*s, 1);
    s->release();
    waiter.join();
  }
}

using hwsync::test::slow_clock;  // tests/support/lock_checks.hpp

TYPED_TEST(SemaphoreTest, TimedAcquireExpiresOnEveryClockAndLeavesNoTrace) {
  TypeParam s(0);
  auto t0 = steady::now();
  EXPECT_FALSE(s.try_acquire_for(20ms));
  EXPECT_GE(steady::now() - t0, 20ms);

  t0 = steady::now();
  EXPECT_FALSE(s.try_acquire_until(steady::now() + 20ms));
  EXPECT_GE(steady::now() - t0, 20ms);

  const auto sys_deadline = std::chrono::system_clock::now() + 20ms;
  EXPECT_FALSE(s.try_acquire_until(sys_deadline));
  EXPECT_GE(std::chrono::system_clock::now(), sys_deadline);

  const auto slow_deadline = slow_clock::now() + 10ms;  // 20 ms of steady time
  t0 = steady::now();
  EXPECT_FALSE(s.try_acquire_until(slow_deadline));
  EXPECT_GE(slow_clock::now(), slow_deadline);
  EXPECT_GE(steady::now() - t0, 20ms);

  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u)
      << "a timed-out waiter deregistered";
  s.release();
  EXPECT_TRUE(s.try_acquire());
}

TYPED_TEST(SemaphoreTest, TimedAcquireSucceedsWhenAPermitArrivesInTime) {
  watchdog dog("timed acquire", 120s);
  TypeParam s(0);
  std::atomic<int> got{0}, attempts{0};
  std::thread t([&] {
    if (s.try_acquire_for(60s)) got.fetch_add(1);
    attempts.fetch_add(1);
    if (s.try_acquire_until(std::chrono::system_clock::now() + 60s)) got.fetch_add(1);
    attempts.fetch_add(1);
    if (s.try_acquire_until(slow_clock::now() + 30s)) got.fetch_add(1);
    attempts.fetch_add(1);
  });
  for (int i = 0; i < 3; ++i) {
    await_waiters(s, 1);
    s.release();
    while (attempts.load() != i + 1) std::this_thread::yield();
  }
  t.join();
  EXPECT_EQ(got.load(), 3);
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u);
}

TYPED_TEST(SemaphoreTest, ExpiredDeadlineBehavesLikeTryAcquire) {
  TypeParam s(2);
  EXPECT_TRUE(s.try_acquire_for(-1s));
  EXPECT_TRUE(s.try_acquire_until(steady::now() - 1h));
  EXPECT_FALSE(s.try_acquire_for(0s));
  EXPECT_FALSE(s.try_acquire_until(std::chrono::system_clock::now() - 1s));
  EXPECT_FALSE(s.try_acquire_until(slow_clock::now() - 1s));
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u);
}

TEST(BinarySemaphore, SignalsBetweenThreadsBothWays) {
  watchdog dog("binary ping-pong", 60s);
  hwsync::binary_semaphore ping(0), pong(0);
  constexpr int rounds = 2000;
  int seen = 0;
  std::thread t([&] {
    for (int i = 0; i < rounds; ++i) {
      ping.acquire();
      ++seen;  // plain: ordered by the semaphores alone
      pong.release();
    }
  });
  for (int i = 0; i < rounds; ++i) {
    ping.release();
    pong.acquire();
    ASSERT_EQ(seen, i + 1);
  }
  t.join();
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(ping), 0u);
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(pong), 0u);
}

// ---------------------------------------------------------------------------
// fair_counting_semaphore: arrival order and hand-off

// Starts `n` threads that acquire one permit each, one after another: each
// is started only once the previous one is seen queued, so the arrival order
// is the index order. Each writes its index into `order` at the slot given
// by `finished` when its acquire returns.
struct queued_threads {
  std::vector<std::thread> threads;
  std::vector<int> order;
  std::atomic<int> slots{0};     // taken in the order the acquires returned
  std::atomic<int> finished{0};  // counted once the slot is written

  template <class S>
  queued_threads(S& s, int n) : order(static_cast<std::size_t>(n), -1) {
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([this, &s, i] {
        s.acquire();
        order[static_cast<std::size_t>(slots.fetch_add(1))] = i;
        finished.fetch_add(1);
      });
      await_waiters(s, static_cast<std::uint32_t>(i + 1));
    }
  }
  void await_finished(int n) const {
    while (finished.load() != n) std::this_thread::yield();
  }
  void join() {
    for (auto& t : threads) t.join();
  }
};

TEST(FairSemaphore, GrantsPermitsInArrivalOrder) {
  watchdog dog("fair order", 60s);
  hwsync::fair_counting_semaphore<> s(0);
  constexpr int n = 8;
  queued_threads q(s, n);
  for (int i = 0; i < n; ++i) {
    s.release();
    q.await_finished(i + 1);
    EXPECT_EQ(q.order[static_cast<std::size_t>(i)], i) << "permit " << i << " went out of order";
  }
  q.join();
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u);
}

TEST(FairSemaphore, ReleaseOfNGrantsTheNOldestWaiters) {
  watchdog dog("fair release(n)", 60s);
  hwsync::fair_counting_semaphore<> s(0);
  queued_threads q(s, 5);
  s.release(2);
  q.await_finished(2);
  EXPECT_EQ(waiters(s), 3u);
  EXPECT_EQ(count(s), 0u);
  // The two oldest got them, in whichever order they ran.
  EXPECT_EQ(q.order[0] + q.order[1], 0 + 1);
  s.release(3);
  q.join();
  EXPECT_EQ(q.order[2] + q.order[3] + q.order[4], 2 + 3 + 4);
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u);
}

TEST(FairSemaphore, ReleaseHandsThePermitToTheWaiterSoNobodyBarges) {
  watchdog dog("fair hand-off", 60s);
  hwsync::fair_counting_semaphore<> s(0);
  queued_threads q(s, 1);
  s.release();
  // The permit went straight to the queued waiter inside release(): it is
  // not free for this (running) thread to take, and cannot have been.
  EXPECT_FALSE(s.try_acquire());
  EXPECT_EQ(count(s), 0u);
  q.join();
  EXPECT_EQ(q.finished.load(), 1);

  // Two permits for one waiter: it gets one, the other stays free.
  queued_threads q2(s, 1);
  s.release(2);
  EXPECT_EQ(count(s), 1u);
  EXPECT_EQ(waiters(s), 0u);
  EXPECT_TRUE(s.try_acquire());
  q2.join();
}

TEST(FairSemaphore, ATimedOutWaiterLeavesTheQueueAndTheOrderHolds) {
  watchdog dog("fair timeout", 60s);
  hwsync::fair_counting_semaphore<> s(0);
  std::atomic<int> first_done{-1};
  std::atomic<int> done{0};
  std::thread a([&] {
    s.acquire();
    int expected = -1;
    first_done.compare_exchange_strong(expected, 0);
    done.fetch_add(1);
  });
  await_waiters(s, 1);
  std::atomic<bool> b_result{true};
  std::thread b([&] { b_result = s.try_acquire_for(30ms); });
  await_waiters(s, 2);
  std::thread c([&] {
    s.acquire();
    int expected = -1;
    first_done.compare_exchange_strong(expected, 2);
    done.fetch_add(1);
  });
  await_waiters(s, 3);
  b.join();  // b times out in the middle of the queue
  EXPECT_FALSE(b_result.load());
  EXPECT_EQ(waiters(s), 2u);
  s.release();
  while (done.load() != 1) std::this_thread::yield();
  EXPECT_EQ(first_done.load(), 0) << "the permit skipped the oldest waiter";
  s.release();
  a.join();
  c.join();
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u);
}

TEST(FairSemaphore, AnArrivalQueuesBehindWaitersEvenWhenReleasesRace) {
  // A newcomer that calls acquire() while the queue is non-empty must not
  // get ahead of it: once every queued thread got its permit in order, the
  // newcomer gets the next one.
  watchdog dog("fair newcomer", 60s);
  hwsync::fair_counting_semaphore<> s(0);
  queued_threads q(s, 3);
  std::atomic<bool> newcomer_done{false};
  std::thread newcomer([&] {
    s.acquire();
    newcomer_done = true;
  });
  await_waiters(s, 4);
  s.release(3);
  q.join();
  EXPECT_EQ(q.finished.load(), 3);
  EXPECT_FALSE(newcomer_done.load());
  EXPECT_EQ(waiters(s), 1u);
  s.release();
  newcomer.join();
  EXPECT_EQ(hwsync::detail::semaphore_test_access::state(s), 0u);
}

// ---------------------------------------------------------------------------
// Debug checks: each misuse aborts in a child process with a message that
// names the semaphore, the thread and the numbers.

using hwsync::test::misuse_case;

class SemaphoreMisuse : public ::testing::TestWithParam<misuse_case> {};

TEST_P(SemaphoreMisuse, AbortsWithAMessage) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "built without HWSYNC_DEBUG_CHECKS";
  hwsync::test::expect_misuse_aborts(GetParam(), nullptr);
}

INSTANTIATE_TEST_SUITE_P(
    DebugChecks, SemaphoreMisuse,
    ::testing::Values(
        misuse_case{"semaphore_binary_released_twice", "hwsync::counting_semaphore at 0x"},
        misuse_case{"semaphore_binary_released_twice",
                    "release(1) past max(): the count was 1 and may rise to at most max() = 1"},
        misuse_case{"semaphore_release_n_past_max",
                    "release(3) past max(): the count was 2 and may rise to at most max() = 4"},
        misuse_case{"semaphore_release_more_than_max",
                    "release(5) past max(): the count was 0 and may rise to at most max() = 4"},
        misuse_case{"semaphore_release_negative", "release(-1): expected an update >= 0"},
        misuse_case{"semaphore_desired_past_max",
                    "constructed with a count of 5: expected 0 <= count <= max() = 4"},
        misuse_case{"semaphore_desired_negative",
                    "constructed with a count of -1: expected 0 <= count <= max() = 4"},
        misuse_case{"semaphore_destroyed_with_waiter", "destroyed while 1 thread waits on it"},
        misuse_case{"fair_semaphore_released_past_max", "hwsync::fair_counting_semaphore at 0x"},
        misuse_case{"fair_semaphore_released_past_max",
                    "release(2) past max(): the count was 2 and may rise to at most max() = 3"},
        misuse_case{"fair_semaphore_destroyed_with_waiters",
                    "destroyed while 2 threads wait on it"}));

}  // namespace
