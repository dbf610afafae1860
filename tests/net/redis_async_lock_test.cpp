// distributed_lock's coroutine API (async_lock / async_try_lock /
// async_unlock) against real redis-server processes: many acquisitions in
// flight from one thread on one connection, mixed with blocking threads on
// the same names and connection; exact counts and strictly increasing
// tokens; lost() after a server restart; cancellation through a
// stop_token; waiting on the release channel; and the default (a thread
// per call) on file://.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "hwsync/mutex.hpp"
#include "hwsync/net/lock_service.hpp"
#include "redis_restart_check.hpp"
#include "support/net_test.hpp"
#include "support/redis_server.hpp"
#include "support/watchdog.hpp"

namespace {

using hwsync::test::eventually;

using namespace std::chrono_literals;
namespace net = hwsync::net;
using hwsync::test::net_error_of;
using hwsync::test::redis_server;
using hwsync::test::watchdog;

// Starts every task (they run on until their first suspension here, then on
// the ring's loop thread) and waits for all; the first exception any of
// them threw is rethrown.
void run_all(std::vector<net::task<void>> tasks) {
  std::latch finished(static_cast<std::ptrdiff_t>(tasks.size()));
  hwsync::mutex failure_mutex;
  std::exception_ptr failure;
  auto guarded = [&](net::task<void> t) -> net::task<void> {
    try {
      co_await std::move(t);
    } catch (...) {
      std::lock_guard g(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
    finished.count_down();
  };
  for (auto& t : tasks) net::ring::detach(guarded(std::move(t)));
  finished.wait();
  if (failure) std::rethrow_exception(failure);
}

// One lock name's critical-section bookkeeping. Atomics with separate
// load and store, not fetch_add: a lost increment (two holders at once)
// stays visible as a short count, and TSan sees no race in the test itself.
struct name_state {
  std::atomic<int> count{0};
  std::atomic<bool> inside{false};
  std::atomic<int> overlaps{0};
  hwsync::mutex tokens_mutex;
  std::vector<std::uint64_t> tokens;  // in acquisition order

  void critical_section(net::fencing_token t) {
    if (inside.exchange(true)) overlaps.fetch_add(1);
    {
      std::lock_guard g(tokens_mutex);
      tokens.push_back(t.value());
    }
    count.store(count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    inside.store(false);
  }
};

TEST(RedisAsyncLock, CoroutinesAndThreadsOnOneConnectionExactCountsIncreasingTokens) {
  watchdog dog("CoroutinesAndThreads", 240s);
  redis_server server;
  net::lock_service service(server.uri());
  constexpr int names = 4;
  constexpr int coroutines_per_name = 3;
  constexpr int threads_per_name = 1;
  constexpr int iterations = 20;
  std::vector<std::unique_ptr<name_state>> state;
  for (int n = 0; n < names; ++n) state.push_back(std::make_unique<name_state>());
  std::vector<std::unique_ptr<net::distributed_lock>> locks;
  std::vector<net::task<void>> tasks;
  for (int n = 0; n < names; ++n) {
    for (int c = 0; c < coroutines_per_name; ++c) {
      locks.push_back(
          std::make_unique<net::distributed_lock>(service, "async-mixed-" + std::to_string(n)));
      tasks.push_back([](net::distributed_lock& lock, name_state& s) -> net::task<void> {
        for (int i = 0; i < iterations; ++i) {
          const net::fencing_token t = co_await lock.async_lock();
          EXPECT_EQ(t, lock.token());
          EXPECT_TRUE(lock.owns_lock());
          s.critical_section(t);
          co_await lock.async_unlock();
        }
      }(*locks.back(), *state[static_cast<std::size_t>(n)]));
    }
  }
  std::vector<std::thread> threads;
  for (int n = 0; n < names; ++n) {
    for (int k = 0; k < threads_per_name; ++k) {
      threads.emplace_back([&, n] {
        net::distributed_lock lock(service, "async-mixed-" + std::to_string(n));
        for (int i = 0; i < iterations; ++i) {
          lock.lock();
          state[static_cast<std::size_t>(n)]->critical_section(lock.token());
          lock.unlock();
        }
      });
    }
  }
  run_all(std::move(tasks));
  for (auto& t : threads) t.join();
  for (int n = 0; n < names; ++n) {
    name_state& s = *state[static_cast<std::size_t>(n)];
    EXPECT_EQ(s.count.load(), (coroutines_per_name + threads_per_name) * iterations) << n;
    EXPECT_EQ(s.overlaps.load(), 0) << n;
    for (std::size_t i = 1; i < s.tokens.size(); ++i) {
      EXPECT_LT(s.tokens[i - 1], s.tokens[i]) << "name " << n << " acquisition " << i;
    }
  }
}

TEST(RedisAsyncLock, TryLockSeesABusyLockAndTakesAFreedOne) {
  watchdog dog("TryLockSeesABusyLock", 120s);
  redis_server server;
  net::lock_service service(server.uri());
  net::distributed_lock holder(service, "async-try");
  net::distributed_lock other(service, "async-try");
  holder.lock();
  EXPECT_EQ(net::sync_wait(other.async_try_lock()), std::nullopt);
  EXPECT_FALSE(other.owns_lock());
  const auto busy_until = std::chrono::steady_clock::now() + 30ms;
  EXPECT_EQ(net::sync_wait(other.async_try_lock_until(busy_until)), std::nullopt);
  EXPECT_GE(std::chrono::steady_clock::now(), busy_until);
  holder.unlock();
  const auto token = net::sync_wait(other.async_try_lock());
  ASSERT_TRUE(token.has_value());
  EXPECT_GT(*token, holder.token());
  EXPECT_TRUE(other.owns_lock());
  net::sync_wait(other.async_unlock());
  EXPECT_FALSE(other.owns_lock());
  EXPECT_TRUE(holder.try_lock());
  holder.unlock();
}

TEST(RedisAsyncLock, RestartedServerLosesTheLeaseAndLostFires) {
  watchdog dog("AsyncRestartedServer", 120s);
  hwsync::test::expect_restart_fires_lost(
      "async-restart", [](net::distributed_lock& l) { net::sync_wait(l.async_lock()); },
      [](net::distributed_lock& l) { net::sync_wait(l.async_unlock()); });
}

TEST(RedisAsyncLock, StopTokenCancelsAWaitingAsyncLock) {
  watchdog dog("StopTokenCancels", 120s);
  redis_server server;
  net::lock_service service(server.uri());
  net::distributed_lock holder(service, "async-cancel");
  net::distributed_lock waiter(service, "async-cancel");
  holder.lock();

  // Already stopped: no attempt.
  std::stop_source stopped;
  stopped.request_stop();
  auto [code, message] =
      net_error_of([&] { net::sync_wait(waiter.async_lock(stopped.get_token())); });
  EXPECT_EQ(code, net::errc::cancelled) << message;

  // Stopped while it waits (the backoff sleep on the ring is cancelled).
  std::stop_source source;
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    source.request_stop();
  });
  std::tie(code, message) =
      net_error_of([&] { net::sync_wait(waiter.async_lock(source.get_token())); });
  stopper.join();
  EXPECT_EQ(code, net::errc::cancelled) << message;
  EXPECT_FALSE(waiter.owns_lock());

  // The cancelled waiter took nothing: after the release it can lock.
  holder.unlock();
  const net::fencing_token t = net::sync_wait(waiter.async_lock());
  EXPECT_GT(t, holder.token());
  net::sync_wait(waiter.async_unlock());
}

TEST(RedisAsyncLock, WaiterGetsTheLockAfterTheHolderReleases) {
  watchdog dog("WaiterGetsTheLock", 120s);
  redis_server server;
  net::lock_service service(server.uri());
  net::distributed_lock holder(service, "async-wait");
  net::distributed_lock waiter(service, "async-wait");
  holder.lock();
  std::thread releaser([&] {
    std::this_thread::sleep_for(50ms);
    holder.unlock();
  });
  // Caught here, so that a failure is reported after the join instead of
  // ending the process through a joinable thread's destructor.
  std::optional<net::fencing_token> t;
  std::string failure;
  try {
    t = net::sync_wait(waiter.async_lock());
  } catch (const std::exception& e) {
    failure = e.what();
  }
  releaser.join();
  ASSERT_TRUE(t) << failure;
  EXPECT_GT(*t, holder.token());
  net::sync_wait(waiter.async_unlock());
}

// A coroutine waiting in async_lock subscribes to the lock's release
// channel (it waits for the message, not only for its backoff) and drops
// the subscription once it has the lock.
TEST(RedisAsyncLock, AsyncWaiterSubscribesToTheReleaseChannel) {
  watchdog dog("AsyncWaiterSubscribes", 120s);
  redis_server server;
  net::lock_service service(server.uri());
  net::distributed_lock holder(service, "async-pubsub", {.ttl = 60s});
  net::distributed_lock waiter(service, "async-pubsub", {.ttl = 60s});
  holder.lock();
  const net::fencing_token held = holder.token();
  std::atomic<bool> waiter_has_it{false};
  std::thread waiting([&] {
    const net::fencing_token t = net::sync_wait(waiter.async_lock());
    waiter_has_it = t > held;
    net::sync_wait(waiter.async_unlock());
  });
  const std::string channel = "hwsync:lock:{async-pubsub}:released";
  const auto numsub = [&](int n) {
    return "*2\r\n$" + std::to_string(channel.size()) + "\r\n" + channel +
           "\r\n:" + std::to_string(n) + "\r\n";
  };
  EXPECT_TRUE(eventually(
      [&] {
        return server.command({"PUBSUB", "NUMSUB", channel}) == numsub(1);
      },
      30s));
  EXPECT_FALSE(waiter_has_it.load());
  holder.unlock();
  waiting.join();
  EXPECT_TRUE(waiter_has_it.load());
  EXPECT_TRUE(eventually(
      [&] {
        return server.command({"PUBSUB", "NUMSUB", channel}) == numsub(0);
      },
      30s));
}

// file:// has no coroutine forms of its own: the defaults run its blocking
// calls on a thread per call and resume on the loop.
TEST(RedisAsyncLock, DefaultAsyncFormsWorkOnTheFileBackend) {
  watchdog dog("DefaultAsyncOnFile", 120s);
  const hwsync::test::temp_dir dir("async-file");
  net::lock_service service(dir.file_uri());
  net::distributed_lock a(service, "file-async");
  net::distributed_lock b(service, "file-async");
  const net::fencing_token first = net::sync_wait(a.async_lock());
  EXPECT_TRUE(a.owns_lock());
  EXPECT_EQ(net::sync_wait(b.async_try_lock()), std::nullopt);
  std::stop_source source;
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    source.request_stop();
  });
  const auto [code, message] =
      net_error_of([&] { net::sync_wait(b.async_lock(source.get_token())); });
  stopper.join();
  EXPECT_EQ(code, net::errc::cancelled) << message;
  net::sync_wait(a.async_unlock());
  const net::fencing_token second = net::sync_wait(b.async_lock());
  EXPECT_GT(second, first);
  net::sync_wait(b.async_unlock());
}

}  // namespace
