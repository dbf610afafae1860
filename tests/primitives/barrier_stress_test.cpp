// Stress for hwsync::barrier and hwsync::latch, bounded in phases and seconds,
// each test under a watchdog: 10^5 phases with 2 to 32 threads and both
// algorithms (on 2 cores, so most of it oversubscribed), with the completion
// checking every arrival's write and every thread checking the completion's;
// arrive/wait split and timed waits mixed in; parties dropping out mid-run;
// and a chain of latches.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/barrier.hpp"
#include "hwsync/latch.hpp"
#include "hwsync/sanitizer.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using hwsync::barrier_algorithm;
using hwsync::test::watchdog;
using steady = std::chrono::steady_clock;

struct call {
  std::function<void()>* f;
  void operator()() noexcept { (*f)(); }
};

struct reuse_case {
  barrier_algorithm algorithm;
  int threads;
};

std::string case_name(const ::testing::TestParamInfo<reuse_case>& i) {
  return std::string(i.param.algorithm == barrier_algorithm::central ? "central" : "tree") + "_" +
         std::to_string(i.param.threads) + "_threads";
}

class BarrierReuse : public ::testing::TestWithParam<reuse_case> {};

// Each thread writes the phase it is in before arriving; the completion
// checks every thread's write, and publishes the phase it completed, which
// every thread checks after its wait. The completion also ends the run
// (10^5 phases, or the time budget: ThreadSanitizer and 32 threads on 2 cores
// are slow), so every thread leaves after the same phase. Threads vary how
// they wait: arrive_and_wait, arrive + wait, and arrive + timed waits that
// may time out and wait again.
TEST_P(BarrierReuse, HundredThousandPhases) {
  const auto [algorithm, threads] = GetParam();
  constexpr std::uint32_t target_phases = 100'000;
  // Release builds must reach the 10^5 phases (32 oversubscribed threads take
  // about 15 s here); under ThreadSanitizer, which is 5-15x slower, the run
  // stops at its time budget and checks every phase it got through.
  const auto budget = hwsync::tsan::enabled ? 4s : 60s;
  watchdog dog("barrier reuse", 240s);
  const auto end = steady::now() + budget;

  std::vector<std::uint32_t> arrived_in(static_cast<std::size_t>(threads), 0);
  std::uint32_t completed = 0;  // written by the completion only
  bool stop = false;            // written by the completion only
  std::atomic<long> errors{0};
  std::function<void()> f = [&] {
    for (int i = 0; i < threads; ++i)
      if (arrived_in[static_cast<std::size_t>(i)] != completed) errors.fetch_add(1);
    ++completed;
    if (completed == target_phases || (completed % 64 == 0 && steady::now() > end)) stop = true;
  };
  hwsync::barrier<call> b(threads, algorithm, call{&f});
  ASSERT_EQ(b.algorithm(), algorithm);

  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      long bad = 0, timeouts = 0;
      for (std::uint32_t phase = 0;; ++phase) {
        arrived_in[static_cast<std::size_t>(i)] = phase;
        switch ((phase + static_cast<std::uint32_t>(i)) % 4) {
          case 0:
          case 1:
            b.arrive_and_wait();
            break;
          case 2: {
            auto t = b.arrive();
            b.wait(std::move(t));
            break;
          }
          default: {
            auto t = b.arrive();
            while (!b.wait_for(t, 50us)) ++timeouts;
            break;
          }
        }
        if (completed != phase + 1) ++bad;
        if (stop) break;
      }
      errors.fetch_add(bad);
      (void)timeouts;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
  if (hwsync::tsan::enabled) {
    EXPECT_TRUE(completed == target_phases || steady::now() > end)
        << "stopped after " << completed << " phases";
  } else {
    EXPECT_EQ(completed, target_phases) << "the time budget ran out first";
  }
  std::printf("[ info ] %d threads, %s: %u phases\n", threads,
              algorithm == barrier_algorithm::central ? "central" : "combining_tree", completed);
}

std::vector<reuse_case> reuse_cases() {
  std::vector<reuse_case> v;
  for (auto a : {barrier_algorithm::central, barrier_algorithm::combining_tree})
    for (int t : {2, 3, 4, 8, 16, 32}) v.push_back({a, t});
  return v;
}

