// The contention profiler (hwsync/lock_profile.hpp): hold times against
// known sleeps (a lower bound that must hold, a generous upper bound), waits
// of a blocked thread, sampling, ranking, names, retired locks, reports; and
// the log-linear histogram it aggregates into.
#include "hwsync/lock_profile.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <thread>

#include "hwsync/cycle_clock.hpp"
#include "hwsync/lock_observer.hpp"
#include "hwsync/log_linear_histogram.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/shared_mutex.hpp"
#include "support/child_process.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using hwsync::detail::log_linear_histogram;

TEST(LogLinearHistogram, SmallValuesAreExact) {
  log_linear_histogram h;
  for (std::uint64_t v = 0; v < 8; ++v) h.record(v);
  EXPECT_EQ(h.count(), 8u);
  EXPECT_EQ(h.total(), 28u);
  EXPECT_EQ(h.percentile(0.5), 3u);
  EXPECT_EQ(h.percentile(1.0), 7u);
  EXPECT_EQ(h.max(), 7u);
}

TEST(LogLinearHistogram, PercentilesAreNeverBelowAndWithinAnEighth) {
  log_linear_histogram h;
  for (std::uint64_t v = 1; v <= 100000; ++v) h.record(v * 37);
  const std::pair<double, std::uint64_t> expected[] = {
      {0.5, 50000 * 37}, {0.99, 99000 * 37}, {0.999, 99900 * 37}};
  for (const auto& [q, truth] : expected) {
    const std::uint64_t p = h.percentile(q);
    EXPECT_GE(p, truth) << q;
    EXPECT_LE(static_cast<double>(p), static_cast<double>(truth) * 1.125) << q;
  }
  EXPECT_EQ(h.percentile(1.0), 100000u * 37);
  EXPECT_EQ(h.max(), 100000u * 37);
}

TEST(LogLinearHistogram, EveryBucketHoldsItsBounds) {
  for (std::size_t b = 0; b < log_linear_histogram::bucket_count; ++b) {
    const std::uint64_t hi = log_linear_histogram::upper_bound(b);
    EXPECT_EQ(log_linear_histogram::bucket_of(hi), b);
    if (b + 1 < log_linear_histogram::bucket_count) {
      EXPECT_EQ(log_linear_histogram::bucket_of(hi + 1), b + 1);
    }
  }
}

class LockProfile : public ::testing::Test {
 protected:
  void SetUp() override { hwsync::reset_lock_profile(); }
  void TearDown() override { hwsync::disable_lock_profiling(); }

  static const hwsync::lock_profile_entry* find(const hwsync::lock_profile_snapshot& s,
                                                const void* lock, bool destroyed = false) {
    for (const auto& e : s.locks)
      if (e.lock == lock && e.destroyed == destroyed) return &e;
    return nullptr;
  }
  static std::uint64_t ticks(std::chrono::nanoseconds d) {
    return static_cast<std::uint64_t>(static_cast<double>(d.count()) *
                                      hwsync::cycle_clock::ticks_per_second() / 1e9);
  }
};

TEST_F(LockProfile, HoldTimesFollowSleeps) {
  hwsync::test::watchdog dog("hold times", 60s);
  hwsync::enable_lock_profiling(1);
  hwsync::mutex m;
  hwsync::set_lock_name(&m, "sleepy");
  constexpr int rounds = 20;
  constexpr auto hold = 2ms;
  for (int i = 0; i < rounds; ++i) {
    std::lock_guard g(m);
    std::this_thread::sleep_for(hold);
  }
  const auto snap = hwsync::snapshot_lock_profile();
  const auto* e = find(snap, &m);
  ASSERT_NE(e, nullptr) << snap.text();
  EXPECT_EQ(e->name, "sleepy");
  EXPECT_EQ(e->sampled_acquisitions, static_cast<std::uint64_t>(rounds));
  EXPECT_EQ(e->hold.count, static_cast<std::uint64_t>(rounds));
  // sleep_for never returns early: every hold is at least 2 ms (the 1%
  // allowance covers the clock calibration only).
  const double at_least = 0.99 * static_cast<double>(ticks(hold));
  EXPECT_GE(static_cast<double>(e->hold.p50), at_least) << snap.text();
  EXPECT_GE(static_cast<double>(e->hold.total), rounds * at_least) << snap.text();
  EXPECT_GE(e->hold.p99, e->hold.p50);
  EXPECT_GE(e->hold.max, e->hold.p999);
  // Generous: a loaded machine may oversleep, not by seconds.
  EXPECT_LT(e->hold.max, ticks(2s)) << snap.text();
}

