// tests/net/redis_restart_check.hpp — one check shared by the blocking and
// the coroutine Redis lock tests: a server restarted without persistence
// forgets a held lock, so the holder's lost() must fire (flag, handler,
// stop token) and its unlock must report the loss instead of pretending.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stop_token>

#include "hwsync/net/lock_service.hpp"
#include "support/net_test.hpp"
#include "support/redis_server.hpp"

namespace hwsync::test {

// acquire(lock) and release(lock) take the lock through the API under test.
template <class Acquire, class Release>
void expect_restart_fires_lost(const char* name, Acquire&& acquire, Release&& release) {
  using namespace std::chrono_literals;
  redis_server server;  // no persistence: the restart forgets the lock
  net::lock_service service(server.uri());
  net::distributed_lock lock(service, name, {.ttl = 1000ms});
  std::atomic<bool> handler_ran{false};
  lock.on_lost([&](const net::error& e) {
    EXPECT_EQ(e.code(), net::errc::lease_lost);
    handler_ran = true;
  });
  acquire(lock);
  const std::stop_token lost = lock.lost_token();
  server.restart();
  // Bound: the lease (1 s) plus a renewal period and the reconnect.
  EXPECT_TRUE(eventually([&] { return lock.lost(); }, 20s));
  // lost() turns true first, then the handler runs (lock_service.hpp).
  EXPECT_TRUE(eventually([&] { return handler_ran.load(); }, 20s));
  EXPECT_TRUE(lost.stop_requested());
  const auto [code, message] = net_error_of([&] { release(lock); });
  EXPECT_EQ(code, net::errc::lease_lost) << message;
  EXPECT_FALSE(lock.owns_lock());
}

}  // namespace hwsync::test
