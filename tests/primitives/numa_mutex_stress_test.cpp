// Stress tests for hwsync::numa_mutex on synthetic topologies with threads on
// virtual nodes, bounded in iterations and in seconds. Correctness is exact
// (counts, an occupancy check); the fairness checks are counts of holders
// from the lock's own order, never times.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/numa.hpp"
#include "numa_acquisition_log.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using hwsync::numa_mutex;
using hwsync::test::acquisition_log;
using hwsync::test::join_node;
using hwsync::test::numa_topology_scope;

constexpr auto time_limit = 8s;  // per scenario; iterations end it first on a quiet machine

struct scenario {
  const char* topology;
  unsigned per_node;
  std::uint32_t bound;
};

class NumaMutexStress : public ::testing::TestWithParam<scenario> {};

// Oversubscribed (4-8 threads per node on 2 cores): every thread loops
// lock(); log; count; unlock() until its iterations or the time run out. The
// log must show the cohort bound and the head bound; every thread must have
// progressed.
TEST_P(NumaMutexStress, BoundsHoldAndEveryThreadProgresses) {
  const scenario sc = GetParam();
  numa_topology_scope scope(sc.topology);
  hwsync::test::watchdog dog("numa_mutex stress", 300s);
  const unsigned nodes = hwsync::numa::node_count();
  const unsigned threads = nodes * sc.per_node;
  constexpr int per_thread = 20000;
  numa_mutex m(sc.bound);
  acquisition_log log(std::size_t{threads} * per_thread);
  std::vector<std::uint64_t> done(threads, 0);
  std::uint64_t counter = 0;
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  hwsync::test::start_gate gate(threads);
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      join_node(t / sc.per_node);
      gate.arrive_and_wait();
      for (int i = 0; i < per_thread && !stop.load(std::memory_order_relaxed); ++i) {
        std::lock_guard g(m);
        log.record(m, hwsync::numa::current_node() % nodes);
        ++counter;
        ++done[t];
        if (i % 64 == 0) std::this_thread::yield();  // holders get preempted: others queue
      }
    });
  }
  const auto end = std::chrono::steady_clock::now() + time_limit;
  std::thread timer([&] {
    while (std::chrono::steady_clock::now() < end && !stop.load())
      std::this_thread::sleep_for(10ms);
    stop = true;
  });
  for (auto& t : ts) t.join();
  stop = true;
  timer.join();
  std::uint64_t total = 0;
  for (unsigned t = 0; t < threads; ++t) {
    EXPECT_GT(done[t], 0u) << "thread " << t << " (node " << t / sc.per_node << ") starved";
    total += done[t];
  }
  EXPECT_EQ(counter, total);
  ASSERT_EQ(log.entries().size(), total);
  EXPECT_LE(log.longest_run_past_a_waiting_node(), sc.bound + 1);
  EXPECT_LE(log.longest_wait_of_a_head(nodes), std::size_t{nodes - 1} * (sc.bound + 1));
  const auto s = m.stats();
  RecordProperty("acquisitions", std::to_string(total));
  RecordProperty("cross_node_handoffs", std::to_string(s.cross_node_handoffs));
  RecordProperty("local_handoffs", std::to_string(s.local_handoffs));
}

INSTANTIATE_TEST_SUITE_P(Topologies, NumaMutexStress,
                         ::testing::Values(scenario{"pack:2 numa:2 core:4 pu:1", 4, 64},
                                           scenario{"pack:2 numa:2 core:4 pu:1", 8, 1},
                                           scenario{"pack:2 numa:4 core:2 pu:1", 2, 8},
                                           scenario{"numa:2 core:4 pu:1", 4, 0}));

// Every way in — lock(), try_lock(), try_lock_for() with short timeouts (so
// heads withdraw all the time) — with random holds; an occupancy count proves
// that no two threads are ever inside at once.
TEST(NumaMutexTorture, MutualExclusionWithTimedHeadsWithdrawing) {
  numa_topology_scope scope("pack:2 numa:2 core:4 pu:1");
  hwsync::test::watchdog dog("numa_mutex torture", 300s);
  const unsigned nodes = hwsync::numa::node_count();
  constexpr unsigned per_node = 3;
  constexpr int per_thread = 4000;
  numa_mutex m(4);
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  std::atomic<bool> stop{false};
  std::uint64_t counter = 0;
  std::atomic<std::uint64_t> taken{0};
  std::vector<std::thread> ts;
  hwsync::test::start_gate gate(nodes * per_node);
  for (unsigned t = 0; t < nodes * per_node; ++t) {
    ts.emplace_back([&, t] {
      join_node(t / per_node);
      gate.arrive_and_wait();
      std::minstd_rand rng(t + 1);
      for (int i = 0; i < per_thread && !stop.load(std::memory_order_relaxed); ++i) {
        bool ok = true;
        switch (rng() % 3) {
          case 0:
            m.lock();
            break;
          case 1:
            ok = m.try_lock();
            break;
          default:
            ok = m.try_lock_for(std::chrono::microseconds(rng() % 200));
            break;
        }
        if (!ok) continue;
        if (inside.fetch_add(1) != 0) overlap = true;
        ++counter;
        if (rng() % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 50));
        inside.fetch_sub(1);
        m.unlock();
        taken.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  const auto end = std::chrono::steady_clock::now() + time_limit;
  std::thread timer([&] {
    while (std::chrono::steady_clock::now() < end && !stop.load())
      std::this_thread::sleep_for(10ms);
    stop = true;
  });
  for (auto& t : ts) t.join();
  stop = true;
  timer.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(counter, taken.load());
  EXPECT_EQ(m.stats().heads_waiting, 0u);
  // Nothing stranded: the lock is free for the fast path.
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

}  // namespace
