// Stress for hwsync::condition_variable, bounded in items and seconds, each
// under a watchdog that fails the run instead of hanging CI.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "hwsync/condition_variable.hpp"
#include "hwsync/sanitizer.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;

using hwsync::test::watchdog;

// glibc bug 25847 lost a notify_one that raced a waiter's release of the
// mutex. Producers and consumers over a bounded queue, notify_one only, some
// notifies after the mutex is released: every item arrives exactly once and
// nobody sleeps forever.
TEST(ConditionVariableTorture, BoundedQueueWithNotifyOneLosesNoWakeUp) {
  const long items = hwsync::tsan::enabled ? 200'000 : 1'000'000;
  constexpr int producers = 2, consumers = 3;
  constexpr std::size_t capacity = 4;
  watchdog dog("bounded queue", 120s);
  hwsync::mutex m;
  hwsync::condition_variable not_empty, not_full;
  std::deque<long> queue;
  long produced = 0;
  long consumed_sum = 0, consumed = 0;
  std::vector<std::thread> ts;
  for (int p = 0; p < producers; ++p) {
    ts.emplace_back([&, p] {
      for (long i = 0;; ++i) {
        std::unique_lock lk(m);
        not_full.wait(lk, [&] { return queue.size() < capacity || produced == items; });
        if (produced == items) break;
        queue.push_back(++produced);
        if ((i + p) % 2 == 0) {
          lk.unlock();  // notify outside the mutex half of the time
        }
        not_empty.notify_one();
      }
      not_empty.notify_all();  // let consumers see the end
    });
  }
  for (int c = 0; c < consumers; ++c) {
    ts.emplace_back([&] {
      for (;;) {
        std::unique_lock lk(m);
        not_empty.wait(lk, [&] { return !queue.empty() || consumed == items; });
        if (queue.empty()) break;
        consumed_sum += queue.front();
        queue.pop_front();
        if (++consumed == items) not_empty.notify_all();
        lk.unlock();
        not_full.notify_one();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(consumed, items);
  EXPECT_EQ(consumed_sum, items * (items + 1) / 2);
}

// notify_all storms against waiters with short random timeouts: exercises
// the chain, and waiters that time out while chained or while requeued.
// Everyone finishes and the mutex ends at rest.
TEST(ConditionVariableTorture, NotifyAllAgainstTimeouts) {
  watchdog dog("notify_all against timeouts", 120s);
  hwsync::mutex m;
  hwsync::condition_variable cv;
  std::atomic<bool> stop{false};
  long generation = 0;
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&, i] {
      std::mt19937 rng(static_cast<unsigned>(i) + 1);
      std::uniform_int_distribution<int> micros(0, 300);
      while (!stop.load(std::memory_order_relaxed)) {
        std::unique_lock lk(m);
        const long seen = generation;
        if (micros(rng) < 150) {
          cv.wait_for(lk, std::chrono::microseconds(micros(rng)),
                      [&] { return generation != seen; });
        } else {
          cv.wait_for(lk, 50ms, [&] { return generation != seen; });
        }
      }
    });
  }
  const auto end = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < end) {
    {
      std::lock_guard g(m);
      ++generation;
      cv.notify_all();
    }
    std::this_thread::sleep_for(50us);
  }
  stop = true;
  {
    std::lock_guard g(m);
    ++generation;
    cv.notify_all();
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(reinterpret_cast<const hwsync::futex::word*>(&m)->load(), 0u);
}

}  // namespace
