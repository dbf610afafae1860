// hwsync::shared_mutex<Policy>: every member, the std adaptors, timeouts,
// what each policy lets in first, the upgradeable mode, the lock word's
// return to rest, debug-check aborts and ThreadSanitizer's view of it.
#include "hwsync/shared_mutex.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "support/child_process.hpp"
#include "support/lock_checks.hpp"
#include "support/misuse.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using hwsync::rw_policy::phase_fair;
using hwsync::rw_policy::reader_preferred;
using hwsync::rw_policy::writer_preferred;
using bits = hwsync::detail::rw_word<hwsync::detail::rw_kind::phase_fair>;  // same layout for all

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
std::uint64_t readers(std::uint64_t s) {
  return (s & bits::readers_mask) / bits::one_reader;
}
std::uint64_t waiting_readers(std::uint64_t s) {
  return (s & bits::rwait_mask) >> bits::rwait_shift;
}
std::uint64_t waiting_writers(std::uint64_t s) {
  return (s & bits::wwait_mask) >> bits::wwait_shift;
}

// Waits until pred(state) holds: how a test knows a thread has registered as
// a waiter without sleeping for a guessed time. Fails after 10 s (a hang
// guard, not a timing assertion).
template <class M, class Pred>
void await_state(const M& m, Pred pred) {
  const auto give_up = steady::now() + 10s;
  while (!pred(state(m))) {
    ASSERT_LT(steady::now(), give_up) << "lock word stuck at 0x" << std::hex << state(m);
    std::this_thread::yield();
  }
}

template <class F>
bool on_other_thread(F f) {
  bool r = false;
  std::thread([&] { r = f(); }).join();
  return r;
}

template <class M>
class SharedMutexTest : public ::testing::Test {};
using Policies =
    ::testing::Types<hwsync::shared_mutex<phase_fair>, hwsync::shared_mutex<writer_preferred>,
                     hwsync::shared_mutex<reader_preferred>,
                     hwsync::shared_mutex<hwsync::rw_policy::strict_phase_fair>>;
TYPED_TEST_SUITE(SharedMutexTest, Policies);

TEST(SharedMutex, DefaultPolicyIsPhaseFair) {
  static_assert(std::is_same_v<hwsync::shared_mutex<>::policy, phase_fair>);
}

TYPED_TEST(SharedMutexTest, IsConstexprConstructibleAndEightBytes) {
  static_assert(std::is_nothrow_default_constructible_v<TypeParam>);
  static_assert(!std::is_copy_constructible_v<TypeParam> &&
                !std::is_move_constructible_v<TypeParam>);
  if constexpr (!hwsync::debug::checks_enabled) {
    static_assert(sizeof(TypeParam) == 8);
  }
  static constinit TypeParam global;  // no dynamic initialization
  global.lock();
  global.unlock();
  global.lock_shared();
  global.unlock_shared();
  EXPECT_EQ(rest(global), 0u);
}

