// Bugs planted on purpose for ThreadSanitizer to find through hwsync::mutex,
// one per argument; "clean" is correct code that must draw no report.
// tsan_report_test runs this program as a child and reads TSan's output.
#include <cstdio>
#include <cstring>
#include <thread>

#include "hwsync/mutex.hpp"

namespace {

// Each thread locks its own mutex around a write to the same int: the
// mutexes order nothing, so the writes race.
int race() {
  hwsync::mutex a, b;
  int shared = 0;
  std::thread t1([&] {
    std::lock_guard g(a);
    shared = 1;
  });
  std::thread t2([&] {
    std::lock_guard g(b);
    shared = 2;
  });
  t1.join();
  t2.join();
  return shared == 3;
}

// a then b on one thread, b then a on another: a potential deadlock, even
// though these two runs never overlap.
int inversion() {
  hwsync::mutex a, b;
  std::thread([&] {
    std::lock_guard ga(a);
    std::lock_guard gb(b);
  }).join();
  std::thread([&] {
    std::lock_guard gb(b);
    std::lock_guard ga(a);
  }).join();
  return 0;
}

// Correct code: every access to `shared` under the same mutex, contended,
// through lock, try_lock and timed waits.
int clean() {
  hwsync::timed_mutex m;
  long shared = 0;
  auto work = [&] {
    for (int i = 0; i < 20000; ++i) {
      if (i % 3 == 0) {
        if (!m.try_lock()) m.lock();
      } else if (i % 3 == 1) {
        while (!m.try_lock_for(std::chrono::microseconds(50))) {
        }
      } else {
        m.lock();
      }
      ++shared;
      m.unlock();
    }
  };
  std::thread t1(work), t2(work), t3(work);
  t1.join();
  t2.join();
  t3.join();
  return shared == 60000 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (std::strcmp(argv[1], "race") == 0) return race();
  if (std::strcmp(argv[1], "inversion") == 0) return inversion();
  if (std::strcmp(argv[1], "clean") == 0) return clean();
  std::fprintf(stderr, "unknown case '%s'\n", argv[1]);
  return 2;
}
