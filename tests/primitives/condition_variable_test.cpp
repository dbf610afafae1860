// hwsync::condition_variable and condition_variable_any: the std semantics,
// FIFO notify_one, timeouts on every clock, wait morphing's bookkeeping, and
// destruction right after notify_all.
#include "hwsync/condition_variable.hpp"
#include "hwsync/shared_mutex.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// The mutex's lock word, to check that wait morphing leaves it at rest
// (no waiter counted that is not there). White-box: the word is the first
// and only member in release builds, the first in debug-check builds.
std::uint32_t lock_word(const hwsync::mutex& m) {
  static_assert(std::is_standard_layout_v<hwsync::mutex>);
  return reinterpret_cast<const hwsync::futex::word*>(&m)->load();
}

TEST(ConditionVariable, SizeIsSmall) {
  EXPECT_LE(sizeof(hwsync::condition_variable), 24u);
}

TEST(ConditionVariable, NotifyOneWakesAWaiterThatChecksItsPredicate) {
  hwsync::mutex m;
  hwsync::condition_variable cv;
  bool ready = false;
  std::thread t([&] {
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return ready; });
    EXPECT_TRUE(lk.owns_lock());
  });
  {
    std::lock_guard g(m);
    ready = true;
  }
  cv.notify_one();
  t.join();
}

TEST(ConditionVariable, NotifyOneWakesInArrivalOrder) {
  hwsync::mutex m;
  hwsync::condition_variable cv;
  constexpr int n = 4;
  int waiting = 0;
  std::vector<int> order;
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) {
    // Thread i joins the list only after thread i-1 has: it waits, under
    // the mutex, until `waiting` says so.
    ts.emplace_back([&, i] {
      std::unique_lock lk(m);
      while (waiting != i) {
        lk.unlock();
        std::this_thread::yield();
        lk.lock();
      }
      ++waiting;
      cv.wait(lk);
      order.push_back(i);
    });
  }
  for (;;) {
    std::lock_guard g(m);
    if (waiting == n) break;
  }
  // The last thread is on the list once it released the mutex in wait(),
  // which it did before we could take it above.
  for (int k = 0; k < n; ++k) {
    cv.notify_one();
    for (;;) {
      std::lock_guard g(m);
      if (static_cast<int>(order.size()) == k + 1) break;
    }
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
}

TEST(ConditionVariable, WaitForTimesOutAfterTheDuration) {
  hwsync::mutex m;
  hwsync::condition_variable cv;
  std::unique_lock lk(m);
  const auto t0 = steady::now();
  EXPECT_EQ(cv.wait_for(lk, 20ms), std::cv_status::timeout);
  EXPECT_GE(steady::now() - t0, 20ms);
  EXPECT_TRUE(lk.owns_lock());
  EXPECT_FALSE(cv.wait_for(lk, 1ms, [] { return false; }));
}

struct half_rate_clock {  // a clock the kernel cannot wait on
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<half_rate_clock>;
  [[maybe_unused]] static constexpr bool is_steady = true;
  static time_point now() { return time_point(steady::now().time_since_epoch() / 2); }
};

TEST(ConditionVariable, WaitUntilHonoursSteadySystemAndOtherClocks) {
  hwsync::mutex m;
  hwsync::condition_variable cv;
  std::unique_lock lk(m);
  const auto sys = std::chrono::system_clock::now() + 10ms;
  EXPECT_EQ(cv.wait_until(lk, sys), std::cv_status::timeout);
  EXPECT_GE(std::chrono::system_clock::now(), sys);
  const auto slow = half_rate_clock::now() + 5ms;
  EXPECT_EQ(cv.wait_until(lk, slow), std::cv_status::timeout);
  EXPECT_GE(half_rate_clock::now(), slow);
  EXPECT_EQ(cv.wait_until(lk, steady::now() - 1s), std::cv_status::timeout);
}

