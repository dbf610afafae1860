// Elision correctness under emulated aborts of every cause, 2 to 8 threads,
// over hwsync::mutex and the exclusive side of hwsync::shared_mutex<>. The
// policy emulation tests the policy (retries, waits, fallbacks, switching
// off and on, counters) under real contention, not the hardware.
//
// Bounded in iterations (per_thread) and seconds (time_limit per run; a
// thread that hits it stops early and the counts use what it did). Exact:
// plain counters written under the lock must equal the acquisitions made,
// an occupancy count must never see two threads inside, and the lock's
// statistics must account for every acquisition.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/htm.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/shared_mutex.hpp"
#include "support/watchdog.hpp"

namespace htm = hwsync::htm;
using namespace std::chrono_literals;

namespace {

struct abort_mix {
  const char* name;
  htm::emulation_config config;
};

htm::emulation_config mix(double conflict, double capacity, double retry, double explicit_abort) {
  htm::emulation_config c;
  c.conflict = conflict;
  c.capacity = capacity;
  c.retry = retry;
  c.explicit_abort = explicit_abort;
  c.explicit_code = 0x21;
  c.seed = 2024;
  return c;
}

const abort_mix mixes[] = {
    {"conflict", mix(0.4, 0, 0, 0)},
    {"capacity", mix(0, 0.3, 0, 0)},
    {"retry", mix(0, 0, 0.4, 0)},
    {"explicit", mix(0, 0, 0, 0.3)},
    {"every_cause", mix(0.15, 0.05, 0.1, 0.05)},
};

struct alignas(64) line {
  std::uint64_t value = 0;
};

constexpr long per_thread = 20000;
constexpr auto time_limit = 2s;

template <class Lock>
void run(const abort_mix& m, int threads) {
  SCOPED_TRACE(std::string(m.name) + ", " + std::to_string(threads) + " threads");
  htm::policy_emulation_scope scope(m.config);
  htm::elided<Lock> lock;
  line lines[2];
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  std::vector<long> done(static_cast<std::size_t>(threads), 0);
  std::atomic<int> ready{0};
  const auto stop_at = std::chrono::steady_clock::now() + time_limit;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      long n = 0;
      for (; n < per_thread; ++n) {
        if (n % 256 == 0 && std::chrono::steady_clock::now() > stop_at) break;
        std::unique_lock g(lock, std::defer_lock);
        if (n % 8 == 7) {
          while (!g.try_lock()) std::this_thread::yield();
        } else {
          g.lock();
        }
        if (inside.fetch_add(1, std::memory_order_relaxed) != 0) overlap = true;
        for (line& l : lines) ++l.value;
        inside.fetch_sub(1, std::memory_order_relaxed);
      }
      done[static_cast<std::size_t>(t)] = n;
    });
  }
  for (auto& t : ts) t.join();
  long total = 0;
  for (long n : done) total += n;
  EXPECT_FALSE(overlap.load()) << "two threads were inside at once";
  for (const line& l : lines) EXPECT_EQ(l.value, static_cast<std::uint64_t>(total));

  const htm::statistics s = lock.stats();
  SCOPED_TRACE(s.describe());
  EXPECT_EQ(s.acquisitions(), static_cast<std::uint64_t>(total));
  std::uint64_t by_cause = 0;
  for (std::uint64_t n : s.aborts_by_cause) by_cause += n;
  EXPECT_EQ(by_cause, s.aborts);
  EXPECT_GT(s.commits, 0u);
  EXPECT_GT(s.aborts, 0u);
  // The injected cause shows up as such.
  const htm::emulation_config& c = m.config;
  if (c.conflict > 0) {
    EXPECT_GT(s.aborts_of(htm::abort_cause::conflict), 0u);
  }
  if (c.capacity > 0) {
    EXPECT_GT(s.aborts_of(htm::abort_cause::capacity), 0u);
    EXPECT_GT(s.switched_off, 0u);
    EXPECT_GT(s.skipped, 0u);
  }
  if (c.retry > 0) {
    EXPECT_GT(s.aborts_of(htm::abort_cause::retry), 0u);
  }
  if (c.explicit_abort > 0) {
    EXPECT_GT(s.aborts_of(htm::abort_cause::explicit_abort), 0u);
  }
  if (c.capacity == 0 && c.explicit_abort == 0) {
    // Only retryable aborts: a fallback takes 1 + retries aborts in a row,
    // or a lock held too long for the brief wait.
    EXPECT_LT(s.fallbacks, static_cast<std::uint64_t>(total));
  }
}

class ElisionStress : public ::testing::TestWithParam<int> {};

TEST_P(ElisionStress, ExactCountsUnderEmulatedAbortsOverMutex) {
  hwsync::test::watchdog dog("elided<hwsync::mutex> stress", 120s);
  for (const abort_mix& m : mixes) run<hwsync::mutex>(m, GetParam());
}

TEST_P(ElisionStress, ExactCountsUnderEmulatedAbortsOverSharedMutexWithReaders) {
  hwsync::test::watchdog dog("elided<hwsync::shared_mutex<>> stress", 120s);
  for (const abort_mix& m : mixes) run<hwsync::shared_mutex<>>(m, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Threads, ElisionStress, ::testing::Values(2, 3, 4, 6, 8));

// Readers on the shared side beside elided writers: a reader must never see
// the two lines differ (a writer half-way through), in emulation as on RTM
// (where the reader's lock_shared() would abort the writer's transaction).
TEST(ElisionStressReaders, ReadersNeverSeeAHalfDoneWrite) {
  hwsync::test::watchdog dog("elided writers with readers", 120s);
  htm::policy_emulation_scope scope(mix(0.15, 0.05, 0.1, 0.05));
  htm::elided<hwsync::shared_mutex<>> lock;
  line lines[2];
  std::atomic<bool> torn{false};
  std::atomic<bool> stop{false};
  const auto stop_at = std::chrono::steady_clock::now() + time_limit;
  std::vector<std::thread> ts;
  for (int w = 0; w < 2; ++w) {
    ts.emplace_back([&] {
      for (long n = 0; n < per_thread; ++n) {
        if (n % 256 == 0 && std::chrono::steady_clock::now() > stop_at) break;
        std::lock_guard g(lock);
        for (line& l : lines) ++l.value;
      }
    });
  }
  for (int r = 0; r < 2; ++r) {
    ts.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        std::shared_lock g(lock);
        if (lines[0].value != lines[1].value) torn = true;
      }
    });
  }
  ts[0].join();
  ts[1].join();
  stop = true;
  ts[2].join();
  ts[3].join();
  EXPECT_FALSE(torn.load());
  EXPECT_EQ(lines[0].value, lines[1].value);
  EXPECT_EQ(lock.stats().acquisitions(), lines[0].value);
}

}  // namespace