TYPED_TEST(SharedMutexTest, ExclusiveExcludesEveryMode) {
  TypeParam m;
  m.lock();
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock(); }));
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock_shared(); }));
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock_upgrade(); }));
  m.unlock();
  EXPECT_TRUE(m.try_lock());
  m.unlock();
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, SharedAdmitsReadersAndTheUpgraderButNoWriter) {
  TypeParam m;
  m.lock_shared();
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock(); }));
  EXPECT_TRUE(on_other_thread([&] {
    const bool ok = m.try_lock_shared();
    if (ok) m.unlock_shared();
    return ok;
  }));
  EXPECT_TRUE(on_other_thread([&] {
    const bool ok = m.try_lock_upgrade();
    if (ok) m.unlock_upgrade();
    return ok;
  }));
  // Many readers at once.
  std::atomic<int> inside{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&] {
      m.lock_shared();
      inside.fetch_add(1);
      while (inside.load() < 4) std::this_thread::yield();
      m.unlock_shared();
    });
  }
  for (auto& t : ts) t.join();
  m.unlock_shared();
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, UpgradeRightIsHeldByOneThreadAndAdmitsReaders) {
  TypeParam m;
  m.lock_upgrade();
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock_upgrade(); }));
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock(); }));
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock_upgrade_for(10ms); }));
  EXPECT_TRUE(on_other_thread([&] {
    const bool ok = m.try_lock_shared();
    if (ok) m.unlock_shared();
    return ok;
  }));
  m.unlock_upgrade();
  EXPECT_TRUE(on_other_thread([&] {
    const bool ok = m.try_lock_upgrade();
    if (ok) m.unlock_upgrade();
    return ok;
  }));
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, UpgradeWaitsForTheOtherReadersAndLetsNoWriterIn) {
  TypeParam m;
  int value = 0;  // plain memory: only the lock orders it
  std::atomic<bool> reader_in{false}, release_reader{false}, reader_out{false};
  std::thread reader([&] {
    m.lock_shared();
    reader_in = true;
    while (!release_reader) std::this_thread::yield();
    reader_out = true;
    m.unlock_shared();
  });
  while (!reader_in) std::this_thread::yield();
  m.lock_upgrade();
  const int seen = value;
  std::thread writer([&] {
    m.lock();
    value = 100;
    m.unlock();
  });
  await_state(m, [](std::uint64_t s) { return waiting_writers(s) == 1; });
  std::thread upgrader_release([&] {
    // Let the reader go once the upgrade is waiting for it.
    await_state(m, [](std::uint64_t s) { return (s & bits::upgrading) != 0; });
    release_reader = true;
  });
  m.unlock_upgrade_and_lock();
  EXPECT_TRUE(reader_out.load());
  EXPECT_EQ(value, seen) << "a writer ran between lock_upgrade() and the upgrade";
  value = seen + 1;
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock_shared(); }));
  m.unlock();
  writer.join();
  reader.join();
  upgrader_release.join();
  EXPECT_EQ(value, 100);
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, UpgradeToSharedKeepsTheSharedLock) {
  TypeParam m;
  m.lock_upgrade();
  m.unlock_upgrade_and_lock_shared();
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock(); }));
  EXPECT_TRUE(on_other_thread([&] {
    const bool ok = m.try_lock_upgrade();
    if (ok) m.unlock_upgrade();
    return ok;
  }));
  m.unlock_shared();
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, DowngradeLetsReadersInButNoWriter) {
  TypeParam m;
  int value = 0;
  m.lock();
  value = 7;
  m.unlock_and_lock_shared();
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock(); }));
  EXPECT_TRUE(on_other_thread([&] {
    const bool ok = m.try_lock_shared();
    if (ok) {
      EXPECT_EQ(value, 7);
      m.unlock_shared();
    }
    return ok;
  }));
  m.unlock_shared();
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, DowngradeAdmitsTheReadersParkedBehindTheWriter) {
  TypeParam m;
  m.lock();
  std::thread reader([&] {
    m.lock_shared();
    m.unlock_shared();
  });
  await_state(m, [](std::uint64_t s) { return waiting_readers(s) == 1; });
  m.unlock_and_lock_shared();
  reader.join();  // admitted while this thread still reads
  m.unlock_shared();
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, StdAdaptorsWork) {
  TypeParam m;
  {
    std::shared_lock<TypeParam> r1(m);
    std::thread([&] {
      std::shared_lock<TypeParam> r3(m, std::try_to_lock);
      EXPECT_TRUE(r3.owns_lock());
      r3.unlock();  // a thread holding it in any mode must not ask again
      std::unique_lock<TypeParam> w(m, std::try_to_lock);
      EXPECT_FALSE(w.owns_lock());
      std::unique_lock<TypeParam> wt(m, 5ms);
      EXPECT_FALSE(wt.owns_lock());
    }).join();
  }
  {
    std::unique_lock<TypeParam> w(m);
    std::thread([&] {
      std::shared_lock<TypeParam> r(m, std::defer_lock);
      EXPECT_FALSE(r.try_lock());
      EXPECT_FALSE(r.try_lock_for(5ms));
      EXPECT_FALSE(r.try_lock_until(steady::now() + 5ms));
      std::shared_lock<TypeParam> rt(m, 5ms);
      EXPECT_FALSE(rt.owns_lock());
    }).join();
  }
  { std::lock_guard<TypeParam> g(m); }
  {
    m.lock_shared();
    std::shared_lock<TypeParam> adopted(m, std::adopt_lock);
  }
  {
    TypeParam other;
    std::scoped_lock both(m, other);  // deadlock-avoiding over two
    EXPECT_FALSE(on_other_thread([&] { return other.try_lock_shared(); }));
  }
  {
    std::shared_lock<TypeParam> r(m, std::defer_lock);
    EXPECT_TRUE(r.try_lock_for(1s));
    r.unlock();
    std::unique_lock<TypeParam> w(m, std::defer_lock);
    EXPECT_TRUE(w.try_lock_until(std::chrono::system_clock::now() + 1s));
  }
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, ExclusiveUnlockPublishesToReaders) {
  TypeParam m;
  hwsync::test::expect_unlock_publishes<std::shared_lock>(m);
}

