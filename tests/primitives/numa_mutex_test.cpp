// hwsync::numa_mutex: Lockable/TimedLockable semantics, mutual exclusion and
// the fairness bound on this machine and on synthetic topologies with threads
// on virtual nodes, timed-out heads, the counters, and debug-check aborts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "hwsync/numa.hpp"
#include "numa_acquisition_log.hpp"
#include "support/misuse.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using hwsync::numa_mutex;
using hwsync::test::acquisition_log;
using hwsync::test::join_node;
using hwsync::test::numa_topology_scope;

// Waits (yielding) until pred() holds; false after `limit`.
template <class Pred>
bool eventually(Pred pred, std::chrono::seconds limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

TEST(NumaMutex, IsConstexprConstructibleAndSmall) {
  static_assert(std::is_nothrow_default_constructible_v<numa_mutex>);
  static_assert(!std::is_copy_constructible_v<numa_mutex> &&
                !std::is_move_constructible_v<numa_mutex>);
  static_assert(hwsync::debug::checks_enabled || sizeof(numa_mutex) == 24);
  static constinit numa_mutex global;
  global.lock();
  global.unlock();
  EXPECT_EQ(global.local_handoff_bound(), numa_mutex::default_local_handoff_bound);
  EXPECT_EQ(global.max_turn(), numa_mutex::default_max_turn);
  EXPECT_EQ(numa_mutex(3).local_handoff_bound(), 3u);
  EXPECT_EQ(numa_mutex(3, 250us).max_turn(), 250us);
}

TEST(NumaMutex, AnUncontendedLockAllocatesNothing) {
  numa_mutex m;
  for (int i = 0; i < 1000; ++i) {
    m.lock();
    m.unlock();
    ASSERT_TRUE(m.try_lock());
    m.unlock();
  }
  EXPECT_EQ(m.stats().nodes, 0u);  // no per-node block: the fast path alone
  EXPECT_EQ(m.stats().contended_acquisitions, 0u);
}

// Every test below runs on this machine and on synthetic topologies.
class NumaMutexOn : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { scope_ = std::make_unique<numa_topology_scope>(GetParam()); }
  void TearDown() override { scope_.reset(); }
  unsigned nodes() const { return hwsync::numa::node_count(); }

 private:
  std::unique_ptr<numa_topology_scope> scope_;
};

TEST_P(NumaMutexOn, TryLockFailsWhileAnotherThreadHoldsIt) {
  numa_mutex m;
  m.lock();
  bool got = true;
  std::thread([&] {
    join_node(nodes() - 1);
    got = m.try_lock();
  }).join();
  EXPECT_FALSE(got);
  m.unlock();
  std::thread([&] {
    join_node(nodes() - 1);
    got = m.try_lock();
    if (got) m.unlock();
  }).join();
  EXPECT_TRUE(got);
}

TEST_P(NumaMutexOn, StdAdaptorsWork) {
  numa_mutex a, b;
  {
    std::scoped_lock both(a, b);
    std::thread([&] { EXPECT_FALSE(a.try_lock()); }).join();
  }
  {
    std::unique_lock u(a, std::try_to_lock);
    EXPECT_TRUE(u.owns_lock());
  }
  std::unique_lock t(a, 10ms);
  EXPECT_TRUE(t.owns_lock());
}

