// hwsync::barrier, both algorithms: std::barrier's semantics (tokens, arrive(n),
// arrive_and_drop shrinking the next phase, the completion's place and
// visibility), timed waits, the combining tree's topology-shaped layout, and
// the debug-check aborts (as child processes).
#include "hwsync/barrier.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/spin.hpp"
#include "hwsync/topology.hpp"
#include "support/child_process.hpp"
#include "support/misuse.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using hwsync::barrier_algorithm;
using hwsync::detail::combining_tree;
using hwsync::test::watchdog;

// A completion function that calls through a pointer, so a test can change
// what it does after the barrier is built.
struct call {
  std::function<void()>* f;
  void operator()() noexcept { (*f)(); }
};

class Barrier : public ::testing::TestWithParam<barrier_algorithm> {};

std::string algorithm_name(const ::testing::TestParamInfo<barrier_algorithm>& i) {
  return i.param == barrier_algorithm::central ? "central" : "combining_tree";
}

TEST(BarrierAlgorithm, ChosenByThePartiesThatCanArriveAtOnce) {
  using core = hwsync::detail::barrier_core;
  const auto threshold = core::tree_threshold;
  EXPECT_EQ(core::algorithm_for(1, 64), barrier_algorithm::central);
  EXPECT_EQ(core::algorithm_for(threshold - 1, 64), barrier_algorithm::central);
  EXPECT_EQ(core::algorithm_for(threshold, 64), barrier_algorithm::combining_tree);
  EXPECT_EQ(core::algorithm_for(1000, 64), barrier_algorithm::combining_tree);
  EXPECT_EQ(core::algorithm_for(1000, 2), barrier_algorithm::central) << "2 CPUs: 2 at once";
  EXPECT_EQ(core::algorithm_for(threshold, threshold), barrier_algorithm::combining_tree);
  const unsigned cpus = hwsync::spinner_slots() + 1;
  for (std::ptrdiff_t n : {1, 2, 16, 64, 1000})
    EXPECT_EQ(hwsync::barrier<>(n).algorithm(), core::algorithm_for(n, cpus)) << n;
}

TEST(BarrierAlgorithm, TheConstructorForcesOne) {
  EXPECT_EQ(hwsync::barrier<>(2, barrier_algorithm::combining_tree).algorithm(),
            barrier_algorithm::combining_tree);
  EXPECT_EQ(hwsync::barrier<>(1000, barrier_algorithm::central).algorithm(),
            barrier_algorithm::central);
  EXPECT_EQ(hwsync::barrier<>(3, barrier_algorithm::central).tree(), nullptr);
  EXPECT_NE(hwsync::barrier<>(3, barrier_algorithm::combining_tree).tree(), nullptr);
  EXPECT_EQ(hwsync::barrier<>::max(), (std::ptrdiff_t{1} << 31) - 1);
}

TEST_P(Barrier, OnePartyCompletesEveryPhaseAtOnce) {
  int completions = 0;
  std::function<void()> f = [&] { ++completions; };
  hwsync::barrier<call> b(1, GetParam(), call{&f});
  for (int i = 1; i <= 100; ++i) {
    b.arrive_and_wait();
    EXPECT_EQ(completions, i);
  }
}

// arrive(n) counts n arrivals; the token's phase ends with the last one; a
// token from the phase before the current one is already over.
TEST_P(Barrier, ArriveCountsNAndTokensNameTheirPhase) {
  int completions = 0;
  std::function<void()> f = [&] { ++completions; };
  hwsync::barrier<call> b(5, GetParam(), call{&f});
  auto t1 = b.arrive(2);
  EXPECT_FALSE(b.wait_for(t1, 0s));
  auto t2 = b.arrive(2);
  EXPECT_FALSE(b.wait_for(t2, 0s));
  EXPECT_EQ(completions, 0);
  auto t3 = b.arrive();
  EXPECT_EQ(completions, 1);
  EXPECT_TRUE(b.wait_for(t1, 0s));
  b.wait(std::move(t2));
  auto next = b.arrive(4);  // phase 1 has begun with 5 parties again
  EXPECT_FALSE(b.wait_for(next, 0s));
  b.wait(std::move(t3));  // a token of the phase before: over
  b.wait(std::move(t1));
  b.arrive_and_wait();
  EXPECT_EQ(completions, 2);
  b.wait(std::move(next));
}