TYPED_TEST(SharedMutexTest, TimedWaitsTimeOutAfterTheDuration) {
  TypeParam m;
  m.lock_shared();
  std::thread([&] {
    auto t0 = steady::now();
    EXPECT_FALSE(m.try_lock_for(30ms));
    EXPECT_GE(steady::now() - t0, 30ms);
    t0 = steady::now();
    EXPECT_FALSE(m.try_lock_until(steady::now() + 20ms));
    EXPECT_GE(steady::now() - t0, 20ms);
    const auto sys_deadline = std::chrono::system_clock::now() + 20ms;
    EXPECT_FALSE(m.try_lock_until(sys_deadline));
    EXPECT_GE(std::chrono::system_clock::now(), sys_deadline);
  }).join();
  m.unlock_shared();
  m.lock();
  std::thread([&] {
    auto t0 = steady::now();
    EXPECT_FALSE(m.try_lock_shared_for(30ms));
    const auto waited = steady::now() - t0;
    EXPECT_GE(waited, 30ms);
    EXPECT_LT(waited, 30ms + 5s);  // a hang guard, not a speed test
    const auto sys_deadline = std::chrono::system_clock::now() + 20ms;
    EXPECT_FALSE(m.try_lock_shared_until(sys_deadline));
    EXPECT_GE(std::chrono::system_clock::now(), sys_deadline);
    t0 = steady::now();
    EXPECT_FALSE(m.try_lock_upgrade_until(steady::now() + 20ms));
    EXPECT_GE(steady::now() - t0, 20ms);
  }).join();
  m.unlock();
  // Timed-out waiters leave nothing behind.
  EXPECT_EQ(rest(m), 0u);
}

using hwsync::test::slow_clock;  // tests/support/lock_checks.hpp

TYPED_TEST(SharedMutexTest, OtherClocksAreWaitedInSteadySlices) {
  TypeParam m;
  m.lock();
  std::thread([&] {
    const auto deadline = slow_clock::now() + 10ms;  // 20 ms of steady time
    const auto t0 = steady::now();
    EXPECT_FALSE(m.try_lock_shared_until(deadline));
    EXPECT_GE(slow_clock::now(), deadline);
    EXPECT_GE(steady::now() - t0, 20ms);
    EXPECT_FALSE(m.try_lock_until(slow_clock::now() + 5ms));
  }).join();
  m.unlock();
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, ExpiredDeadlineBehavesLikeTry) {
  TypeParam m;
  EXPECT_TRUE(m.try_lock_for(-1s));
  std::thread([&] {
    EXPECT_FALSE(m.try_lock_shared_for(0s));
    EXPECT_FALSE(m.try_lock_until(std::chrono::system_clock::now() - 1s));
    EXPECT_FALSE(m.try_lock_upgrade_for(-1ms));
  }).join();
  m.unlock();
  EXPECT_TRUE(m.try_lock_shared_until(steady::now() - 1h));
  m.unlock_shared();
  EXPECT_TRUE(m.try_lock_upgrade_for(0s));
  m.unlock_upgrade();
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, TimedWaitsSucceedWhenTheHolderLeavesInTime) {
  TypeParam m;
  std::atomic<bool> holding{false};
  std::thread holder([&] {
    m.lock();
    holding = true;
    std::this_thread::sleep_for(20ms);
    m.unlock();
  });
  while (!holding) std::this_thread::yield();
  std::thread second([&] {
    EXPECT_TRUE(m.try_lock_upgrade_for(10s));
    m.unlock_upgrade();
  });
  EXPECT_TRUE(m.try_lock_shared_for(10s));
  m.unlock_shared();
  EXPECT_TRUE(m.try_lock_for(10s));
  m.unlock();
  holder.join();
  second.join();
  EXPECT_EQ(rest(m), 0u);
}