TEST(ConditionVariable, NotifyBeforeTheDeadlineIsNotATimeout) {
  hwsync::mutex m;
  hwsync::condition_variable cv;
  bool ready = false;
  std::thread t([&] {
    std::this_thread::sleep_for(10ms);
    std::lock_guard g(m);
    ready = true;
    cv.notify_one();
  });
  std::unique_lock lk(m);
  EXPECT_TRUE(cv.wait_for(lk, 60s, [&] { return ready; }));
  lk.unlock();
  t.join();
}

// notify_all with the mutex held: the first waiter is woken, the others are
// moved onto the mutex one by one; all return holding it, and the lock word
// ends at rest (a phantom waiter would make a later fair unlock reserve the
// mutex for nobody).
TEST(ConditionVariable, NotifyAllWakesEveryWaiterAndLeavesTheMutexAtRest) {
  hwsync::mutex m;
  hwsync::condition_variable cv;
  constexpr int n = 8;
  for (int round = 0; round < 50; ++round) {
    int waiting = 0;
    int woken = 0;
    bool go = false;
    std::vector<std::thread> ts;
    for (int i = 0; i < n; ++i) {
      ts.emplace_back([&] {
        std::unique_lock lk(m);
        ++waiting;
        cv.wait(lk, [&] { return go; });
        ++woken;
      });
    }
    for (;;) {
      std::lock_guard g(m);
      if (waiting == n) {
        go = true;
        cv.notify_all();
        break;
      }
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(woken, n);
    EXPECT_EQ(lock_word(m), 0u) << "round " << round;
  }
}

// std's rule: a condition variable may be destroyed once every waiter has
// been notified, before they have woken. (ASan and TSan builds would catch
// a waiter that touched it afterwards.)
TEST(ConditionVariable, MayBeDestroyedRightAfterNotifyAll) {
  for (int round = 0; round < 100; ++round) {
    hwsync::mutex m;
    auto cv = std::make_unique<hwsync::condition_variable>();
    int waiting = 0;
    bool go = false;
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; ++i) {
      ts.emplace_back([&, c = cv.get()] {
        std::unique_lock lk(m);
        ++waiting;
        while (!go) c->wait(lk);
      });
    }
    for (;;) {
      std::lock_guard g(m);
      if (waiting == 3) {
        go = true;
        cv->notify_all();
        cv.reset();
        break;
      }
    }
    for (auto& t : ts) t.join();
  }
}

TEST(ConditionVariableAny, WorksWithSharedLocksAndOtherMutexes) {
  std::shared_mutex rw;
  hwsync::recursive_mutex rm;
  hwsync::condition_variable_any cv;
  std::atomic<bool> ready{false};
  std::thread reader([&] {
    std::shared_lock lk(rw);
    cv.wait(lk, [&] { return ready.load(); });
    EXPECT_TRUE(lk.owns_lock());
  });
  std::thread recursive([&] {
    std::unique_lock lk(rm);
    cv.wait(lk, [&] { return ready.load(); });
    EXPECT_TRUE(lk.owns_lock());
  });
  std::this_thread::sleep_for(10ms);
  {
    std::unique_lock w(rw);  // the reader released its shared lock to wait
    ready = true;
  }
  cv.notify_all();
  reader.join();
  recursive.join();
  std::unique_lock lk(rm);
  EXPECT_EQ(cv.wait_for(lk, 5ms), std::cv_status::timeout);
}

// The case: a shared lock on hwsync's own reader-writer lock
// (parking_lot's Condvar cannot wait on one, parking_lot#165).
TEST(ConditionVariableAny, WorksWithSharedLocksOnHwsyncSharedMutex) {
  hwsync::shared_mutex<> rw;
  hwsync::condition_variable_any cv;
  bool ready = false;  // written under the exclusive lock, read under shared
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&] {
      std::shared_lock lk(rw);
      cv.wait(lk, [&] { return ready; });
      EXPECT_TRUE(lk.owns_lock());
    });
  }
  std::this_thread::sleep_for(10ms);
  {
    std::unique_lock w(rw);  // possible only because every reader released its lock to wait
    ready = true;
  }
  cv.notify_all();
  for (auto& t : readers) t.join();
  std::shared_lock lk(rw);
  EXPECT_EQ(cv.wait_for(lk, 2ms), std::cv_status::timeout);
}

}  // namespace
