// The lock-order checker (hwsync/lock_order.hpp): cycles of two and three
// locks are reported from runs that never deadlock; consistent orders,
// std::scoped_lock, try_lock, recursive relocking and reused addresses are
// not; the three actions; every lock type is covered.
#include "hwsync/lock_order.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/lock_observer.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/numa_mutex.hpp"
#include "hwsync/sanitizer.hpp"
#include "hwsync/shared_mutex.hpp"
#include "support/child_process.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;

// Runs a child that plants a lock-order inversion on purpose and must live
// past TSan's report of it to finish: the tsan test preset sets
// halt_on_error=1, and a flag given later in TSAN_OPTIONS overrides it.
hwsync::test::child_result run_child_past_tsan_reports(const std::vector<std::string>& argv) {
  const char* inherited = std::getenv("TSAN_OPTIONS");
  const std::string saved = inherited != nullptr ? inherited : "";
  ::setenv("TSAN_OPTIONS", (saved + " halt_on_error=0").c_str(), 1);
  auto r = hwsync::test::run_child(argv);
  if (inherited != nullptr) {
    ::setenv("TSAN_OPTIONS", saved.c_str(), 1);
  } else {
    ::unsetenv("TSAN_OPTIONS");
  }
  return r;
}

// A test that plants a lock-order inversion: ThreadSanitizer sees hwsync
// locks and reports the inversion too, as it should. Under TSan such a test
// runs in a child process of this binary, which must pass, and whose output
// must hold TSan's own lock-order-inversion report. Returns true when the
// child ran (the caller returns); false when the body is to run here.
bool ran_in_tsan_child() {
  if (!hwsync::tsan::enabled || std::getenv("HWSYNC_LOCK_ORDER_TEST_CHILD") != nullptr)
    return false;
  const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter =
      std::string("--gtest_filter=") + t->test_suite_name() + "." + t->name();
  ::setenv("HWSYNC_LOCK_ORDER_TEST_CHILD", "1", 1);
  const auto r = run_child_past_tsan_reports({"/proc/self/exe", filter});
  ::unsetenv("HWSYNC_LOCK_ORDER_TEST_CHILD");
  EXPECT_NE(r.output.find("[  PASSED  ] 1 test"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ThreadSanitizer: lock-order-inversion"), std::string::npos) << r.output;
  return true;
}

#define HWSYNC_PLANTS_AN_INVERSION() \
  if (ran_in_tsan_child()) return

class LockOrder : public ::testing::Test {
 protected:
  void SetUp() override {
    hwsync::reset_lock_order_graph();
    hwsync::set_lock_order_callback([this](const hwsync::lock_order_report& r) {
      std::lock_guard g(reports_m_);
      reports_.push_back(r);
    });
    hwsync::enable_lock_order_checking();
  }
  void TearDown() override {
    hwsync::disable_lock_order_checking();
    hwsync::set_lock_order_action(hwsync::lock_order_action::log);
  }
  std::vector<hwsync::lock_order_report> reports() {
    std::lock_guard g(reports_m_);
    return reports_;
  }

  template <class F>
  static void on_thread(F f) {
    std::thread(f).join();
  }

 private:
  std::mutex reports_m_;
  std::vector<hwsync::lock_order_report> reports_;
};

template <class A, class B>
void lock_in_order(A& a, B& b) {
  std::lock_guard ga(a);
  std::lock_guard gb(b);
}

// The seed's bank transfer: A -> B, and later, on another thread and never
// overlapping, B -> A. No deadlock happens; the checker reports it anyway.
TEST_F(LockOrder, TwoLockCycleIsReportedWithoutADeadlock) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::test::watchdog dog("two-lock cycle", 60s);
  hwsync::mutex a;
  hwsync::mutex b;
  hwsync::set_lock_name(&a, "account A");
  hwsync::set_lock_name(&b, "account B");
  on_thread([&] { lock_in_order(a, b); });
  EXPECT_TRUE(reports().empty());
  on_thread([&] { lock_in_order(b, a); });

  const auto r = reports();
  ASSERT_EQ(r.size(), 1u);
  ASSERT_EQ(r[0].cycle.size(), 2u);
  const hwsync::lock_order_edge& now = r[0].cycle[0];
  EXPECT_EQ(now.held, &b);
  EXPECT_EQ(now.acquired, &a);
  EXPECT_EQ(now.held_name, "account B");
  EXPECT_EQ(now.acquired_name, "account A");
  EXPECT_NE(now.acquired_at, nullptr);
  EXPECT_NE(now.held_at, nullptr);
  EXPECT_FALSE(now.stack.empty());
  EXPECT_GT(now.thread, 0);
  const hwsync::lock_order_edge& earlier = r[0].cycle[1];
  EXPECT_EQ(earlier.held, &a);
  EXPECT_EQ(earlier.acquired, &b);
  EXPECT_NE(earlier.thread, now.thread);

  const std::string text = r[0].text();
  EXPECT_NE(text.find("possible deadlock"), std::string::npos) << text;
  EXPECT_NE(text.find("\"account A\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"account B\""), std::string::npos) << text;

  // Reported once: the inverted edge is now known.
  on_thread([&] { lock_in_order(b, a); });
  EXPECT_EQ(reports().size(), 1u);
  EXPECT_GE(hwsync::lock_order_stats().cycles_reported, 1u);
}

TEST_F(LockOrder, SameThreadInversionIsReported) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::mutex a;
  hwsync::mutex b;
  lock_in_order(a, b);
  lock_in_order(b, a);
  ASSERT_EQ(reports().size(), 1u);
  EXPECT_EQ(reports()[0].cycle.size(), 2u);
}