// Parked waiters of every kind, released in turn: the word must come back
// to 0 whatever the order of wake-ups and timeouts.
TYPED_TEST(SharedMutexTest, ReturnsToRestAfterContentionAndTimeouts) {
  TypeParam m;
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t) {
    ts.emplace_back([&, t] {
      int i = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        switch ((t + i++) % 6) {
          case 0:
            m.lock();
            if (i % 32 == 0) std::this_thread::sleep_for(200us);
            m.unlock();
            break;
          case 1:
            if (m.try_lock_for(100us)) m.unlock();
            break;
          case 2:
            m.lock_shared();
            if (i % 32 == 0) std::this_thread::sleep_for(200us);
            m.unlock_shared();
            break;
          case 3:
            if (m.try_lock_shared_for(50us)) m.unlock_shared();
            break;
          case 4:
            if (m.try_lock_upgrade_for(100us)) {
              if (i % 2) {
                m.unlock_upgrade_and_lock();
                m.unlock();
              } else {
                m.unlock_upgrade();
              }
            }
            break;
          default:
            m.lock();
            m.unlock_and_lock_shared();
            m.unlock_shared();
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(rest(m), 0u);
}

// ---------------------------------------------------------------------------
// Who goes first: each policy's rule, observed through the lock word so that
// no test depends on timing.

// A reader inside, a writer waiting for it past its grace window (PENDING):
// may a new reader enter?
template <class M>
bool new_reader_enters_past_a_waiting_writer() {
  M m;
  m.lock_shared();
  std::thread writer([&] {
    m.lock();
    m.unlock();
  });
  constexpr bool rp = std::is_same_v<typename M::policy, reader_preferred>;
  await_state(m, [](std::uint64_t s) {
    return waiting_writers(s) == 1 && (rp || (s & bits::pending) != 0);
  });

  const bool entered = on_other_thread([&] {
    const bool ok = m.try_lock_shared();
    if (ok) m.unlock_shared();
    return ok;
  });
  m.unlock_shared();
  writer.join();
  EXPECT_EQ(rest(m), 0u);
  return entered;
}

TEST(SharedMutexPolicy, AWaitingWriterHoldsBackNewReadersExceptUnderReaderPreferred) {
  EXPECT_FALSE(new_reader_enters_past_a_waiting_writer<hwsync::shared_mutex<phase_fair>>());
  EXPECT_FALSE(new_reader_enters_past_a_waiting_writer<hwsync::shared_mutex<writer_preferred>>());
  EXPECT_TRUE(new_reader_enters_past_a_waiting_writer<hwsync::shared_mutex<reader_preferred>>());
}

// A writer holds; a reader and a second writer wait. Who runs next?
template <class M>
std::string next_after_a_writer() {
  M m;
  std::mutex order_m;
  std::string order;
  m.lock();
  std::thread reader([&] {
    m.lock_shared();
    {
      std::lock_guard g(order_m);
      order += 'R';
    }
    m.unlock_shared();
  });
  await_state(m, [](std::uint64_t s) { return waiting_readers(s) == 1; });
  std::thread writer([&] {
    m.lock();
    {
      std::lock_guard g(order_m);
      order += 'W';
    }
    m.unlock();
  });
  // Under phase_fair and writer_preferred, wait until the writer's grace
  // window has passed (it sets PENDING): the policies' rules are about a
  // writer that holds readers back.
  constexpr bool rp = std::is_same_v<typename M::policy, reader_preferred>;
  await_state(m, [](std::uint64_t s) {
    return waiting_writers(s) == 1 && (rp || (s & bits::pending) != 0);
  });
  m.unlock();
  reader.join();
  writer.join();
  EXPECT_EQ(rest(m), 0u);
  return order;
}

TEST(SharedMutexPolicy, AfterAWriteThePhaseFairLockAdmitsTheWaitingReadersFirst) {
  EXPECT_EQ(next_after_a_writer<hwsync::shared_mutex<phase_fair>>(), "RW");
  EXPECT_EQ(next_after_a_writer<hwsync::shared_mutex<reader_preferred>>(), "RW");
}

TEST(SharedMutexPolicy, AfterAWriteTheWriterPreferredLockHandsOverToTheNextWriter) {
  EXPECT_EQ(next_after_a_writer<hwsync::shared_mutex<writer_preferred>>(), "WR");
}

// Phase-fair: a reader admitted with the read phase enters before a writer
// that is already waiting, even when it has not run yet.
TEST(SharedMutexPolicy, PhaseFairAdmittedReadersAreCountedBeforeTheyRun) {
  hwsync::shared_mutex<phase_fair> m;
  std::atomic<bool> leaving{false};
  m.lock();
  std::thread reader([&] {
    m.lock_shared();
    leaving = true;
    m.unlock_shared();
  });
  await_state(m, [](std::uint64_t s) { return waiting_readers(s) == 1; });
  std::thread writer([&] {
    m.lock();
    m.unlock();
  });
  await_state(m, [](std::uint64_t s) { return waiting_writers(s) == 1; });
  m.unlock();
  // The release made the reader a holder: until it starts to leave, the
  // word counts it and no writer is in.
  const std::uint64_t after = state(m);
  if (!leaving.load()) {
    EXPECT_EQ(readers(after), 1u) << std::hex << after;
    EXPECT_EQ(after & bits::writer, 0u) << std::hex << after;
  }
  reader.join();
  writer.join();
  EXPECT_EQ(rest(m), 0u);
}

// ---------------------------------------------------------------------------
// Regression: issue 3's throughput collapse under oversubscription. Every
// waiting writer used to hold back new readers at once (PENDING), so with
// more threads than cores each write parked every running reader and woke
// them all again afterwards (8 threads at 99% reads: 0.09x
// std::shared_mutex). A waiting writer now holds readers back only while it
// spins (SPINNING) and, once its grace window has passed, for good
// (PENDING); parked within the window it lets them in. These tests observe
// the word, with windows long or short enough that timing cannot decide.

using long_grace = hwsync::rw_policy::with_writer_grace<phase_fair, 10'000'000>;  // 10 s
using long_grace_wp = hwsync::rw_policy::with_writer_grace<writer_preferred, 10'000'000>;

// Parked: registered, not spinning, not (yet) holding readers back.
bool writer_parked_within_grace(std::uint64_t s) {
  return waiting_writers(s) == 1 && (s & (bits::spinning | bits::pending | bits::woken)) == 0;
}

template <class M>
void parked_writer_within_its_grace_lets_readers_in() {
  M m;
  m.lock_shared();
  std::thread writer([&] {
    m.lock();
    m.unlock();
  });
  await_state(m, writer_parked_within_grace);
  EXPECT_TRUE(on_other_thread([&] {
    const bool ok = m.try_lock_shared();
    if (ok) m.unlock_shared();
    return ok;
  })) << "a parked writer within its grace window held back a new reader";
  // The writer takes the lock as soon as the readers are gone: the last
  // one out wakes it.
  m.unlock_shared();
  writer.join();
  EXPECT_EQ(rest(m), 0u);
}

TEST(SharedMutexStopTheWorldPerWrite, AParkedWriterWithinItsGraceWindowLetsReadersIn) {
  parked_writer_within_its_grace_lets_readers_in<hwsync::shared_mutex<long_grace>>();
  parked_writer_within_its_grace_lets_readers_in<hwsync::shared_mutex<long_grace_wp>>();
}

// The end of a write phase does not hold readers back on behalf of writers
// still within their grace windows (it used to set PENDING whenever writers
// waited): the readers parked behind the writer are admitted, under
// writer_preferred too.
template <class M>
void write_phase_end_admits_readers_while_writers_are_within_grace() {
  M m;
  std::mutex order_m;
  std::string order;
  m.lock();
  std::thread reader([&] {
    m.lock_shared();
    {
      std::lock_guard g(order_m);
      order += 'R';
    }
    m.unlock_shared();
  });
  await_state(m, [](std::uint64_t s) { return waiting_readers(s) == 1; });
  std::thread writer([&] {
    m.lock();
    {
      std::lock_guard g(order_m);
      order += 'W';
    }
    m.unlock();
  });
  await_state(m, writer_parked_within_grace);
  m.unlock();
  reader.join();
  writer.join();
  EXPECT_EQ(order, "RW");
  EXPECT_EQ(rest(m), 0u);
}

TEST(SharedMutexStopTheWorldPerWrite, AWritePhaseEndAdmitsReadersWhileWritersAreWithinGrace) {
  write_phase_end_admits_readers_while_writers_are_within_grace<hwsync::shared_mutex<long_grace>>();
  write_phase_end_admits_readers_while_writers_are_within_grace<
      hwsync::shared_mutex<long_grace_wp>>();
}

// The window ends: the writer holds readers back (PENDING) even while it
// sleeps, and keeps them back until it has had its turn.
TEST(SharedMutexStopTheWorldPerWrite, AWriterPastItsGraceWindowHoldsBackNewReaders) {
  hwsync::shared_mutex<hwsync::rw_policy::with_writer_grace<phase_fair, 1000>> m;  // 1 ms
  m.lock_shared();
  std::thread writer([&] {
    m.lock();
    m.unlock();
  });
  await_state(m,
              [](std::uint64_t s) { return waiting_writers(s) == 1 && (s & bits::pending) != 0; });
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock_shared(); }));
  m.unlock_shared();
  writer.join();
  EXPECT_EQ(rest(m), 0u);
}

