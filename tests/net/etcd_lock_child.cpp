// A client process for the etcd:// lock tests (etcd_lock_test.cpp runs it):
//   count URI NAME KEY M   M times: lock NAME, read the counter KEY from
//                          etcd, write KEY+1 (a plain get and put: only the
//                          lock makes the increment atomic), unlock; prints
//                          "token <t> <value read>" per round, then "done".
//   hold URI NAME TTL_MS   locks, prints "acquired <t>", waits for a line on
//                          stdin, unlocks, prints "unlock=<ok|lease_lost>".
//   holder URI NAME KEY TTL_MS
//                          locks, prints "acquired <t>", waits for a line on
//                          stdin (the test SIGSTOPs it past its lease
//                          meanwhile), writes "stale" to KEY through the
//                          guarded store with its token, prints
//                          "stale_write accepted=<0|1>", waits (at most
//                          20 s) for lost(), prints "lost=<0|1> handler=<0|1>",
//                          then "unlock=<ok|lease_lost|other>".
// Exits 2 with a message on bad arguments, 1 on an unexpected error.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include <atomic>
#include <thread>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_guarded_write.hpp"
#include "hwsync/net/lock_service.hpp"

namespace {

using namespace std::chrono_literals;
namespace net = hwsync::net;

int count(const std::string& uri, const std::string& name, const std::string& key, int rounds) {
  net::lock_service service(uri);
  net::etcd::client store(net::etcd::parse_service_uri(uri).endpoints);
  net::distributed_lock lock(service, name, {.ttl = 10s});
  for (int i = 0; i < rounds; ++i) {
    lock.lock();
    const auto got = store.get(key);
    const long long value = got.kvs.empty() ? 0 : std::stoll(got.kvs[0].value);
    store.put(key, std::to_string(value + 1));
    std::printf("token %llu %lld\n", static_cast<unsigned long long>(lock.token().value()), value);
    lock.unlock();
  }
  std::printf("done\n");
  return 0;
}

int hold(const std::string& uri, const std::string& name, int ttl_ms) {
  net::lock_service service(uri);
  net::distributed_lock lock(service, name, {.ttl = std::chrono::milliseconds(ttl_ms)});
  lock.lock();
  std::printf("acquired %llu\n", static_cast<unsigned long long>(lock.token().value()));
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);
  try {
    lock.unlock();
    std::printf("unlock=ok\n");
  } catch (const net::error& e) {
    std::printf("unlock=%s\n", e.code() == net::errc::lease_lost ? "lease_lost" : "other");
  }
  return 0;
}

int holder(const std::string& uri, const std::string& name, const std::string& key, int ttl_ms) {
  net::lock_service service(uri);
  net::etcd::guarded_store store(uri);
  net::distributed_lock lock(service, name, {.ttl = std::chrono::milliseconds(ttl_ms)});
  std::atomic<bool> handler_ran{false};
  lock.on_lost([&](const net::error&) { handler_ran.store(true); });
  lock.lock();
  std::printf("acquired %llu\n", static_cast<unsigned long long>(lock.token().value()));
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);  // the test stops us here and resumes us later
  // The stale write, straight away with the token it holds, as a paused
  // process would make it before anything tells it the lease is gone.
  const bool accepted = store.put(name, lock.token(), key, "stale");
  std::printf("stale_write accepted=%d\n", accepted ? 1 : 0);
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!lock.lost() && std::chrono::steady_clock::now() < give_up) {
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

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "count" && argc == 6) return count(argv[2], argv[3], argv[4], std::stoi(argv[5]));
    if (mode == "hold" && argc == 5) return hold(argv[2], argv[3], std::stoi(argv[4]));
    if (mode == "holder" && argc == 6) return holder(argv[2], argv[3], argv[4], std::stoi(argv[5]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "etcd_lock_child %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: etcd_lock_child count URI NAME KEY M | hold URI NAME TTL_MS | holder URI "
               "NAME KEY TTL_MS (got %d arguments)\n",
               argc - 1);
  return 2;
}