TEST_F(LockOrder, ThreeLockCycleIsReported) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::mutex a;
  hwsync::mutex b;
  hwsync::mutex c;
  on_thread([&] { lock_in_order(a, b); });
  on_thread([&] { lock_in_order(b, c); });
  EXPECT_TRUE(reports().empty());
  on_thread([&] { lock_in_order(c, a); });
  const auto r = reports();
  ASSERT_EQ(r.size(), 1u);
  ASSERT_EQ(r[0].cycle.size(), 3u);
  EXPECT_EQ(r[0].cycle[0].held, &c);
  EXPECT_EQ(r[0].cycle[0].acquired, &a);
  // Round the cycle: each edge's second lock is the next edge's first.
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_EQ(r[0].cycle[i].acquired, r[0].cycle[(i + 1) % 3].held);
}

TEST_F(LockOrder, ConsistentOrderFromManyThreadsIsSilent) {
  hwsync::test::watchdog dog("consistent order", 120s);
  hwsync::mutex a;
  hwsync::mutex b;
  hwsync::mutex c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        std::lock_guard ga(a);
        if (i % 2 == 0) {
          std::lock_guard gb(b);
          std::lock_guard gc(c);
        } else {
          std::lock_guard gc(c);  // a -> c directly: consistent with a -> b -> c
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(reports().empty());
  EXPECT_EQ(hwsync::lock_order_stats().edges, 3u);  // a->b, a->c, b->c
}

// std::scoped_lock (std::lock) blocks on one lock with nothing held and
// try_locks the others: contended, in both argument orders, it must stay
// silent.
TEST_F(LockOrder, ScopedLockInBothOrdersIsSilent) {
  hwsync::test::watchdog dog("scoped_lock", 120s);
  hwsync::mutex a;
  hwsync::shared_mutex<> b;
  hwsync::timed_mutex c;
  std::thread t1([&] {
    for (int i = 0; i < 5000; ++i) std::scoped_lock g(a, b, c);
  });
  std::thread t2([&] {
    for (int i = 0; i < 5000; ++i) std::scoped_lock g(c, b, a);
  });
  t1.join();
  t2.join();
  EXPECT_TRUE(reports().empty());
  EXPECT_EQ(hwsync::lock_order_stats().edges, 0u);
}

TEST_F(LockOrder, TryLockSuccessAddsNoEdgeButIsHeld) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::mutex a;
  hwsync::mutex b;
  hwsync::mutex c;
  {
    std::lock_guard gb(b);
    ASSERT_TRUE(a.try_lock());  // b -> a would be an edge if it were a blocking lock
    {
      std::lock_guard gc(c);  // a (try-locked) is held: a -> c and b -> c
    }
    a.unlock();
  }
  lock_in_order(a, b);  // a -> b: no cycle, since b -> a was never an edge
  EXPECT_TRUE(reports().empty());
  lock_in_order(c, a);  // c -> a closes a -> c
  EXPECT_EQ(reports().size(), 1u);
}

