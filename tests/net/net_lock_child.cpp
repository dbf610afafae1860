// A lock client run as a child process by net_file_lock_process_test and
// net_lock_cli_test (one process per client, as in production).
//
//   net_lock_child count URI NAME M STORE   M times: lock, fenced increment of
//       the counter in STORE ("value last_token\n"; a token not above the
//       stored one is a stale write: exit 3), append the token to STORE.log, unlock
//   net_lock_child hold URI NAME            lock, print "token N", wait to be killed
//   net_lock_child once URI NAME            lock, print "token N", unlock
//   net_lock_child relock URI NAME          misuse: lock() twice (aborts with debug checks)
//   net_lock_child unlock-free URI NAME     misuse: unlock() without holding it
//   net_lock_child wait-term - -             print "ready", wait for SIGTERM, print "got SIGTERM"
//   net_lock_child block-on-loop - -         misuse: a blocking wrapper after a co_await
//                                           (always aborts: it would wait for itself)
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "hwsync/net/lock_service.hpp"
#include "hwsync/net/ring.hpp"

namespace {

hwsync::net::task<void> block_on_the_loop() {
  auto& r = hwsync::net::ring::default_ring();
  co_await hwsync::net::sleep_until(r, std::chrono::steady_clock::now());
  r.run(hwsync::net::io_request{});  // on the loop thread now
}

int count(const std::string& uri, const std::string& name, int rounds, const std::string& store) {
  hwsync::net::lock_service service(uri);
  hwsync::net::distributed_lock lock(service, name);
  for (int i = 0; i < rounds; ++i) {
    lock.lock();
    const std::uint64_t token = lock.token().value();
    unsigned long long value = 0, last = 0;
    if (std::FILE* f = std::fopen(store.c_str(), "r")) {
      if (std::fscanf(f, "%llu %llu", &value, &last) != 2) value = last = 0;
      std::fclose(f);
    }
    if (token <= last) {
      std::printf("stale write refused: token %llu after %llu\n",
                  static_cast<unsigned long long>(token), last);
      return 3;
    }
    // Rewritten in place, not atomically: only the lock keeps it exact.
    if (std::FILE* f = std::fopen(store.c_str(), "w")) {
      std::fprintf(f, "%llu %llu\n", value + 1, static_cast<unsigned long long>(token));
      std::fclose(f);
    }
    if (std::FILE* log = std::fopen((store + ".log").c_str(), "a")) {
      std::fprintf(log, "%llu\n", static_cast<unsigned long long>(token));
      std::fclose(log);
    }
    lock.unlock();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: net_lock_child count|hold|once URI NAME [M STORE]\n");
    return 2;
  }
  const std::string mode = argv[1];
  if (mode == "wait-term") {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, nullptr);
    std::printf("ready\n");
    std::fflush(stdout);
    int sig = 0;
    sigwait(&term, &sig);
    std::printf("got SIGTERM\n");
    return 0;
  }
  if (mode == "block-on-loop") {
    hwsync::net::sync_wait(block_on_the_loop());
    std::printf("survived\n");
    return 0;
  }
  try {
    if (mode == "count" && argc == 6) return count(argv[2], argv[3], std::atoi(argv[4]), argv[5]);
    hwsync::net::lock_service service(argv[2]);
    hwsync::net::distributed_lock lock(service, argv[3]);
    if (mode == "unlock-free") {
      lock.unlock();
      std::printf("survived\n");
      return 0;
    }
    lock.lock();
    if (mode == "relock") {
      lock.lock();
      std::printf("survived\n");
      return 0;
    }
    std::printf("token %llu\n", static_cast<unsigned long long>(lock.token().value()));
    std::fflush(stdout);
    if (mode == "hold") {
      for (;;) ::pause();
    }
    lock.unlock();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "net_lock_child: %s\n", e.what());
    return 1;
  }
}