TEST_F(LockProfile, BlockedWaitIsMeasuredAndRankedFirst) {
  hwsync::test::watchdog dog("wait times", 60s);
  hwsync::enable_lock_profiling(1);
  hwsync::mutex hot;
  hwsync::mutex cold;
  hwsync::set_lock_name(&hot, "hot");
  for (int i = 0; i < 10; ++i) std::lock_guard g(cold);

  std::atomic<bool> waiter_ready{false};
  std::chrono::nanoseconds waited{};
  hot.lock();
  std::thread waiter([&] {
    waiter_ready.store(true);
    const auto t0 = std::chrono::steady_clock::now();
    hot.lock();
    waited = std::chrono::steady_clock::now() - t0;
    hot.unlock();
  });
  while (!waiter_ready.load()) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  hot.unlock();
  waiter.join();

  const auto snap = hwsync::snapshot_lock_profile();
  const auto* e = find(snap, &hot);
  ASSERT_NE(e, nullptr) << snap.text();
  ASSERT_EQ(e->wait.count, 2u);
  // The waiter blocked for most of the 50 ms (it would have to be preempted
  // for 49 ms to miss 1 ms), and no longer than it measured around lock().
  EXPECT_GE(e->wait.max, ticks(1ms)) << snap.text();
  EXPECT_LE(static_cast<double>(e->wait.max), 1.05 * static_cast<double>(ticks(waited)) + 1e5)
      << snap.text();
  EXPECT_GE(e->contended, 1u) << snap.text();  // the blocked one, at least
  ASSERT_FALSE(snap.locks.empty());
  EXPECT_EQ(snap.locks[0].lock, &hot) << snap.text();  // ranked by total wait

  const std::string text = snap.text();
  EXPECT_NE(text.find("hot"), std::string::npos) << text;
  const std::string json = snap.json();
  EXPECT_NE(json.find("\"name\":\"hot\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"sampled_acquisitions\":2"), std::string::npos) << json;
}

TEST_F(LockProfile, SamplesOneInN) {
  hwsync::enable_lock_profiling(4);
  hwsync::shared_mutex<> m;
  for (int i = 0; i < 4000; ++i) {
    if (i % 2 == 0) {
      std::lock_guard g(m);
    } else {
      std::shared_lock g(m);
    }
  }
  const auto snap = hwsync::snapshot_lock_profile();
  const auto* e = find(snap, &m);
  ASSERT_NE(e, nullptr);
  // Gaps drawn from 1..7: 1000 samples expected, the standard deviation is
  // about 16 (renewal count: 4000 * 4 / 4^3 = 250 variance); the bounds are
  // 12 of them away.
  EXPECT_GE(e->sampled_acquisitions, 800u);
  EXPECT_LE(e->sampled_acquisitions, 1200u);
  EXPECT_EQ(snap.sample_period, 4u);
}