// strict_phase_fair keeps Brandenburg and Anderson's rule: PENDING in the
// same step that registers the writer.
TEST(SharedMutexStopTheWorldPerWrite, StrictPhaseFairHoldsBackReadersTheMomentAWriterWaits) {
  hwsync::shared_mutex<hwsync::rw_policy::strict_phase_fair> m;
  m.lock_shared();
  std::thread writer([&] {
    m.lock();
    m.unlock();
  });
  await_state(m, [](std::uint64_t s) { return waiting_writers(s) == 1; });
  EXPECT_NE(state(m) & bits::pending, 0u) << std::hex << state(m);
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock_shared(); }));
  m.unlock_shared();
  writer.join();
  EXPECT_EQ(rest(m), 0u);
}

// A writer's timed wait that ends within its grace window gives up without
// ever having held readers back, and leaves the word at rest.
TEST(SharedMutexStopTheWorldPerWrite, ATimedWriterThatGivesUpWithinItsGraceLeavesNoTrace) {
  hwsync::shared_mutex<long_grace> m;
  m.lock_shared();
  EXPECT_FALSE(on_other_thread([&] { return m.try_lock_for(20ms); }));
  EXPECT_EQ(state(m) & (bits::pending | bits::spinning | bits::wwait_mask), 0u)
      << std::hex << state(m);
  m.unlock_shared();
  EXPECT_EQ(rest(m), 0u);
}