TEST_P(NumaMutexOn, TryLockForTimesOutWhileHeldAndLeavesNoHeadBehind) {
  hwsync::test::watchdog dog("timed-out heads", 60s);
  numa_mutex m;
  m.lock();
  std::vector<std::thread> ts;
  std::atomic<int> timed_out{0};
  for (unsigned n = 0; n < nodes(); ++n) {
    ts.emplace_back([&, n] {
      join_node(n);
      const auto t0 = std::chrono::steady_clock::now();
      if (!m.try_lock_for(30ms)) {
        EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
        timed_out.fetch_add(1);
      } else {
        ADD_FAILURE() << "got a lock another thread holds";
        m.unlock();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(timed_out.load(), static_cast<int>(nodes()));
  EXPECT_EQ(m.stats().heads_waiting, 0u) << "a timed-out head stayed registered";
  m.unlock();
  // G is free and takeable by the fast path again: nothing was stranded.
  std::thread([&] {
    join_node(0);
    EXPECT_TRUE(m.try_lock());
    m.unlock();
  }).join();
}

// Regression (found while designing the grant): a head withdraws while the
// holder's unlock is about to grant, and a newcomer takes the freed lock;
// the late grant must not make a second holder. Timed heads come and go on
// every node while untimed threads count under the lock.
TEST_P(NumaMutexOn, WithdrawingHeadsNeverMakeASecondHolder) {
  hwsync::test::watchdog dog("withdrawals", 120s);
  numa_mutex m(2);
  std::uint64_t counter = 0;
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  std::vector<std::thread> ts;
  const unsigned per_node = nodes() == 1 ? 4 : 2;
  constexpr int rounds = 2000;
  std::atomic<std::uint64_t> taken{0};
  hwsync::test::start_gate gate(per_node * nodes());
  for (unsigned n = 0; n < nodes(); ++n) {
    for (unsigned k = 0; k < per_node; ++k) {
      ts.emplace_back([&, n, k] {
        join_node(n);
        gate.arrive_and_wait();
        for (int i = 0; i < rounds; ++i) {
          const bool ok =
              (k % 2 == 0) ? (m.lock(), true) : m.try_lock_for(std::chrono::microseconds(i % 50));
          if (!ok) continue;
          if (inside.fetch_add(1) != 0) overlap = true;
          ++counter;
          inside.fetch_sub(1);
          m.unlock();
          taken.fetch_add(1);
        }
      });
    }
  }
  for (auto& t : ts) t.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(counter, taken.load());
  EXPECT_EQ(m.stats().heads_waiting, 0u);
}

TEST_P(NumaMutexOn, MutualExclusionWithAnExactCount) {
  hwsync::test::watchdog dog("mutual exclusion", 120s);
  numa_mutex m;
  struct alignas(64) line {
    std::uint64_t v = 0;
  } lines[4];
  const unsigned threads = std::max(4u, 2 * nodes());
  constexpr int per_thread = 20000;
  std::vector<std::thread> ts;
  hwsync::test::start_gate gate(threads);
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      join_node(t % nodes());
      gate.arrive_and_wait();
      for (int i = 0; i < per_thread; ++i) {
        std::lock_guard g(m);
        for (auto& l : lines) ++l.v;
        if (i % 64 == 0) std::this_thread::yield();  // holders get preempted: others queue
      }
    });
  }
  for (auto& t : ts) t.join();
  for (auto& l : lines) EXPECT_EQ(l.v, std::uint64_t{threads} * per_thread);
  const auto s = m.stats();
  if (s.nodes != 0) {
    EXPECT_EQ(s.nodes, nodes());
  }
  EXPECT_LE(s.cross_node_handoffs, s.global_handoffs);
}

// The bound, from the lock's own order of holders: four threads per node
// contend with bound 3; the log records each holder's node and the heads it
// saw waiting.
TEST_P(NumaMutexOn, SameNodeHandoffsStopAtTheBoundAndNoNodeStarves) {
  hwsync::test::watchdog dog("fairness bound", 120s);
  constexpr std::uint32_t bound = 3;
  numa_mutex m(bound);
  const unsigned per_node = 4;
  const unsigned threads = per_node * nodes();
  constexpr int per_thread = 3000;
  acquisition_log log(std::size_t{threads} * per_thread);
  std::vector<std::uint64_t> per_thread_count(threads, 0);
  std::vector<std::thread> ts;
  hwsync::test::start_gate gate(threads);
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      join_node(t / per_node);
      gate.arrive_and_wait();
      for (int i = 0; i < per_thread; ++i) {
        std::lock_guard g(m);
        log.record(m, hwsync::numa::current_node() % nodes());
        ++per_thread_count[t];
        // Yielding while holding it makes the others queue on every machine
        // load: without it a busy machine may run the threads one by one.
        if (i % 16 == 0) std::this_thread::yield();
      }
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_EQ(log.entries().size(), std::size_t{threads} * per_thread);
  EXPECT_LE(log.longest_run_past_a_waiting_node(), bound + 1);
  EXPECT_LE(log.longest_wait_of_a_head(nodes()), (nodes() - 1) * (bound + 1));
  const auto s = m.stats();
  EXPECT_GT(s.contended_acquisitions, 0u);
  if (nodes() > 1) {
    // Both levels of the cohort were used: without them this test checks
    // nothing. Four threads per node on two cores always queue some.
    EXPECT_GT(s.local_handoffs, 0u);
    EXPECT_GT(s.global_handoffs, 0u);
    EXPECT_GT(s.cross_node_handoffs, 0u);
  }
}

// A head that registered waits for at most (nodes - 1) cohorts: the holder's
// node and every other node keep contending, and one thread on the last
// node asks once. Deterministic: the head is seen registered before the
// holder lets go.
TEST_P(NumaMutexOn, ARegisteredHeadGetsTheLockWithinTheBound) {
  if (nodes() < 2) GTEST_SKIP() << "one node: no remote head";
  hwsync::test::watchdog dog("registered head", 120s);
  constexpr std::uint32_t bound = 2;
  numa_mutex m(bound);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> order{0};
  std::uint64_t acquisitions = 0;  // under m
  std::uint64_t head_entered_at = 0;
  m.lock();  // the main thread, on whatever node; holds until the head is registered
  const unsigned last = nodes() - 1;
  std::thread head([&] {
    join_node(last);
    m.lock();
    head_entered_at = acquisitions++;
    m.unlock();
  });
  ASSERT_TRUE(eventually([&] { return (m.stats().heads_waiting >> last & 1u) != 0; }));
  std::vector<std::thread> others;
  for (unsigned n = 0; n < last; ++n) {
    for (int k = 0; k < 3; ++k) {
      others.emplace_back([&, n] {
        join_node(n);
        while (!stop.load()) {
          std::lock_guard g(m);
          ++acquisitions;
        }
      });
    }
  }
  ++acquisitions;
  m.unlock();
  head.join();
  stop = true;
  for (auto& t : others) t.join();
  (void)order;
  // Before it: the main thread's hold, then at most one cohort of every
  // other node.
  EXPECT_LE(head_entered_at, 1 + std::uint64_t{nodes() - 1} * (bound + 1));
}

// A holder whose node has nobody queued keeps G for its node's turn (KEPT):
// its node's next lock() takes it without a hand-off, and when the node does
// not come back, a waiting head hands it on after the turn's end.
TEST_P(NumaMutexOn, AKeptTurnGoesOnForItsNodeAndThenMovesOn) {
  if (nodes() < 2) GTEST_SKIP() << "one node: nobody to keep the lock from";
  hwsync::test::watchdog dog("kept turn", 60s);
  numa_mutex m(numa_mutex::default_local_handoff_bound, 1s);
  std::vector<int> order;  // under m
  ASSERT_FALSE(hwsync::numa::assign_current_thread_to_node(1));
  m.lock();  // the fast path, from node 1
  std::atomic<bool> let_go{false};
  std::thread a([&] {
    join_node(0);
    m.lock();  // queued as node 0's head; granted at the main thread's unlock
    order.push_back(0);
    while (!let_go.load()) std::this_thread::yield();
    m.unlock();  // node 1's head waits, the turn has time left: kept
    m.lock();    // node 0 again: the kept turn goes on
    order.push_back(0);
    m.unlock();  // kept again; node 0 never comes back
  });
  ASSERT_TRUE(eventually([&] { return (m.stats().heads_waiting & 1u) != 0; }));
  std::thread b([&] {
    join_node(1);
    m.lock();
    order.push_back(1);
    m.unlock();
  });
  m.unlock();  // grants G to node 0, the next registered node after node 1
  hwsync::numa::clear_current_thread_node();
  ASSERT_TRUE(eventually([&] { return (m.stats().heads_waiting >> 1 & 1u) != 0; }));
  let_go = true;
  a.join();
  b.join();
  EXPECT_EQ(order, (std::vector<int>{0, 0, 1}));
  EXPECT_EQ(m.stats().heads_waiting, 0u);
  EXPECT_TRUE(m.try_lock());  // nothing left kept or reserved
  m.unlock();
}

INSTANTIATE_TEST_SUITE_P(Topologies, NumaMutexOn,
                         ::testing::Values("system", "numa:2 core:4 pu:1",
                                           "pack:2 numa:2 core:4 pu:1"),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           if (i.param == "system") return std::string("ThisMachine");
                           return i.param == "numa:2 core:4 pu:1" ? std::string("TwoNodes")
                                                                  : std::string("FourNodes");
                         });

