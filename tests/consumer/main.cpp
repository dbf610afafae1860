// Uses the installed hwsync the way a user's code would: swap std::mutex for
// hwsync::mutex and keep the std adaptors.
#include <hwsync/cycle_clock.hpp>
#include <hwsync/mutex.hpp>

#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

int main() {
  hwsync::mutex m;
  long counter = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        std::lock_guard g(m);
        ++counter;
      }
    });
  }
  for (auto& t : ts) t.join();
  const auto c0 = hwsync::cycle_clock::now();
  const bool ok = counter == 40000 && hwsync::cycle_clock::now() >= c0;
  std::printf("consumer: counter=%ld %s\n", counter, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