// A writer that times out must not leave the readers it held back parked.
TYPED_TEST(SharedMutexTest, TimedOutWriterReleasesTheReadersItHeldBack) {
  TypeParam m;
  m.lock_shared();
  std::thread writer([&] { EXPECT_FALSE(m.try_lock_for(50ms)); });
  await_state(m, [](std::uint64_t s) { return waiting_writers(s) == 1; });
  std::atomic<bool> entered{false};
  std::thread reader([&] {
    m.lock_shared();
    entered = true;
    m.unlock_shared();
  });
  writer.join();
  reader.join();
  EXPECT_TRUE(entered.load());
  m.unlock_shared();
  EXPECT_EQ(rest(m), 0u);
}

// The upgrade right can be taken while readers are held back; its holder is
// then admitted with the next read phase, and threads that want the right
// meanwhile park and are woken when it is given back.
TYPED_TEST(SharedMutexTest, UpgradeRightWaitersParkAndAreWoken) {
  TypeParam m;
  m.lock();
  std::atomic<int> upgrades{0};
  std::thread first([&] {
    m.lock_upgrade();
    upgrades.fetch_add(1);
    m.unlock_upgrade();
  });
  await_state(m,
              [](std::uint64_t s) { return (s & bits::upgrader) != 0 && waiting_readers(s) == 1; });
  std::thread second([&] {
    m.lock_upgrade();
    upgrades.fetch_add(1);
    m.unlock_upgrade_and_lock();
    m.unlock();
  });
  await_state(m, [](std::uint64_t s) { return (s & bits::uparked) != 0; });
  m.unlock();
  first.join();
  second.join();
  EXPECT_EQ(upgrades.load(), 2);
  EXPECT_EQ(rest(m), 0u);
}

TYPED_TEST(SharedMutexTest, TimedOutUpgradeRightHolderGivesItBack) {
  TypeParam m;
  m.lock();
  std::thread waiter([&] { EXPECT_FALSE(m.try_lock_upgrade_for(30ms)); });
  waiter.join();
  EXPECT_EQ(rest(m), bits::writer);
  m.unlock();
  EXPECT_TRUE(m.try_lock_upgrade());
  m.unlock_upgrade();
  EXPECT_EQ(rest(m), 0u);
}

// ---------------------------------------------------------------------------
// Debug checks: each misuse aborts in a child process with a message that
// names the primitive and the thread.

using hwsync::test::misuse_case;

