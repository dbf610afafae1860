// hwsync::biased_shared_mutex under load: a writer never overlaps a reader,
// least of all one that entered through the bias, over at least 10^6 reads
// with writers revoking the bias again and again, with more threads than
// cores. Bounded by iterations and by a time limit (a watchdog turns a hang
// into a failure).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "hwsync/biased_shared_mutex.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using access = hwsync::detail::biased_shared_mutex_access;

struct shared_state {
  hwsync::biased_shared_mutex m;
  // Written only under the exclusive lock, a then b: a reader that sees them
  // differ overlapped a writer. Plain ints, so TSan checks the ordering too.
  std::uint64_t a = 0, b = 0;
  std::atomic<int> writers_inside{0};
};

struct reader_counts {
  std::uint64_t reads = 0, published = 0, torn = 0, overlapped = 0;
};

// Progress the main thread watches, so that the run stops once both the reads
// and the writes it needs have happened.
struct progress {
  std::atomic<std::uint64_t> reads{0}, writes{0};
  std::atomic<bool> stop{false};
};

void read_loop(shared_state& s, progress& p, reader_counts& out, bool timed) {
  for (std::uint64_t i = 0; !p.stop.load(std::memory_order_relaxed); ++i) {
    if (timed && i % 64 == 0) {
      if (!s.m.try_lock_shared_for(1ms)) continue;
    } else {
      s.m.lock_shared();
    }
    out.published += access::published_by_me(s.m);
    out.overlapped += s.writers_inside.load(std::memory_order_relaxed) != 0;
    out.torn += s.a != s.b;
    s.m.unlock_shared();
    ++out.reads;
    if (i % 1024 == 1023) p.reads.fetch_add(1024, std::memory_order_relaxed);
  }
}

void write_loop(shared_state& s, progress& p, bool timed) {
  for (std::uint64_t n = 0; !p.stop.load(std::memory_order_relaxed); ++n) {
    // A pause between writes, so that the bias comes back (its inhibition is
    // 9x the last revocation) and the next write has readers to revoke.
    std::this_thread::sleep_for(50us);
    if (timed && n % 4 == 0) {
      if (!s.m.try_lock_for(200us)) continue;
    } else if (timed && n % 4 == 1) {
      if (!s.m.try_lock()) continue;
    } else {
      s.m.lock();
    }
    s.writers_inside.fetch_add(1, std::memory_order_relaxed);
    ++s.a;
    ++s.b;
    s.writers_inside.fetch_sub(1, std::memory_order_relaxed);
    s.m.unlock();
    p.writes.fetch_add(1, std::memory_order_relaxed);
  }
}

// Runs until at least `min_reads` reads and `min_writes` writes are done (or
// the time limit, which fails the test).
void run(int readers, int writers, std::uint64_t min_reads = 1'000'000,
         std::uint64_t min_writes = 2'000) {
  hwsync::test::watchdog dog("biased_shared_mutex stress", 240s);
  shared_state s;
  progress p;
  std::vector<reader_counts> counts(readers);
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back(write_loop, std::ref(s), std::ref(p), w % 2);
  for (int r = 0; r < readers; ++r)
    threads.emplace_back(read_loop, std::ref(s), std::ref(p), std::ref(counts[r]), r % 2 == 1);
  const auto limit = std::chrono::steady_clock::now() + 120s;
  while ((p.reads.load() < min_reads || p.writes.load() < min_writes) &&
         std::chrono::steady_clock::now() < limit)
    std::this_thread::sleep_for(1ms);
  p.stop = true;
  for (auto& t : threads) t.join();

  reader_counts sum;
  for (const auto& c : counts) {
    sum.reads += c.reads;
    sum.published += c.published;
    sum.torn += c.torn;
    sum.overlapped += c.overlapped;
  }
  const std::uint64_t writes = p.writes.load();
  EXPECT_EQ(sum.torn, 0u) << "readers saw a half-done write";
  EXPECT_EQ(sum.overlapped, 0u) << "readers ran beside a writer";
  EXPECT_EQ(s.a, writes);
  EXPECT_EQ(s.b, writes);
  EXPECT_GE(sum.reads, min_reads) << "the time limit ran out first";
  EXPECT_GE(writes, min_writes) << "the time limit ran out first";
  // The test means something only if both paths were taken many times.
  EXPECT_GT(sum.published, sum.reads / 100) << "too few reads went through the bias";
  EXPECT_LT(sum.published, sum.reads) << "no read took the slow path";
  std::printf("%d readers, %d writers: %llu reads (%llu through the bias), %llu writes\n", readers,
              writers, static_cast<unsigned long long>(sum.reads),
              static_cast<unsigned long long>(sum.published),
              static_cast<unsigned long long>(writes));
}

TEST(BiasedSharedMutexStress, NoWriterOverlapsAPublishedReader_2Readers1Writer) {
  run(2, 1);
}

TEST(BiasedSharedMutexStress, NoWriterOverlapsAPublishedReader_4Readers2Writers) {
  run(4, 2);
}

TEST(BiasedSharedMutexStress, NoWriterOverlapsAPublishedReader_8Readers2Writers) {
  run(8, 2);
}

}  // namespace
