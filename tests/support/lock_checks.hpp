// tests/support/lock_checks.hpp — pieces the primitive tests share.
//   slow_clock                a clock the kernel cannot wait on, running at
//                             half the steady rate: timed waits on it must be
//                             waited in steady slices and re-checked.
//   expect_unlock_publishes   a writer's plain stores made under the lock are
//                             visible to the next holder taken through
//                             `Guard` (exclusive or shared); TSan reports a
//                             race if the lock's release/acquire pairing broke.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace hwsync::test {

struct slow_clock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<slow_clock>;
  [[maybe_unused]] static constexpr bool is_steady = true;
  static time_point now() {
    return time_point(std::chrono::steady_clock::now().time_since_epoch() / 2);
  }
};

template <template <class> class Guard, class Lock>
void expect_unlock_publishes(Lock& m) {
  std::vector<int> data;  // plain memory: only the lock orders it
  bool ready = false;
  std::thread producer([&] {
    std::lock_guard g(m);
    data.assign(1000, 7);
    ready = true;
  });
  for (;;) {
    Guard<Lock> g(m);
    if (ready) {
      ASSERT_EQ(data.size(), 1000u);
      EXPECT_EQ(data[999], 7);
      break;
    }
  }
  producer.join();
}

}  // namespace hwsync::test