class SharedMutexMisuse : public ::testing::TestWithParam<misuse_case> {};

TEST_P(SharedMutexMisuse, AbortsWithAMessage) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "built without HWSYNC_DEBUG_CHECKS";
  hwsync::test::expect_misuse_aborts(GetParam(), "hwsync::shared_mutex<");
}

INSTANTIATE_TEST_SUITE_P(
    DebugChecks, SharedMutexMisuse,
    ::testing::Values(
        misuse_case{"shared_unlock_shared_not_held",
                    "unlock_shared() by a thread that does not hold it shared"},
        misuse_case{"shared_writer_locks_shared",
                    "lock_shared() by the thread that holds it exclusively"},
        misuse_case{"shared_writer_try_locks_shared",
                    "try_lock_shared() by the thread that holds it exclusively"},
        misuse_case{"shared_reader_locks_shared_again",
                    "lock_shared() by a thread that already holds it shared"},
        misuse_case{"shared_reader_locks_exclusive",
                    "lock() by a thread that already holds it shared"},
        misuse_case{"shared_upgrader_locks_shared",
                    "lock_shared() by the thread that holds it upgradeable"},
        misuse_case{"shared_writer_relocks", "lock() by the thread that holds it exclusively"},
        misuse_case{"shared_unlock_by_non_owner",
                    "unlock() by a thread that does not hold it; held exclusively by"},
        misuse_case{"shared_unlock_unlocked",
                    "unlock() of a shared_mutex that is not locked exclusively"},
        misuse_case{"shared_writer_unlocks_shared",
                    "unlock_shared() by the thread that holds it exclusively"},
        misuse_case{"shared_unlock_upgrade_not_held",
                    "unlock_upgrade() by a thread that does not hold it upgradeable"},
        misuse_case{"shared_upgrade_not_held",
                    "unlock_upgrade_and_lock() by a thread that does not hold it upgradeable"},
        misuse_case{"shared_downgrade_not_held",
                    "unlock_and_lock_shared() by a thread that does not hold it exclusively"},
        misuse_case{"shared_destroy_held_shared", "destroyed while locked shared"},
        misuse_case{"shared_destroy_held_exclusive", "destroyed while locked exclusively"}),
    hwsync::test::misuse_case_name);

// ---------------------------------------------------------------------------
// ThreadSanitizer: shared locks are read locks to TSan. Two readers writing
// the same variable under the shared lock race, and TSan must say so; the
// planted case runs in a child process (a report ends the process).

TEST(SharedMutexTsanPlanted, DISABLED_ReadersThatWriteRace) {
  hwsync::shared_mutex<> m;
  int shared = 0;
  auto write_under_read_lock = [&](int v) {
    std::shared_lock r(m);
    shared = v;
  };
  std::thread t1(write_under_read_lock, 1), t2(write_under_read_lock, 2);
  t1.join();
  t2.join();
  std::printf("value %d\n", shared);
}

TEST(SharedMutexTsan, ReadersThatWriteAreReportedAsARace) {
  if (!hwsync::tsan::enabled) GTEST_SKIP() << "not a ThreadSanitizer build";
  const auto r = hwsync::test::run_child(
      {"/proc/self/exe", "--gtest_also_run_disabled_tests",
       "--gtest_filter=SharedMutexTsanPlanted.DISABLED_ReadersThatWriteRace"});
  EXPECT_NE(r.output.find("WARNING: ThreadSanitizer: data race"), std::string::npos) << r.output;
}

// The counterpart in-process: writes under the exclusive lock, reads under
// the shared one, upgrades and downgrades: no report (the test binary runs
// with halt_on_error under the tsan preset).
TEST(SharedMutexTsan, WritersAndReadersThroughEveryModeAreOrdered) {
  hwsync::shared_mutex<> m;
  long value = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        switch ((t + i) % 4) {
          case 0: {
            std::unique_lock w(m);
            ++value;
            break;
          }
          case 1: {
            std::shared_lock r(m);
            EXPECT_GE(value, 0);
            break;
          }
          case 2:
            m.lock_upgrade();
            m.unlock_upgrade_and_lock();
            ++value;
            m.unlock_and_lock_shared();
            EXPECT_GT(value, 0);
            m.unlock_shared();
            break;
          default:
            m.lock_upgrade();
            EXPECT_GE(value, 0);
            m.unlock_upgrade();
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(value, 4 * 2000 / 2);
}

}  // namespace