TEST_F(LockProfile, DestroyedLockIsRetiredAndItsAddressStartsAnew) {
  hwsync::enable_lock_profiling(1);
  alignas(hwsync::mutex) unsigned char storage[sizeof(hwsync::mutex)];
  auto* old_lock = new (storage) hwsync::mutex;
  hwsync::set_lock_name(old_lock, "short-lived");
  for (int i = 0; i < 3; ++i) std::lock_guard g(*old_lock);
  old_lock->~mutex();
  auto* new_lock = new (storage) hwsync::mutex;
  { std::lock_guard g(*new_lock); }
  const auto snap = hwsync::snapshot_lock_profile();
  const auto* retired = find(snap, storage, true);
  ASSERT_NE(retired, nullptr) << snap.text();
  EXPECT_EQ(retired->name, "short-lived");
  EXPECT_EQ(retired->sampled_acquisitions, 3u);
  const auto* live = find(snap, storage, false);
  ASSERT_NE(live, nullptr) << snap.text();
  EXPECT_EQ(live->name, "");
  EXPECT_NE(snap.text().find("short-lived (destroyed)"), std::string::npos) << snap.text();
  new_lock->~mutex();
}

TEST_F(LockProfile, OffRecordsNothing) {
  hwsync::mutex m;
  for (int i = 0; i < 100; ++i) std::lock_guard g(m);
  EXPECT_EQ(find(hwsync::snapshot_lock_profile(), &m), nullptr);
}

// TSan: many threads sampling into the striped tables while a snapshot runs.
TEST_F(LockProfile, ConcurrentSamplingAndSnapshots) {
  hwsync::test::watchdog dog("concurrent sampling", 120s);
  hwsync::enable_lock_profiling(2);
  hwsync::mutex locks[4];
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) std::lock_guard g(locks[(i + t) % 4]);
    });
  }
  std::thread reader([&] {
    while (!stop.load()) (void)hwsync::snapshot_lock_profile();
  });
  for (auto& th : threads) th.join();
  stop.store(true);
  reader.join();
  const auto snap = hwsync::snapshot_lock_profile();
  std::uint64_t sampled = 0;
  for (const auto& m : locks) {
    const auto* e = find(snap, &m);
    ASSERT_NE(e, nullptr);
    sampled += e->sampled_acquisitions;
  }
  EXPECT_GE(sampled, 3u * 20000 / 2 * 8 / 10);  // 30000 expected, sd about 70
  EXPECT_LE(sampled, 3u * 20000 / 2 * 12 / 10);
}

TEST(LockProfileEnvironment, BadValueSaysWhatWasExpected) {
  const std::string program = hwsync::test::env_path("HWSYNC_MISUSE_CASES");
  ASSERT_FALSE(program.empty()) << "HWSYNC_MISUSE_CASES is not set (run through ctest)";
  ::setenv("HWSYNC_LOCKPROF", "on", 1);
  ::setenv("HWSYNC_LOCKPROF_PERIOD", "0", 1);
  const auto r = hwsync::test::run_child({program, "lock_profile_named_locks"});
  ::unsetenv("HWSYNC_LOCKPROF");
  ::unsetenv("HWSYNC_LOCKPROF_PERIOD");
  EXPECT_NE(r.output.find("HWSYNC_LOCKPROF=\"on\": expected 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("HWSYNC_LOCKPROF_PERIOD=\"0\": expected a whole number"),
            std::string::npos)
      << r.output;
}

TEST(LockProfileEnvironment, OnPrintsTheReportAtExit) {
  const std::string program = hwsync::test::env_path("HWSYNC_MISUSE_CASES");
  ASSERT_FALSE(program.empty()) << "HWSYNC_MISUSE_CASES is not set (run through ctest)";
  ::setenv("HWSYNC_LOCKPROF", "1", 1);
  ::setenv("HWSYNC_LOCKPROF_PERIOD", "1", 1);
  const auto r = hwsync::test::run_child({program, "lock_profile_named_locks"});
  ::unsetenv("HWSYNC_LOCKPROF");
  ::unsetenv("HWSYNC_LOCKPROF_PERIOD");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("hwsync lock profile:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("account A"), std::string::npos) << r.output;
}

}  // namespace
