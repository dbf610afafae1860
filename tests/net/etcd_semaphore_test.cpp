// etcd::semaphore, etcd::barrier and etcd::double_barrier against a real
// single-member etcd: exactly N holders, FIFO waiters, a holder killed with
// -9 frees its permit, session loss while waiting is an error; a barrier
// holds its waiters until released; a double barrier lets nobody through
// enter or leave before all arrived, refuses an extra participant, withdraws
// an arrival that timed out, and is not stuck forever by a participant
// killed with -9.
#include <signal.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "etcd_recipe_process.hpp"
#include "etcd_suite.hpp"
#include "hwsync/net/etcd_barrier.hpp"
#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_double_barrier.hpp"
#include "hwsync/net/etcd_semaphore.hpp"
#include "hwsync/net/etcd_session.hpp"
#include "support/etcd_server.hpp"
#include "support/net_test.hpp"
#include "support/watchdog.hpp"

namespace {

using hwsync::test::eventually;

using namespace std::chrono_literals;
namespace net = hwsync::net;
namespace etcd = hwsync::net::etcd;
using hwsync::test::recipe_process;
using hwsync::test::watchdog;
using std::chrono::steady_clock;

using hwsync::test::keys_under;

class EtcdRecipes : public hwsync::test::single_etcd_suite {};

TEST_F(EtcdRecipes, SemaphoreGivesExactlyItsPermits) {
  watchdog dog("SemaphoreGivesExactlyItsPermits", 60s);
  etcd::client c(endpoints());
  etcd::session s1(c, 10s), s2(c, 10s), s3(c, 10s);
  etcd::semaphore p1(s1, "/sem/exact", 2), p2(s2, "/sem/exact", 2), p3(s3, "/sem/exact", 2);
  ASSERT_TRUE(p1.try_acquire());
  ASSERT_TRUE(p2.try_acquire());
  EXPECT_GT(p2.token(), p1.token());
  EXPECT_FALSE(p3.try_acquire());
  EXPECT_EQ(keys_under(c, "/sem/exact/"), 2);  // the refused claim was withdrawn
  EXPECT_FALSE(p3.acquire(steady_clock::now() + 300ms));
  EXPECT_EQ(keys_under(c, "/sem/exact/"), 2);
  EXPECT_TRUE(p1.release());
  ASSERT_TRUE(p3.acquire(steady_clock::now() + 30s));
  EXPECT_GT(p3.token(), p2.token());
  EXPECT_TRUE(p2.release());
  EXPECT_TRUE(p3.release());
  EXPECT_FALSE(p3.release());
  EXPECT_EQ(keys_under(c, "/sem/exact/"), 0);
  EXPECT_THROW(etcd::semaphore(s1, "/sem/exact", 0), std::invalid_argument);
}

TEST_F(EtcdRecipes, SemaphoreNeverAdmitsMoreThanItsPermits) {
  watchdog dog("SemaphoreNeverAdmitsMoreThanItsPermits", 120s);
  constexpr int threads = 4, rounds = 4, permits = 2;
  std::atomic<int> inside{0}, most{0}, admitted{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      etcd::client c(endpoints());
      etcd::session s(c, 10s);
      etcd::semaphore sem(s, "/sem/many", permits);
      for (int r = 0; r < rounds; ++r) {
        ASSERT_TRUE(sem.acquire(steady_clock::now() + 60s));
        const int now = inside.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        admitted.fetch_add(1);
        std::this_thread::sleep_for(10ms);
        inside.fetch_sub(1);
        ASSERT_TRUE(sem.release());
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(admitted.load(), threads * rounds);
  EXPECT_LE(most.load(), permits);
  EXPECT_GE(most.load(), 1);
}

TEST_F(EtcdRecipes, SemaphoreServesWaitersInArrivalOrder) {
  watchdog dog("SemaphoreServesWaitersInArrivalOrder", 120s);
  etcd::client c(endpoints());
  etcd::session hs(c, 10s);
  etcd::semaphore holder(hs, "/sem/fifo", 1);
  ASSERT_TRUE(holder.try_acquire());
  constexpr int waiters = 3;
  std::mutex order_mutex;
  std::vector<int> order;
  std::vector<std::thread> threads;
  for (int w = 0; w < waiters; ++w) {
    threads.emplace_back([&, w] {
      etcd::client mine(endpoints());
      etcd::session s(mine, 10s);
      etcd::semaphore sem(s, "/sem/fifo", 1);
      ASSERT_TRUE(sem.acquire(steady_clock::now() + 60s));
      {
        std::lock_guard g(order_mutex);
        order.push_back(w);
      }
      sem.release();
    });
    ASSERT_TRUE(eventually([&] { return keys_under(c, "/sem/fifo/") == w + 2; }));
  }
  holder.release();
  for (auto& t : threads) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

TEST_F(EtcdRecipes, SemaphoreHolderKilledWithSigkillFreesItsPermit) {
  watchdog dog("SemaphoreHolderKilledWithSigkill", 120s);
  recipe_process child({"permit", cluster().endpoint(0), "/sem/killed", "1", "2"});
  const std::string line = child.read_line(60s);
  ASSERT_EQ(line.rfind("permit ", 0), 0u) << line;
  const std::int64_t dead_token = std::stoll(line.substr(7));
  etcd::client c(endpoints());
  etcd::session s(c, 10s);
  etcd::semaphore sem(s, "/sem/killed", 1);
  EXPECT_FALSE(sem.try_acquire());
  child.signal(SIGKILL);
  child.wait();
  ASSERT_TRUE(sem.acquire(steady_clock::now() + 30s)) << "the dead holder's permit never freed";
  EXPECT_GT(sem.token(), dead_token);
  sem.release();
}

TEST_F(EtcdRecipes, SemaphoreSessionLostWhileWaitingIsAnError) {
  watchdog dog("SemaphoreSessionLostWhileWaiting", 60s);
  etcd::client c(endpoints());
  etcd::session hs(c, 10s);
  etcd::semaphore holder(hs, "/sem/lost", 1);
  ASSERT_TRUE(holder.try_acquire());
  etcd::session s(c, 3s);
  etcd::semaphore sem(s, "/sem/lost", 1);
  std::promise<net::errc> outcome;
  std::thread waiter([&] {
    try {
      sem.acquire(steady_clock::now() + 60s);
      outcome.set_value(net::errc{});
    } catch (const net::error& e) {
      outcome.set_value(e.code());
    }
  });
  ASSERT_TRUE(eventually([&] { return keys_under(c, "/sem/lost/") == 2; }));
  c.revoke_lease(s.lease());
  holder.release();  // a permit frees at the same moment: still no phantom
  auto f = outcome.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(f.get(), net::errc::lease_lost);
  waiter.join();
  EXPECT_FALSE(sem.held());
}

TEST_F(EtcdRecipes, BarrierHoldsWaitersUntilReleased) {
  watchdog dog("BarrierHoldsWaitersUntilReleased", 60s);
  etcd::client c(endpoints());
  etcd::barrier b(c, "/barrier/basic");
  EXPECT_TRUE(b.wait(steady_clock::now() + 10s));  // not held: passes at once
  ASSERT_TRUE(b.hold());
  EXPECT_FALSE(b.hold());
  EXPECT_FALSE(b.wait(steady_clock::now() + 200ms));
  std::atomic<int> passed{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&] {
      etcd::client mine(endpoints());
      etcd::barrier mb(mine, "/barrier/basic");
      if (mb.wait(steady_clock::now() + 60s)) passed.fetch_add(1);
    });
  }
  EXPECT_EQ(passed.load(), 0);  // held: nobody can have passed
  EXPECT_TRUE(b.release());
  for (auto& w : waiters) w.join();
  EXPECT_EQ(passed.load(), 2);
  EXPECT_FALSE(b.release());
}

TEST_F(EtcdRecipes, DoubleBarrierLetsNobodyThroughBeforeAllArrive) {
  watchdog dog("DoubleBarrierLetsNobodyThrough", 120s);
  constexpr int participants = 3;
  std::atomic<int> arrived{0}, leaving{0};
  std::atomic<int> early_enter{0}, early_leave{0};
  std::promise<void> all_entered;
  std::shared_future<void> entered_future = all_entered.get_future().share();
  std::atomic<int> entered{0};
  std::promise<void> extra_checked;
  std::shared_future<void> extra_future = extra_checked.get_future().share();
  std::vector<std::thread> threads;
  for (int p = 0; p < participants; ++p) {
    threads.emplace_back([&] {
      etcd::client c(endpoints());
      etcd::session s(c, 10s);
      etcd::double_barrier b(s, "/dbarrier/round", participants);
      arrived.fetch_add(1);
      ASSERT_TRUE(b.enter(steady_clock::now() + 60s));
      if (arrived.load() != participants) early_enter.fetch_add(1);
      if (entered.fetch_add(1) + 1 == participants) all_entered.set_value();
      extra_future.wait();
      leaving.fetch_add(1);
      ASSERT_TRUE(b.leave(steady_clock::now() + 60s));
      if (leaving.load() != participants) early_leave.fetch_add(1);
    });
  }
  ASSERT_EQ(entered_future.wait_for(60s), std::future_status::ready);
  {
    // Everyone is inside: one more participant is one too many.
    etcd::client c(endpoints());
    etcd::session s(c, 10s);
    etcd::double_barrier extra(s, "/dbarrier/round", participants);
    EXPECT_THROW(extra.enter(steady_clock::now() + 10s), std::length_error);
  }
  extra_checked.set_value();
  for (auto& t : threads) t.join();
  EXPECT_EQ(early_enter.load(), 0);
  EXPECT_EQ(early_leave.load(), 0);
  etcd::client c(endpoints());
  EXPECT_EQ(keys_under(c, "/dbarrier/round/"), 0);  // waiters and ready gone
}

TEST_F(EtcdRecipes, DoubleBarrierEnterThatTimesOutWithdrawsItsArrival) {
  watchdog dog("DoubleBarrierEnterThatTimesOut", 60s);
  etcd::client c(endpoints());
  etcd::session s(c, 10s);
  etcd::double_barrier b(s, "/dbarrier/alone", 2);
  EXPECT_FALSE(b.enter(steady_clock::now() + 200ms));
  EXPECT_EQ(keys_under(c, "/dbarrier/alone/"), 0);
  EXPECT_THROW(etcd::double_barrier(s, "/dbarrier/alone", 0), std::invalid_argument);
}

TEST_F(EtcdRecipes, DoubleBarrierParticipantKilledWithSigkillDoesNotBlockLeave) {
  watchdog dog("DoubleBarrierParticipantKilled", 120s);
  recipe_process child({"enter", cluster().endpoint(0), "/dbarrier/killed", "2", "2"});
  etcd::client c(endpoints());
  etcd::session s(c, 10s);
  etcd::double_barrier b(s, "/dbarrier/killed", 2);
  ASSERT_TRUE(b.enter(steady_clock::now() + 60s));
  ASSERT_EQ(child.read_line(60s), "entered");
  child.signal(SIGKILL);
  child.wait();
  // The dead participant never leaves; its key goes with its lease.
  EXPECT_TRUE(b.leave(steady_clock::now() + 30s));
  EXPECT_EQ(keys_under(c, "/dbarrier/killed/"), 0);
}

}  // namespace
