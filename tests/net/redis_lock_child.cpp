// A client process for the redis:// tests (redis_lock_test.cpp runs it):
//   count  URI NAME KEY M       M times: lock, read KEY, write KEY+1 through
//                               the fenced store with the lock's token,
//                               unlock; prints "token <t> <accepted 0|1>" per
//                               round, then "done".
//   holder URI NAME KEY TTL_MS  locks, prints "acquired <t>", waits for a
//                               line on stdin (the test SIGSTOPs it past its
//                               lease meanwhile), writes "stale" to KEY with
//                               its token, prints "stale_write accepted=<0|1>
//                               fence=<f>", waits (at most 20 s) for lost(),
//                               prints "lost=<0|1> handler=<0|1>", then
//                               "unlock=<ok|lease_lost|other>".
//   async-relock URI NAME       misuse: co_await async_lock() twice (aborts
//                               with debug checks)
//   async-unlock-free URI NAME  misuse: co_await async_unlock() unheld
//   fixture                     starts a redis_server (tests/support), prints
//                               "server <pid> <dir>", waits for stdin to close
//                               (the test SIGKILLs it instead).
// Exits 2 with a message on bad arguments, 1 on an unexpected error.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "hwsync/net/lock_service.hpp"
#include "hwsync/net/redis_fenced_write.hpp"
#include "support/redis_server.hpp"

namespace {

using namespace std::chrono_literals;
namespace net = hwsync::net;

int count(const std::string& uri, const std::string& name, const std::string& key, int rounds) {
  net::lock_service service(uri);
  net::redis_fenced_store store(uri);
  net::distributed_lock lock(service, name, {.ttl = 10s});
  for (int i = 0; i < rounds; ++i) {
    lock.lock();
    const auto before = store.read(key);
    const long long value = before ? std::stoll(*before) : 0;
    const auto written = store.write(key, lock.token(), std::to_string(value + 1));
    std::printf("token %llu %d\n", static_cast<unsigned long long>(lock.token().value()),
                written.accepted ? 1 : 0);
    lock.unlock();
  }
  std::printf("done\n");
  return 0;
}

int holder(const std::string& uri, const std::string& name, const std::string& key, int ttl_ms) {
  net::lock_service service(uri);
  net::redis_fenced_store store(uri);
  net::distributed_lock lock(service, name, {.ttl = std::chrono::milliseconds(ttl_ms)});
  std::atomic<bool> handler_ran{false};
  lock.on_lost([&](const net::error&) { handler_ran.store(true); });
  lock.lock();
  std::printf("acquired %llu\n", static_cast<unsigned long long>(lock.token().value()));
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);  // the test stops us here and resumes us later
  // The stale write, made as a paused process would make it: straight away,
  // with the token it holds, before anything tells it the lease is gone.
  const auto w = store.write(key, lock.token(), "stale");
  std::printf("stale_write accepted=%d fence=%llu\n", w.accepted ? 1 : 0,
              static_cast<unsigned long long>(w.fence.value()));
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  // lost() turns true first, then the handler runs (lock_service.hpp).
  while (!(lock.lost() && handler_ran.load()) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  std::printf("lost=%d handler=%d\n", lock.lost() ? 1 : 0, handler_ran.load() ? 1 : 0);
  try {
    lock.unlock();
    std::printf("unlock=ok\n");
  } catch (const net::error& e) {
    std::printf("unlock=%s\n", e.code() == net::errc::lease_lost ? "lease_lost" : "other");
  }
  return 0;
}

int fixture() {
  hwsync::test::redis_server server;
  std::printf("server %d %s\n", static_cast<int>(server.pid()), server.dir().c_str());
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);
  return 0;
}

// Misuse of the coroutine API; with debug checks the second call aborts.
int async_misuse(const std::string& mode, const std::string& uri, const std::string& name) {
  net::lock_service service(uri);
  net::distributed_lock lock(service, name);
  if (mode == "async-relock") {
    net::sync_wait(lock.async_lock());
    net::sync_wait(lock.async_lock());
  } else {
    net::sync_wait(lock.async_unlock());
  }
  std::printf("no abort\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "count" && argc == 6) return count(argv[2], argv[3], argv[4], std::atoi(argv[5]));
    if (mode == "holder" && argc == 6) return holder(argv[2], argv[3], argv[4], std::atoi(argv[5]));
    if (mode == "fixture" && argc == 2) return fixture();
    if ((mode == "async-relock" || mode == "async-unlock-free") && argc == 4) {
      return async_misuse(mode, argv[2], argv[3]);
    }
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: %s count URI NAME KEY M | holder URI NAME KEY TTL_MS | fixture | "
               "async-relock URI NAME | async-unlock-free URI NAME (got %d arguments)\n",
               argv[0], argc - 1);
  return 2;
}