TEST(NumaMutexOnThisMachine, ContentionUsesOneNodeBlock) {
  numa_topology_scope scope("system");
  if (hwsync::numa::node_count() != 1) GTEST_SKIP() << "a multi-node machine";
  numa_mutex m;
  m.lock();
  std::thread t([&] {
    m.lock();
    m.unlock();
  });
  ASSERT_TRUE(eventually([&] { return m.stats().heads_waiting != 0 || m.stats().nodes != 0; }));
  m.unlock();
  t.join();
  EXPECT_EQ(m.stats().nodes, 1u);
  EXPECT_EQ(m.stats().cross_node_handoffs, 0u);
}

// Debug checks: each misuse aborts in a child process with a message.
using hwsync::test::misuse_case;

class NumaMutexMisuse : public ::testing::TestWithParam<misuse_case> {};

TEST_P(NumaMutexMisuse, AbortsWithAMessage) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "built without HWSYNC_DEBUG_CHECKS";
  hwsync::test::expect_misuse_aborts(GetParam(), "hwsync::numa_mutex at 0x");
}

INSTANTIATE_TEST_SUITE_P(
    DebugChecks, NumaMutexMisuse,
    ::testing::Values(
        misuse_case{"numa_unlock_by_non_owner", "unlock() by a thread that does not hold it"},
        misuse_case{"numa_unlock_unlocked", "unlock() of a mutex that is not locked"},
        misuse_case{"numa_relock_by_holder", "lock() by the thread that already holds it"},
        misuse_case{"numa_destroy_held", "destroyed while locked"}),
    hwsync::test::misuse_case_name);

}  // namespace