INSTANTIATE_TEST_SUITE_P(BothAlgorithms, BarrierReuse, ::testing::ValuesIn(reuse_cases()),
                         case_name);

class BarrierStress : public ::testing::TestWithParam<barrier_algorithm> {};

std::string algorithm_name(const ::testing::TestParamInfo<barrier_algorithm>& i) {
  return i.param == barrier_algorithm::central ? "central" : "combining_tree";
}

// 16 threads; thread i leaves with arrive_and_drop() at phase 1000 * (i + 1)
// (the last one never): each phase must complete with exactly the parties
// still in, and the completion counts each phase once.
TEST_P(BarrierStress, PartiesDropOutOneByOne) {
  watchdog dog("barrier drops", 240s);
  constexpr int threads = 16;
  constexpr std::uint32_t step = hwsync::tsan::enabled ? 200 : 1000;
  std::uint32_t completed = 0;
  std::atomic<int> in_phase{0};  // arrivals counted by the threads themselves
  std::vector<int> parties_of_phase;
  std::function<void()> f = [&] {
    parties_of_phase.push_back(in_phase.exchange(0));
    ++completed;
  };
  hwsync::barrier<call> b(threads, GetParam(), call{&f});
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      const std::uint32_t leave_at = i == threads - 1 ? step * threads : step * (i + 1);
      for (std::uint32_t phase = 0; phase < leave_at; ++phase) {
        in_phase.fetch_add(1);
        if (phase + 1 == leave_at && i != threads - 1) {
          b.arrive_and_drop();
        } else {
          b.arrive_and_wait();
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_EQ(completed, step * threads);
  for (std::uint32_t p = 0; p < completed; ++p)
    ASSERT_EQ(parties_of_phase[p], threads - static_cast<int>(p / step)) << "phase " << p;
}

INSTANTIATE_TEST_SUITE_P(BothAlgorithms, BarrierStress,
                         ::testing::Values(barrier_algorithm::central,
                                           barrier_algorithm::combining_tree),
                         algorithm_name);

// A chain of latches: each round, 8 threads count down and wait on a fresh
// latch; what every thread wrote before its count_down is visible to all
// after the wait. 20 000 rounds or the time budget.
TEST(LatchStress, ChainOfLatches) {
  watchdog dog("latch chain", 240s);
  constexpr int threads = 8;
  constexpr int rounds = 20'000;
  const auto end = steady::now() + (hwsync::tsan::enabled ? 4s : 8s);
  // Round r uses latch r % 3. Once round r is over, every thread has counted
  // down on it and so has left round r - 1: thread 0 rebuilds that latch for
  // round r + 2 before it counts down on round r + 1, which nobody passes
  // without it.
  std::vector<std::unique_ptr<hwsync::latch>> latches(3);
  for (auto& l : latches) l = std::make_unique<hwsync::latch>(threads);
  std::vector<std::atomic<int>> slot(threads);
  for (auto& s : slot) s.store(-1);
  // Thread 0 sets it to r + 1 after round r when the budget is spent: every
  // thread reads it after round r + 1 (thread 0 wrote it before counting down
  // on that round) and leaves then, all after the same round.
  std::atomic<int> last_round{rounds - 1};
  std::atomic<long> errors{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      for (int r = 0;; ++r) {
        slot[static_cast<std::size_t>(i)].store(r, std::memory_order_relaxed);
        latches[static_cast<std::size_t>(r % 3)]->arrive_and_wait();
        for (int j = 0; j < threads; ++j)
          if (slot[static_cast<std::size_t>(j)].load(std::memory_order_relaxed) < r)
            errors.fetch_add(1);
        if (last_round.load(std::memory_order_relaxed) == r) break;
        if (i == 0) {
          if (r >= 1)
            latches[static_cast<std::size_t>((r + 2) % 3)] =
                std::make_unique<hwsync::latch>(threads);
          if (steady::now() > end && r + 1 < last_round.load(std::memory_order_relaxed))
            last_round.store(r + 1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
}

}  // namespace
