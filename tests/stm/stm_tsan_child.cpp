// Child program for stm_test's ThreadSanitizer cases (a report ends the
// reporting process, so each case runs in its own process).
//   clean  two threads transfer between tvars inside transactions only:
//          must run without a report
//   race   the same, plus an unsynchronized counter next to the STM: the
//          STM's internal synchronization must not hide this race
#include <cstdio>
#include <cstring>
#include <thread>

#include "hwsync/stm.hpp"

namespace stm = hwsync::stm;

int main(int argc, char** argv) {
  if (argc != 2 || (std::strcmp(argv[1], "clean") != 0 && std::strcmp(argv[1], "race") != 0)) {
    std::fprintf(stderr, "usage: %s clean|race (got %s)\n", argv[0],
                 argc > 1 ? argv[1] : "nothing");
    return 2;
  }
  const bool race = std::strcmp(argv[1], "race") == 0;
  static stm::tvar<long> accounts[8];
  for (auto& a : accounts) a.unsafe_store(100);
  long plain_counter = 0;
  auto body = [&](int id) {
    for (int i = 0; i < 2000; ++i) {
      const int from = (i + id) % 8, to = (i * 3 + id + 1) % 8;
      stm::atomically([&](auto& tx) {
        tx.write(accounts[from], tx.read(accounts[from]) - 1);
        tx.write(accounts[to], tx.read(accounts[to]) + 1);
      });
      if (race) ++plain_counter;  // deliberately unsynchronized
    }
  };
  std::thread t1(body, 0), t2(body, 1);
  t1.join();
  t2.join();
  long total = 0;
  for (auto& a : accounts) total += a.unsafe_load();
  if (total != 800) {
    std::fprintf(stderr, "total %ld, expected 800\n", total);
    return 1;
  }
  std::printf("ok (counter %ld)\n", plain_counter);
  return 0;
}