TEST_F(LockOrder, RecursiveRelockAddsNothing) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::recursive_mutex r;
  hwsync::mutex a;
  r.lock();
  a.lock();
  r.lock();  // already held: not an a -> r edge
  r.unlock();
  a.unlock();
  r.unlock();
  EXPECT_TRUE(reports().empty());
  EXPECT_EQ(hwsync::lock_order_stats().edges, 1u);
  lock_in_order(a, r);  // the real inversion
  EXPECT_EQ(reports().size(), 1u);
}

// Shared acquisitions count: a reader of s that waits for m, while m's
// holder waits to write s, is a deadlock.
TEST_F(LockOrder, SharedAcquisitionsCount) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::shared_mutex<> s;
  hwsync::mutex m;
  on_thread([&] {
    std::shared_lock r(s);
    std::lock_guard g(m);
  });
  on_thread([&] {
    std::lock_guard g(m);
    std::lock_guard w(s);
  });
  ASSERT_EQ(reports().size(), 1u);
}

TEST_F(LockOrder, EveryLockTypeTakesPart) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::timed_mutex t;
  hwsync::recursive_timed_mutex rt;
  hwsync::biased_shared_mutex bs;
  hwsync::shared_mutex<hwsync::rw_policy::reader_preferred> rp;
  on_thread([&] {
    std::lock_guard g1(t);
    ASSERT_TRUE(rt.try_lock_for(1s));  // a timed wait can wait: it adds t -> rt
    std::shared_lock g3(bs);           // rt -> bs, t -> bs
    std::unique_lock g4(rp);           // bs -> rp, ...
    rt.unlock();
  });
  EXPECT_TRUE(reports().empty());
  on_thread([&] {
    std::shared_lock g1(rp);
    std::lock_guard g2(t);  // rp -> t closes t -> ... -> rp
  });
  ASSERT_EQ(reports().size(), 1u);
  on_thread([&] {
    std::lock_guard g1(bs);
    ASSERT_TRUE(rt.try_lock_until(std::chrono::steady_clock::now() + 1s));  // bs -> rt
    rt.unlock();
  });
  EXPECT_EQ(reports().size(), 2u);
}

TEST_F(LockOrder, ThrowingCallbackIsDroppedAndTheLockWorks) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::set_lock_order_callback(
      [](const hwsync::lock_order_report&) { throw std::runtime_error("from the callback"); });
  const auto before = hwsync::lock_order_stats().cycles_reported;
  hwsync::mutex a;
  hwsync::mutex b;
  lock_in_order(a, b);
  lock_in_order(b, a);
  EXPECT_EQ(hwsync::lock_order_stats().cycles_reported - before, 1u);
  ASSERT_TRUE(a.try_lock());  // released as usual
  a.unlock();
}

TEST_F(LockOrder, NumaMutexTakesPart) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::numa_mutex n;
  hwsync::mutex m;
  hwsync::set_lock_name(&n, "numa");
  on_thread([&] { lock_in_order(n, m); });
  on_thread([&] { lock_in_order(m, n); });
  ASSERT_EQ(reports().size(), 1u);
  EXPECT_EQ(reports()[0].cycle[0].acquired_name, "numa");
}

// Two locks destroyed, two new ones built at the same addresses and taken in
// the opposite order: new locks, no cycle (abseil's detector reports one).
TEST_F(LockOrder, ReusedAddressesStartWithoutEdges) {
  alignas(hwsync::mutex) unsigned char first[sizeof(hwsync::mutex)];
  alignas(hwsync::mutex) unsigned char second[sizeof(hwsync::mutex)];
  {
    auto* a = new (first) hwsync::mutex;
    auto* b = new (second) hwsync::mutex;
    hwsync::set_lock_name(a, "old A");
    lock_in_order(*a, *b);
    EXPECT_EQ(hwsync::lock_order_stats().edges, 1u);
    a->~mutex();
    b->~mutex();
  }
  EXPECT_EQ(hwsync::lock_order_stats().edges, 0u);
  EXPECT_EQ(hwsync::lock_order_stats().nodes, 0u);
  EXPECT_EQ(hwsync::lock_name(first), "");
  auto* y = new (second) hwsync::mutex;
  auto* x = new (first) hwsync::mutex;
  lock_in_order(*y, *x);
  EXPECT_TRUE(reports().empty());
  x->~mutex();
  y->~mutex();
}