// The completion runs once per phase, on one thread, after every arrival and
// before any waiter of its phase returns; what it writes, and what every
// thread wrote before arriving, is visible to all after their waits.
TEST_P(Barrier, CompletionRunsOnceBetweenTheLastArrivalAndTheFirstRelease) {
  watchdog dog("barrier completion ordering", 120s);
  constexpr int threads = 8, phases = 200;
  std::vector<int> before(threads, -1);
  int completed_phases = 0;  // written only by the completion
  std::atomic<int> released{0};
  std::atomic<int> in_completion{0};
  std::function<void()> f = [&] {
    EXPECT_EQ(in_completion.fetch_add(1), 0);
    // Every thread has arrived at this phase and none has left it yet: all
    // left the earlier phases (they arrived here after).
    EXPECT_EQ(released.load(), completed_phases * threads);
    for (int i = 0; i < threads; ++i)
      EXPECT_EQ(before[static_cast<std::size_t>(i)], completed_phases);
    ++completed_phases;
    in_completion.fetch_sub(1);
  };
  hwsync::barrier<call> b(threads, GetParam(), call{&f});
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      for (int p = 0; p < phases; ++p) {
        before[static_cast<std::size_t>(i)] = p;
        if (p % 2 == 0) {
          b.arrive_and_wait();
        } else {
          auto t = b.arrive();
          b.wait(std::move(t));
        }
        EXPECT_EQ(completed_phases, p + 1);
        released.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(completed_phases, phases);
}

// arrive_and_drop(): the dropping thread counts in the current phase, and
// every later phase completes without it.
TEST_P(Barrier, ArriveAndDropShrinksTheNextPhase) {
  watchdog dog("barrier arrive_and_drop", 60s);
  int completions = 0;
  std::function<void()> f = [&] { ++completions; };
  hwsync::barrier<call> b(3, GetParam(), call{&f});
  std::thread dropper([&] { b.arrive_and_drop(); });
  std::thread stayer([&] {
    for (int i = 0; i < 50; ++i) b.arrive_and_wait();
  });
  for (int i = 0; i < 50; ++i) b.arrive_and_wait();
  dropper.join();
  stayer.join();
  EXPECT_EQ(completions, 50);
  // The stayer drops too: its arrival counts in phase 50, which still needs
  // this thread's; from phase 51 on, this thread is the only party.
  std::thread([&] { b.arrive_and_drop(); }).join();
  EXPECT_EQ(completions, 50);
  b.arrive_and_wait();
  EXPECT_EQ(completions, 51);
  b.arrive_and_wait();
  EXPECT_EQ(completions, 52);
}

TEST_P(Barrier, EveryPartyMayDrop) {
  int completions = 0;
  std::function<void()> f = [&] { ++completions; };
  hwsync::barrier<call> b(2, GetParam(), call{&f});
  b.arrive_and_drop();
  b.arrive_and_drop();
  EXPECT_EQ(completions, 1);
}

TEST_P(Barrier, TimedWaitsExpireOnEveryClockAndTheTokenStaysGood) {
  watchdog dog("barrier timed waits", 60s);
  hwsync::barrier<> b(2, GetParam());
  auto t = b.arrive();
  EXPECT_FALSE(b.wait_for(t, 20ms));
  EXPECT_FALSE(b.wait_until(t, std::chrono::steady_clock::now() + 20ms));
  EXPECT_FALSE(b.wait_until(t, std::chrono::system_clock::now() + 20ms));
  EXPECT_FALSE(b.wait_until(t, std::chrono::steady_clock::now() - 1s));
  const auto deadline = std::chrono::steady_clock::now() + 20ms;
  EXPECT_FALSE(b.wait_until(t, deadline));
  EXPECT_GE(std::chrono::steady_clock::now(), deadline);
  std::thread other([&] { b.arrive_and_wait(); });
  EXPECT_TRUE(b.wait_for(t, 30s));
  other.join();
  EXPECT_TRUE(b.wait_for(t, 0s));
  b.wait(std::move(t));
}

TEST_P(Barrier, TimedWaitsReturnTrueWhenThePhaseEndsBeforeTheDeadline) {
  watchdog dog("barrier timed wait success", 60s);
  constexpr int threads = 4;
  hwsync::barrier<> b(threads, GetParam());
  std::vector<std::thread> ts;
  for (int i = 0; i < threads - 1; ++i) {
    ts.emplace_back([&, i] {
      for (int p = 0; p < 20; ++p) {
        auto t = b.arrive();
        const bool ok = i == 0   ? b.wait_for(t, 30s)
                        : i == 1 ? b.wait_until(t, std::chrono::system_clock::now() + 30s)
                                 : b.wait_until(t, std::chrono::steady_clock::now() + 30s);
        EXPECT_TRUE(ok);
      }
    });
  }
  for (int p = 0; p < 20; ++p) {
    std::this_thread::sleep_for(1ms);  // the others usually park meanwhile
    b.arrive_and_wait();
  }
  for (auto& t : ts) t.join();
}

// A waiter that timed out leaves PARKED set: the phase must still end and
// wake whoever sleeps then.
TEST_P(Barrier, ATimedOutWaiterLeavesNoLostWakeUp) {
  watchdog dog("barrier after a timeout", 60s);
  hwsync::barrier<> b(3, GetParam());
  auto t = b.arrive();
  EXPECT_FALSE(b.wait_for(t, 10ms));
  std::thread sleeper([&] { b.arrive_and_wait(); });
  std::this_thread::sleep_for(20ms);
  auto last = b.arrive();
  b.wait(std::move(t));
  sleeper.join();
  b.wait(std::move(last));
}

INSTANTIATE_TEST_SUITE_P(BothAlgorithms, Barrier,
                         ::testing::Values(barrier_algorithm::central,
                                           barrier_algorithm::combining_tree),
                         algorithm_name);

// ---------------------------------------------------------------------------
// The combining tree's layout

// The deepest common ancestor of two nodes, as a distance from the root.
int common_ancestor(const combining_tree& t, std::size_t a, std::size_t b) {
  std::vector<std::size_t> up;
  for (int i = static_cast<int>(a); i >= 0; i = t.parent(static_cast<std::size_t>(i)))
    up.push_back(static_cast<std::size_t>(i));
  for (int i = static_cast<int>(b); i >= 0; i = t.parent(static_cast<std::size_t>(i)))
    if (std::find(up.begin(), up.end(), static_cast<std::size_t>(i)) != up.end()) return i;
  return -1;
}

std::size_t depth(const combining_tree& t, std::size_t n) {
  std::size_t d = 0;
  for (int i = t.parent(n); i >= 0; i = t.parent(static_cast<std::size_t>(i))) ++d;
  return d;
}

std::size_t first_leaf_of(const combining_tree& t, unsigned pu) {
  for (std::size_t j = 0; j < t.leaves(); ++j)
    if (t.pu_of_leaf(j) == pu) return j;
  ADD_FAILURE() << "no leaf for PU " << pu;
  return 0;
}

void expect_consistent(const combining_tree& t, std::uint32_t parties) {
  std::uint64_t sum = 0;
  for (std::size_t j = 0; j < t.leaves(); ++j) sum += t.capacity(j);
  EXPECT_EQ(sum, parties);
  EXPECT_EQ(t.parent(t.nodes() - 1), -1) << "the root is the last node";
  for (std::size_t i = 0; i + 1 < t.nodes(); ++i) {
    ASSERT_GE(t.parent(i), 0) << "node " << i << " has no parent";
    EXPECT_GT(static_cast<std::size_t>(t.parent(i)), i) << "parents come after their children";
  }
  for (std::size_t i = t.leaves(); i < t.nodes(); ++i) {
    std::uint32_t used_children = 0;
    for (std::size_t c = 0; c < t.nodes(); ++c)
      if (t.parent(c) == static_cast<int>(i) && t.capacity(c) > 0) ++used_children;
    EXPECT_EQ(t.capacity(i), used_children) << "node " << i;
    EXPECT_LE(used_children, combining_tree::fan_in);
  }
}

// 2 packages x 2 L3 x 2 cores x 2 PUs: threads sharing a core combine below
// those sharing only a cache, which combine below those sharing only a
// package, which combine below the root.
TEST(CombiningTree, ThreadsThatShareMoreCombineLower) {
  const auto topo = hwsync::topology::from_synthetic("pack:2 l3:2 core:2 pu:2");
  ASSERT_EQ(topo.pus(), 16u);
  const combining_tree t(&topo, 64);
  SCOPED_TRACE(t.describe());
  EXPECT_EQ(t.leaves(), 16u);
  expect_consistent(t, 64);
  const std::size_t pu0 = first_leaf_of(t, 0), same_core = first_leaf_of(t, 1),
                    same_l3 = first_leaf_of(t, 2), same_package = first_leaf_of(t, 4),
                    other_package = first_leaf_of(t, 8);
  const int core = common_ancestor(t, pu0, same_core);
  const int l3 = common_ancestor(t, pu0, same_l3);
  const int package = common_ancestor(t, pu0, same_package);
  const int root = common_ancestor(t, pu0, other_package);
  EXPECT_EQ(root, static_cast<int>(t.nodes() - 1));
  EXPECT_GT(depth(t, static_cast<std::size_t>(core)), depth(t, static_cast<std::size_t>(l3)));
  EXPECT_GT(depth(t, static_cast<std::size_t>(l3)), depth(t, static_cast<std::size_t>(package)));
  EXPECT_GT(depth(t, static_cast<std::size_t>(package)), depth(t, static_cast<std::size_t>(root)));
}

TEST(CombiningTree, ManyPartiesPerPuGetSeveralLeavesUnderOneParent) {
  const auto topo = hwsync::topology::from_synthetic("pack:1 core:2 pu:1");
  const combining_tree t(&topo, 32);
  SCOPED_TRACE(t.describe());
  EXPECT_EQ(t.leaves(), 8u);
  expect_consistent(t, 32);
  for (unsigned pu = 0; pu < 2; ++pu) {
    int parent = -2;
    for (std::size_t j = 0; j < t.leaves(); ++j) {
      if (t.pu_of_leaf(j) != pu) continue;
      EXPECT_EQ(t.capacity(j), 4u);
      if (parent == -2) parent = t.parent(j);
      EXPECT_EQ(t.parent(j), parent) << "leaves of PU " << pu << " combine first";
    }
  }
}

TEST(CombiningTree, HomeLeavesBelongToTheThreadsPu) {
  const auto topo = hwsync::topology::from_synthetic("pack:1 core:4 pu:1");
  const combining_tree t(&topo, 48);  // 12 leaves, 3 per PU
  for (int pu = 0; pu < 4; ++pu)
    for (std::uint64_t h = 0; h < 32; ++h)
      EXPECT_EQ(t.pu_of_leaf(t.home_leaf(pu, h)), static_cast<unsigned>(pu));
  for (std::uint64_t h = 0; h < 32; ++h) EXPECT_LT(t.home_leaf(-1, h), t.leaves());
}

TEST(CombiningTree, FewerLeavesThanPusShareThem) {
  const auto topo = hwsync::topology::from_synthetic("pack:2 core:4 pu:2");
  const combining_tree t(&topo, 6);  // 2 leaves for 16 PUs
  EXPECT_EQ(t.leaves(), 2u);
  expect_consistent(t, 6);
  for (int pu = 0; pu < 16; ++pu) EXPECT_LT(t.home_leaf(pu, 7), t.leaves());
}

// Arrivals fill the root exactly once per phase, whatever leaf they start
// at and however they are split; reset() after drops keeps the capacities
// adding up to the parties.
TEST(CombiningTree, TheRootFillsExactlyOncePerPhase) {
  combining_tree t(nullptr, 37);
  expect_consistent(t, 37);
  for (std::uint32_t parties : {37u, 36u, 20u, 5u, 1u}) {
    t.reset(parties);
    expect_consistent(t, parties);
    std::uint32_t left = parties, unplaced = 0;
    int fills = 0;
    for (std::uint32_t step = 1; left > 0; step = step % 3 + 1) {
      const std::uint32_t n = std::min(step, left);
      fills += t.arrive(n, unplaced) ? 1 : 0;
      EXPECT_EQ(unplaced, 0u);
      left -= n;
    }
    EXPECT_EQ(fills, 1) << parties << " parties";
    EXPECT_TRUE(t.arrive(0, unplaced) == false && unplaced == 0);
    EXPECT_FALSE(t.arrive(1, unplaced));
    EXPECT_EQ(unplaced, 1u) << "a full tree has no room";
  }
}

TEST(CombiningTree, HugePartyCountsCapTheLeaves) {
  const combining_tree t(nullptr, 1u << 20);
  EXPECT_EQ(t.leaves(), combining_tree::max_leaves_per_pu);
  expect_consistent(t, 1u << 20);
}

// The barrier's own tree follows this machine's topology.
TEST(CombiningTree, TheBarrierUsesTheSystemTopology) {
  hwsync::barrier<> b(32, barrier_algorithm::combining_tree);
  ASSERT_NE(b.tree(), nullptr);
  SCOPED_TRACE(b.tree()->describe());
  expect_consistent(*b.tree(), 32);
  const unsigned pus = hwsync::topology::system().pus();
  for (std::size_t j = 0; j < b.tree()->leaves(); ++j) EXPECT_LT(b.tree()->pu_of_leaf(j), pus);
}

// ---------------------------------------------------------------------------
// Debug checks: each misuse aborts in a child process with a message.

using hwsync::test::misuse_case;

class BarrierMisuse : public ::testing::TestWithParam<misuse_case> {};

TEST_P(BarrierMisuse, AbortsWithAMessage) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "built without HWSYNC_DEBUG_CHECKS";
  hwsync::test::expect_misuse_aborts(GetParam(), "hwsync::barrier at 0x");
}

INSTANTIATE_TEST_SUITE_P(
    DebugChecks, BarrierMisuse,
    ::testing::Values(
        misuse_case{"barrier_wait_stale_token",
                    "wait() with an arrival token of phase 0 while the barrier is in phase 3"},
        misuse_case{"barrier_wait_foreign_token", "arrival token of another barrier"},
        misuse_case{"barrier_arrive_too_many",
                    "arrive(n) with n = 3, more than the 2 arrivals left in this phase"},
        misuse_case{"barrier_tree_arrive_too_many",
                    "arrive(n) with n = 5, more than the 3 arrivals left in this phase"},
        misuse_case{"barrier_arrive_zero", "arrive(n) with n = 0 (expected 1..max())"},
        misuse_case{"barrier_drop_with_no_parties", "arrive_and_drop() with no parties left"},
        misuse_case{"barrier_negative_expected", "expected count outside 0..max(): -1"}));

}  // namespace
