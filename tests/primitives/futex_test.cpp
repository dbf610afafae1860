// hwsync::futex: every call and every documented result.
#include "hwsync/futex.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace {

using namespace std::chrono_literals;
namespace fx = hwsync::futex;

TEST(Futex, WaitOnAChangedWordReturnsValueChanged) {
  fx::word w{1};
  EXPECT_EQ(fx::wait(w, 0), fx::wait_result::value_changed);
  EXPECT_EQ(fx::wait_for(w, 0, 1s), fx::wait_result::value_changed);
  EXPECT_EQ(fx::wait_until(w, 0, fx::deadline::after(1s)), fx::wait_result::value_changed);
  // An expired deadline still reports the changed word, not a timeout.
  EXPECT_EQ(fx::wait_until(w, 0, fx::deadline::after(-1s)), fx::wait_result::value_changed);
}

TEST(Futex, RelativeAndAbsoluteTimeoutsExpire) {
  fx::word w{0};
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(fx::wait_for(w, 0, 5ms), fx::wait_result::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 5ms);
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(fx::wait_until(w, 0, fx::deadline::at(t0 + 5ms)), fx::wait_result::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 5ms);
  const auto sys = std::chrono::system_clock::now() + 5ms;
  EXPECT_EQ(fx::wait_until(w, 0, fx::deadline::at(sys)), fx::wait_result::timed_out);
  EXPECT_GE(std::chrono::system_clock::now(), sys);
}

TEST(Futex, DeadlineKnowsWhetherItPassed) {
  EXPECT_FALSE(fx::deadline::never().passed());
  EXPECT_TRUE(fx::deadline::never().is_never());
  EXPECT_TRUE(fx::deadline::after(-1ms).passed());
  EXPECT_FALSE(fx::deadline::after(1h).passed());
  EXPECT_TRUE(fx::deadline::at(std::chrono::system_clock::now() - 1s).passed());
  EXPECT_TRUE(fx::deadline::at(std::chrono::system_clock::now()).is_realtime());
}

TEST(Futex, WakeReleasesAWaiter) {
  fx::word w{0};
  std::atomic<bool> done{false};
  std::thread t([&] {
    while (w.load() == 0) fx::wait(w, 0);
    done = true;
  });
  std::this_thread::sleep_for(10ms);
  w.store(1);
  fx::wake_all(w);
  t.join();
  EXPECT_TRUE(done);
  EXPECT_EQ(fx::wake_one(w), 0);  // nobody left
}

TEST(Futex, WakeCountsTheThreadsItWoke) {
  fx::word w{0};
  constexpr int n = 3;
  std::atomic<int> asleep{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) {
    ts.emplace_back([&] {
      asleep.fetch_add(1);
      while (w.load() == 0) fx::wait(w, 0);
    });
  }
  while (asleep.load() < n) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);  // let them reach the kernel
  int woken = 0;
  w.store(1);
  while (woken < n) {
    woken += fx::wake_all(w);
    if (woken < n) std::this_thread::sleep_for(1ms);
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(woken, n);
}

TEST(Futex, CmpRequeueMovesWaitersToAnotherWord) {
  fx::word from{0}, to{0};
  std::atomic<int> asleep{0};
  std::atomic<int> released{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; ++i) {
    ts.emplace_back([&] {
      asleep.fetch_add(1);
      // Re-waits on `from` after spurious returns; a requeued waiter is woken
      // through `to` and then sees `from` changed.
      while (from.load() == 0) fx::wait(from, 0);
      released.fetch_add(1);
    });
  }
  while (asleep.load() < 2) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(fx::cmp_requeue(from, to, 1, 0, 2), -1);  // wrong expected value: nothing happens
  int moved = 0;
  for (int tries = 0; tries < 100 && moved < 2; ++tries) {
    moved += fx::cmp_requeue(from, to, 0, 0, 2);
    if (moved < 2) std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(moved, 2);
  EXPECT_EQ(fx::wake_one(from), 0);  // they are no longer on `from`
  from.store(1);
  int woken = 0;
  while (released.load() < 2) woken += fx::wake_all(to), std::this_thread::sleep_for(1ms);
  for (auto& t : ts) t.join();
  EXPECT_EQ(woken, 2);
}

TEST(Futex, WaitvWakesOnAnyWord) {
  if (!fx::has_waitv()) GTEST_SKIP() << "kernel has no futex_waitv";
  fx::word a{0}, b{0};
  const fx::waitv_entry entries[] = {{&a, 0}, {&b, 0}};
  // A changed word is reported at once.
  b.store(5);
  const fx::waitv_entry stale[] = {{&a, 0}, {&b, 0}};
  EXPECT_EQ(fx::waitv(stale, fx::deadline::never()).result, fx::wait_result::value_changed);
  b.store(0);
  // A timeout.
  auto r = fx::waitv(entries, fx::deadline::after(5ms));
  EXPECT_EQ(r.result, fx::wait_result::timed_out);
  EXPECT_EQ(r.index, -1);
  // A wake on the second word names it.
  std::thread waker([&] {
    std::this_thread::sleep_for(20ms);
    b.store(1);
    fx::wake_all(b);
  });
  for (;;) {
    r = fx::waitv(entries, fx::deadline::after(10s));
    if (r.index == 1 || r.result == fx::wait_result::value_changed) break;
    ASSERT_NE(r.result, fx::wait_result::timed_out);
  }
  waker.join();
  EXPECT_EQ(b.load(), 1u);
}

}  // namespace