TEST_F(LockOrder, DeepNestingIsCountedNotTracked) {
  if (hwsync::tsan::enabled)
    GTEST_SKIP() << "ThreadSanitizer's deadlock detector holds at most 64 locks per thread "
                    "(sanitizer_deadlock_detector.h CHECK-fails beyond): the overflow is "
                    "tested in the release build";
  constexpr int n = 80;  // beyond the 64 tracked
  std::vector<hwsync::mutex> locks(n);
  const auto before = hwsync::lock_order_stats().held_overflows;
  for (auto& m : locks) m.lock();
  for (auto it = locks.rbegin(); it != locks.rend(); ++it) it->unlock();
  EXPECT_EQ(hwsync::lock_order_stats().held_overflows - before, static_cast<unsigned>(n - 64));
  EXPECT_TRUE(reports().empty());
  // The stack is empty again: a new pair starts clean.
  hwsync::mutex a;
  hwsync::mutex b;
  lock_in_order(a, b);
  EXPECT_TRUE(reports().empty());
}

TEST_F(LockOrder, OffMeansNoEdges) {
  HWSYNC_PLANTS_AN_INVERSION();
  hwsync::disable_lock_order_checking();
  hwsync::mutex a;
  hwsync::mutex b;
  lock_in_order(a, b);
  lock_in_order(b, a);
  EXPECT_EQ(hwsync::lock_order_stats().edges, 0u);
  EXPECT_TRUE(reports().empty());
}

// A lock held while the checker was switched off and on again is forgotten,
// not reported from a stale stack.
TEST_F(LockOrder, SwitchingOffAndOnForgetsHeldLocks) {
  hwsync::mutex a;
  hwsync::mutex b;
  a.lock();
  hwsync::disable_lock_order_checking();
  a.unlock();  // not observed
  hwsync::enable_lock_order_checking();
  b.lock();  // a is not held any more: no a -> b
  b.unlock();
  EXPECT_EQ(hwsync::lock_order_stats().edges, 0u);
}

// The log and abort actions run in a child (tests/support/misuse_cases.cpp).
TEST(LockOrderActions, LogPrintsTheCycleAndGoesOn) {
  const std::string program = hwsync::test::env_path("HWSYNC_MISUSE_CASES");
  ASSERT_FALSE(program.empty()) << "HWSYNC_MISUSE_CASES is not set (run through ctest)";
  const auto r = run_child_past_tsan_reports({program, "lock_order_log"});
  EXPECT_EQ(r.signal, 0) << r.output;
  EXPECT_NE(r.output.find("possible deadlock"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"account A\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"account B\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("transfers done"), std::string::npos) << r.output;
}

TEST(LockOrderActions, AbortPrintsTheCycleAndAborts) {
  const std::string program = hwsync::test::env_path("HWSYNC_MISUSE_CASES");
  ASSERT_FALSE(program.empty()) << "HWSYNC_MISUSE_CASES is not set (run through ctest)";
  const auto r = hwsync::test::run_child({program, "lock_order_abort"});
  EXPECT_EQ(r.signal, SIGABRT) << r.output;
  EXPECT_NE(r.output.find("possible deadlock"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("transfers done"), std::string::npos) << r.output;
}

TEST(LockOrderActions, EnvironmentSwitchAndBadValue) {
  const std::string program = hwsync::test::env_path("HWSYNC_MISUSE_CASES");
  ASSERT_FALSE(program.empty()) << "HWSYNC_MISUSE_CASES is not set (run through ctest)";
  ::setenv("HWSYNC_LOCKORDER", "yes", 1);
  const auto bad = hwsync::test::run_child({program, "lock_order_log"});
  ::unsetenv("HWSYNC_LOCKORDER");
  EXPECT_NE(bad.output.find("HWSYNC_LOCKORDER=\"yes\": expected 1"), std::string::npos)
      << bad.output;
}

}  // namespace
