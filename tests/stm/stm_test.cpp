// hwsync::stm unit tests: the API's semantics one at a time — read/write of
// word, multi-word and shared_ptr tvars, exceptions, on_commit/on_abort,
// flat nesting, or_else, blocking retry (woken, and parked rather than
// spinning), the single-thread mode, the hardware path under the policy
// emulation, tuning validation, statistics, misuse, and ThreadSanitizer
// reports next to the STM.
#include <gtest/gtest.h>
#include <time.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/htm.hpp"
#include "hwsync/sanitizer.hpp"
#include "hwsync/stm.hpp"
#include "support/child_process.hpp"
#include "support/misuse.hpp"
#include "support/watchdog.hpp"

namespace stm = hwsync::stm;
using namespace std::chrono_literals;

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Keeps a second descriptor alive, so the calling thread runs the
// multi-threaded paths (the single-thread mode needs exactly one).
class second_thread {
 public:
  second_thread()
      : t_([this] {
          stm::tvar<int> dummy{0};
          stm::atomically([&](auto& tx) { tx.write(dummy, 1); });
          registered_.count_down();
          done_.wait();
        }) {
    registered_.wait();
  }
  ~second_thread() {
    done_.count_down();
    t_.join();
  }

 private:
  std::latch registered_{1};
  std::latch done_{1};
  std::thread t_;
};

struct tuning_scope {
  explicit tuning_scope(const stm::tuning& t) : saved(stm::current_tuning()) { stm::set_tuning(t); }
  ~tuning_scope() { stm::set_tuning(saved); }
  stm::tuning saved;
};

TEST(Stm, TheIssueExampleMovesThirty) {
  stm::tvar<long> a{100}, b{0};
  stm::atomically([&](auto& tx) {
    long x = tx.read(a);
    if (x < 30) tx.retry();
    tx.write(a, x - 30);
    tx.write(b, tx.read(b) + 30);
  });
  EXPECT_EQ(a.unsafe_load(), 70);
  EXPECT_EQ(b.unsafe_load(), 30);
}

TEST(Stm, AtomicallyReturnsTheResultAndReadsItsOwnWrites) {
  second_thread other;
  stm::tvar<int> v{1};
  const int r = stm::atomically([&](stm::transaction& tx) {
    tx.write(v, 5);
    tx.write(v, tx.read(v) * 2);
    return tx.read(v) + 1;
  });
  EXPECT_EQ(r, 11);
  EXPECT_EQ(v.unsafe_load(), 10);
}

struct wide {
  long parts[5];
  char tag;
};

TEST(Stm, MultiWordValuesAreOneUnit) {
  second_thread other;
  stm::tvar<wide> w{wide{{1, 2, 3, 4, 5}, 'a'}};
  static_assert(stm::tvar<wide>::word_count == 6);
  stm::atomically([&](auto& tx) {
    wide x = tx.read(w);
    for (long& p : x.parts) p *= 10;
    x.tag = 'b';
    tx.write(w, x);
  });
  const wide r = w.unsafe_load();
  EXPECT_EQ(r.parts[0], 10);
  EXPECT_EQ(r.parts[4], 50);
  EXPECT_EQ(r.tag, 'b');
}

TEST(Stm, SharedPtrTvarsHoldImmutableNodes) {
  second_thread other;
  using list = std::vector<int>;
  stm::tvar<std::shared_ptr<const list>> v{std::make_shared<const list>(list{1, 2})};
  std::weak_ptr<const list> old = v.unsafe_load();
  stm::atomically([&](auto& tx) {
    auto cur = tx.read(v);
    auto next = std::make_shared<list>(*cur);
    next->push_back(3);
    tx.write(v, std::shared_ptr<const list>(std::move(next)));
    EXPECT_EQ(tx.read(v)->size(), 3u);  // reads its own write
  });
  EXPECT_EQ(*v.unsafe_load(), (list{1, 2, 3}));
  EXPECT_TRUE(old.expired()) << "the replaced node is freed once nobody holds it";
}

TEST(Stm, AnExceptionDiscardsTheTransactionAndPropagates) {
  for (int threads_alive : {1, 2}) {
    std::unique_ptr<second_thread> other;
    if (threads_alive == 2) other = std::make_unique<second_thread>();
    stm::tvar<long> a{1}, b{2};
    int aborted = 0, committed = 0;
    EXPECT_THROW(stm::atomically([&](auto& tx) {
                   tx.write(a, 100L);
                   tx.write(b, tx.read(a) + 1);
                   tx.on_abort([&] { ++aborted; });
                   tx.on_commit([&] { ++committed; });
                   throw std::runtime_error("user error");
                 }),
                 std::runtime_error)
        << threads_alive;
    EXPECT_EQ(a.unsafe_load(), 1) << threads_alive;
    EXPECT_EQ(b.unsafe_load(), 2) << threads_alive;
    EXPECT_EQ(aborted, 1);
    EXPECT_EQ(committed, 0);
  }
}

TEST(Stm, OnCommitRunsOnceAfterACommitThatFollowedAnAbort) {
  stm::tvar<long> a{0}, b{0};
  std::latch go{1}, done{1};
  std::thread writer([&] {
    stm::atomically([&](auto& tx) { tx.write(b, 1L); });  // register first
    go.wait();
    stm::atomically([&](auto& tx) { tx.write(a, tx.read(a) + 1); });
    done.count_down();
  });
  // The writer is registered once it has run one transaction; wait for that
  // through b (no single-thread mode from here on).
  while (b.unsafe_load() == 0) std::this_thread::yield();
  int attempts = 0, commits = 0, aborts = 0;
  stm::atomically([&](auto& tx) {
    ++attempts;
    const long x = tx.read(a);
    if (attempts == 1) {
      go.count_down();  // the writer commits to a, which this attempt read
      done.wait();
    }
    tx.on_commit([&] { ++commits; });
    tx.on_abort([&] { ++aborts; });
    tx.write(b, x + 10);
  });
  writer.join();
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(commits, 1);
  EXPECT_EQ(aborts, 1);
  EXPECT_EQ(b.unsafe_load(), 11);
}

TEST(Stm, NestedAtomicallyJoinsTheOuterTransaction) {
  second_thread other;
  stm::tvar<int> v{0};
  EXPECT_THROW(stm::atomically([&](auto& tx) {
                 stm::atomically([&](auto& inner) {
                   EXPECT_EQ(&inner, &tx);
                   inner.write(v, 7);
                 });
                 EXPECT_EQ(tx.read(v), 7);
                 throw std::logic_error("after the inner block");
               }),
               std::logic_error);
  EXPECT_EQ(v.unsafe_load(), 0) << "the inner block's write went with the outer transaction";
  stm::atomically([&](auto&) { stm::atomically([&](auto& inner) { inner.write(v, 3); }); });
  EXPECT_EQ(v.unsafe_load(), 3);
}

TEST(Stm, OrElseRunsTheSecondBranchAndUndoesTheFirst) {
  for (int threads_alive : {1, 2}) {
    std::unique_ptr<second_thread> other;
    if (threads_alive == 2) other = std::make_unique<second_thread>();
    stm::tvar<int> x{0}, y{5}, touched{0};
    int first_aborts = 0;
    const int r = stm::atomically(stm::or_else(
        [&](stm::transaction& tx) {
          tx.write(touched, 1);
          tx.write(y, 99);
          tx.on_abort([&] { ++first_aborts; });
          if (tx.read(x) == 0) tx.retry();
          return 1;
        },
        [&](stm::transaction& tx) {
          EXPECT_EQ(tx.read(y), 5) << "the first branch's write is undone";
          tx.write(y, tx.read(y) + 1);
          return 2;
        }));
    EXPECT_EQ(r, 2);
    EXPECT_EQ(touched.unsafe_load(), 0);
    EXPECT_EQ(y.unsafe_load(), 6);
    EXPECT_EQ(first_aborts, 1);
  }
}

// A consumer whose two branches both retry waits on what either read:
// committing to the tvar only the second branch read wakes it (zio#8696).
TEST(Stm, OrElseRetryWaitsOnBothBranches) {
  hwsync::test::watchdog dog("OrElseRetryWaitsOnBothBranches", 60s);
  for (int which : {0, 1}) {
    stm::tvar<int> first{0}, second{0};
    std::atomic<bool> consumed{false};
    std::thread consumer([&] {
      const int got = stm::atomically(stm::or_else(
          [&](auto& tx) {
            const int v = tx.read(first);
            if (v == 0) tx.retry();
            return v;
          },
          [&](auto& tx) {
            const int v = tx.read(second);
            if (v == 0) tx.retry();
            return v;
          }));
      EXPECT_EQ(got, which == 0 ? 10 : 20);
      consumed.store(true);
    });
    // Let the consumer park (a commit before that only reruns it).
    while (stm::process_statistics().retries_parked == 0 && !consumed.load())
      std::this_thread::sleep_for(1ms);
    const auto parked_before = stm::process_statistics().retries_parked;
    (void)parked_before;
    stm::atomically([&](auto& tx) {
      if (which == 0)
        tx.write(first, 10);
      else
        tx.write(second, 20);
    });
    consumer.join();
    EXPECT_TRUE(consumed.load());
  }
}

// The consumer parks: over a 300 ms wait it uses a small fraction of one
// CPU (a busy-waiting retry would use all it can get); it wakes once the
// producer commits. The bounds are an order of magnitude away from both
// behaviours (no speed is measured).
TEST(Stm, RetryParksWithoutBurningCpuAndWakesOnCommit) {
  hwsync::test::watchdog dog("RetryParksWithoutBurningCpuAndWakesOnCommit", 60s);
  stm::tvar<int> box{0};
  std::atomic<double> consumer_cpu{-1};
  std::atomic<long long> woke_after_commit_ns{-1};
  std::atomic<long long> committed_at_ns{0};
  const auto origin = std::chrono::steady_clock::now();
  const auto before = stm::process_statistics();
  std::thread consumer([&] {
    const double cpu0 = thread_cpu_seconds();
    const int v = stm::atomically([&](auto& tx) {
      const int x = tx.read(box);
      if (x == 0) tx.retry();
      tx.write(box, 0);
      return x;
    });
    const auto now = std::chrono::steady_clock::now() - origin;
    consumer_cpu.store(thread_cpu_seconds() - cpu0);
    woke_after_commit_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() -
                               committed_at_ns.load());
    EXPECT_EQ(v, 42);
  });
  while (stm::process_statistics().retries_parked == before.retries_parked)
    std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(300ms);
  committed_at_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - origin)
                            .count());
  stm::atomically([&](auto& tx) { tx.write(box, 42); });
  consumer.join();
  EXPECT_LT(consumer_cpu.load(), 0.1) << "CPU seconds used by a consumer blocked for 0.3 s";
  EXPECT_LT(woke_after_commit_ns.load(), 5'000'000'000LL) << "a lost or very late wake-up";
  std::printf("retry: consumer CPU %.4f s over a >= 0.3 s wait; woke %.1f us after the commit\n",
              consumer_cpu.load(), static_cast<double>(woke_after_commit_ns.load()) / 1e3);
  EXPECT_EQ(box.unsafe_load(), 0);
}

TEST(Stm, SingleThreadModeRunsWhenOneThreadUsesTheStm) {
  stm::tvar<long> a{10}, b{0};
  const auto before = stm::process_statistics();
  for (int i = 0; i < 100; ++i) {
    stm::atomically([&](auto& tx) {
      tx.write(a, tx.read(a) - 1);
      tx.write(b, tx.read(b) + 1);
    });
  }
  const auto d = stm::process_statistics() - before;
  if (stm::current_tuning().single_thread_mode) {
    EXPECT_EQ(d.single_thread_commits, 100u) << d.describe();
  }
  EXPECT_EQ(a.unsafe_load(), -90);
  EXPECT_EQ(b.unsafe_load(), 100);
  // Undo in place: an exception and an or_else branch leave no trace.
  EXPECT_THROW(stm::atomically([&](auto& tx) {
                 tx.write(a, 5L);
                 throw std::runtime_error("x");
               }),
               std::runtime_error);
  EXPECT_EQ(a.unsafe_load(), -90);
  stm::atomically(stm::or_else(
      [&](auto& tx) {
        tx.write(a, 1L);
        tx.retry();
      },
      [&](auto& tx) { tx.write(b, tx.read(a)); }));
  EXPECT_EQ(a.unsafe_load(), -90);
  EXPECT_EQ(b.unsafe_load(), -90);
}

// The single-thread mode's commit tests one byte for everything rare
// (callbacks, shared_ptr undo records, a swallowed retry signal) and sends
// such an attempt through the general commit. Each must still do its work,
// and leave nothing that sends the next call off the fast path: the counts
// of single-thread commits are exact.
TEST(Stm, SingleThreadModeCommitsWithCallbacksPointersAndASwallowedRetry) {
  if (!stm::current_tuning().single_thread_mode) GTEST_SKIP() << "the single-thread mode is off";
  using node = std::vector<int>;
  stm::tvar<std::shared_ptr<const node>> list{std::make_shared<const node>(node{1})};
  stm::tvar<long> a{0};
  auto plain_transfer = [&] { stm::atomically([&](auto& tx) { tx.write(a, tx.read(a) + 1); }); };
  const auto before = stm::process_statistics();

  int committed = 0, aborted = 0;
  stm::atomically([&](auto& tx) {
    tx.write(a, 10L);
    tx.on_commit([&] { ++committed; });
    tx.on_abort([&] { ++aborted; });
  });
  EXPECT_EQ(committed, 1);
  EXPECT_EQ(aborted, 0);
  plain_transfer();
  EXPECT_EQ(committed, 1) << "a callback ran again in the next transaction";

  // A shared_ptr write keeps an undo record: committed, it stays; thrown
  // away, the old node comes back.
  stm::atomically([&](auto& tx) {
    tx.write(list, std::shared_ptr<const node>(std::make_shared<node>(node{1, 2})));
  });
  EXPECT_EQ(*list.unsafe_load(), (node{1, 2}));
  EXPECT_THROW(stm::atomically([&](auto& tx) {
                 tx.write(list, std::shared_ptr<const node>(std::make_shared<node>(node{3})));
                 tx.write(a, 99L);
                 throw std::runtime_error("discard");
               }),
               std::runtime_error);
  EXPECT_EQ(*list.unsafe_load(), (node{1, 2}));
  EXPECT_EQ(a.unsafe_load(), 11);
  plain_transfer();

  // User code that swallows the retry signal cannot commit that attempt:
  // its write is undone and the call reruns (logged, as after any retry).
  int attempts = 0;
  stm::atomically([&](stm::transaction& tx) {
    ++attempts;
    tx.write(a, tx.read(a) + 100);
    if (attempts == 1) {
      try {
        tx.retry();
      } catch (...) {  // wrong, but it must not commit the attempt
      }
    }
  });
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(a.unsafe_load(), 112) << "the swallowed attempt's write was undone";
  plain_transfer();
  EXPECT_EQ(a.unsafe_load(), 113);

  const auto d = stm::process_statistics() - before;
  // Single-thread commits: the callbacks, three plain transfers and the
  // committed pointer write; the swallowed retry's rerun is logged.
  EXPECT_EQ(d.single_thread_commits, 5u) << d.describe();
  EXPECT_EQ(d.update_commits, 1u) << d.describe();
  EXPECT_EQ(d.aborts_explicit, 1u) << d.describe();
  EXPECT_EQ(d.aborts_exception, 1u) << d.describe();
}

// Commit tags (stripe_table.hpp): a thread takes the words its own
// commits left at rv + 1 without extending. So two threads on disjoint
// tvars, once each has caught up with the clock, never extend and never
// write the clock. Before tags, every read of a tvar the thread had just
// written met a version one above its snapshot (0.054 extensions per
// transfer in the disjoint bench, each a CAS on the shared clock).
TEST(Stm, DisjointWritersTakeTheirOwnCommitsWithoutExtending) {
  constexpr int per_thread = 64;
  constexpr int transfers = 20000;
  stm::tuning software_only;
  software_only.hardware_attempts = 0;  // the counts below are the software path's
  tuning_scope ts(software_only);
  // Aligned so that the block cannot straddle an 8 MiB boundary, where two
  // tvars could fold onto one stripe (stripe_index) and conflict.
  struct alignas(4096) accounts_block {
    stm::tvar<long> a[2 * per_thread];
  };
  auto block = std::make_unique<accounts_block>();
  for (auto& t : block->a) t.unsafe_store(100);
  std::latch warmed(3), measuring(3), done(3);
  auto worker = [&](int base) {
    unsigned x = static_cast<unsigned>(base) * 2654435761u + 1u;
    auto transfer = [&] {
      x = x * 1664525u + 1013904223u;
      const int from = base + static_cast<int>((x >> 8) % per_thread);
      const int to = base + static_cast<int>((x >> 20) % per_thread);
      stm::atomically([&](stm::transaction& tx) {
        tx.write(block->a[from], tx.read(block->a[from]) - 1);
        tx.write(block->a[to], tx.read(block->a[to]) + 1);
      });
    };
    // Catch up with the clock: the first reads may meet versions other
    // tests left above this thread's snapshot.
    for (int i = 0; i < 4 * per_thread; ++i) transfer();
    warmed.arrive_and_wait();
    measuring.arrive_and_wait();
    for (int i = 0; i < transfers; ++i) transfer();
    // Stay registered until both are done: alone, the other would run in
    // the single-thread mode.
    done.arrive_and_wait();
  };
  std::thread t1(worker, 0), t2(worker, per_thread);
  warmed.arrive_and_wait();
  const auto before = stm::process_statistics();
  const std::uint64_t clock_before = stm::detail::runtime.clock.load();
  measuring.arrive_and_wait();
  done.arrive_and_wait();
  t1.join();
  t2.join();
  const auto d = stm::process_statistics() - before;
  EXPECT_EQ(d.update_commits, 2u * transfers) << d.describe();
  EXPECT_EQ(d.extensions, 0u) << d.describe();
  EXPECT_EQ(d.aborts(), 0u) << d.describe();
  EXPECT_EQ(stm::detail::runtime.clock.load(), clock_before) << "a disjoint writer wrote the clock";
  long total = 0;
  for (const auto& t : block->a) total += t.unsafe_load();
  EXPECT_EQ(total, 100L * 2 * per_thread);
}

// newer() compares a stripe word with own_word_, which the descriptor
// computes whenever its snapshot moves. For a descriptor beyond the 255th
// live one (untagged) that word carries the lock bit, so no unlocked word
// matches it: its own last commit is a version above its snapshot like any
// other, and reading it extends. Pins both kinds: of 300 live descriptors,
// the tagged ones read their own last commit without extending, the
// untagged ones (at least 300 - 255) extend exactly once.
TEST(Stm, UntaggedDescriptorsExtendOverTheirOwnCommits) {
  hwsync::test::watchdog dog("UntaggedDescriptorsExtendOverTheirOwnCommits", 120s);
  constexpr int threads = 300;
  stm::tuning software_only;
  software_only.hardware_attempts = 0;  // the counts below are the software path's
  tuning_scope ts(software_only);
  std::vector<std::unique_ptr<stm::tvar<long>>> x, y;
  for (int i = 0; i < threads; ++i) {
    x.push_back(std::make_unique<stm::tvar<long>>(0));
    y.push_back(std::make_unique<stm::tvar<long>>(0));
  }
  // One call site for both steps: its profile says "writes" from the first
  // step on, so the measured step runs logged from its first attempt.
  auto step = [&](int i, bool read_own) {
    stm::atomically([&](stm::transaction& tx) {
      if (read_own) {
        tx.write(*y[i], tx.read(*x[i]));
      } else {
        tx.write(*x[i], i + 1);
      }
    });
  };
  std::latch registered(threads + 1), finished(threads + 1);
  std::atomic<int> turn{-1};
  std::vector<std::uint64_t> extensions(threads, ~std::uint64_t{0});
  std::vector<std::uint64_t> aborts(threads, ~std::uint64_t{0});
  std::vector<std::thread> team;
  for (int i = 0; i < threads; ++i) {
    team.emplace_back([&, i] {
      step(i, false);  // registers the descriptor (and takes a tag if one is free)
      registered.arrive_and_wait();
      // One at a time: nothing else moves the clock or the counters.
      for (int t = turn.load(); t != i; t = turn.load()) turn.wait(t);
      step(i, false);
      const auto before = stm::process_statistics();
      step(i, true);
      const auto d = stm::process_statistics() - before;
      extensions[static_cast<std::size_t>(i)] = d.extensions;
      aborts[static_cast<std::size_t>(i)] = d.aborts();
      turn.store(i + 1);
      turn.notify_all();
      finished.arrive_and_wait();  // every descriptor stays live (and keeps its tag)
    });
  }
  registered.arrive_and_wait();
  turn.store(0);
  turn.notify_all();
  finished.arrive_and_wait();
  for (auto& t : team) t.join();
  int tagged = 0, untagged = 0;
  for (int i = 0; i < threads; ++i) {
    EXPECT_EQ(aborts[static_cast<std::size_t>(i)], 0u) << "thread " << i;
    if (extensions[static_cast<std::size_t>(i)] == 0) {
      ++tagged;
    } else {
      EXPECT_EQ(extensions[static_cast<std::size_t>(i)], 1u) << "thread " << i;
      ++untagged;
    }
    EXPECT_EQ(y[static_cast<std::size_t>(i)]->unsafe_load(), i + 1);
  }
  EXPECT_GE(untagged, threads - static_cast<int>(stm::detail::max_commit_tag));
  EXPECT_LE(tagged, static_cast<int>(stm::detail::max_commit_tag));
  EXPECT_GE(tagged, 1);
}

// A retry in the single-thread mode leaves it (nobody else could wake the
// thread otherwise) and parks until a thread that registers later commits.
TEST(Stm, RetryFromTheSingleThreadModeIsWokenByANewThread) {
  hwsync::test::watchdog dog("RetryFromTheSingleThreadModeIsWokenByANewThread", 60s);
  stm::tvar<int> box{0};
  const auto before = stm::process_statistics();
  std::thread producer([&] {
    while (stm::process_statistics().retries_parked == before.retries_parked)
      std::this_thread::sleep_for(1ms);
    stm::atomically([&](auto& tx) { tx.write(box, 3); });
  });
  const int v = stm::atomically([&](auto& tx) {
    const int x = tx.read(box);
    if (x == 0) tx.retry();
    return x;
  });
  producer.join();
  EXPECT_EQ(v, 3);
}

TEST(Stm, ReadOnlySitesLogNothingAndUpgradeOnTheirFirstWrite) {
  second_thread other;
  stm::tvar<int> v{4};
  const auto before = stm::process_statistics();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(stm::atomically([&](auto& tx) { return tx.read(v); }), 4);
  auto d = stm::process_statistics() - before;
  EXPECT_EQ(d.read_only_commits, 10u) << d.describe();
  EXPECT_EQ(d.aborts(), 0u) << d.describe();
  // A site that writes: its first attempt runs read-only, upgrades once,
  // and later calls start logged.
  const auto before2 = stm::process_statistics();
  for (int i = 0; i < 10; ++i) stm::atomically([&](auto& tx) { tx.write(v, tx.read(v) + 1); });
  d = stm::process_statistics() - before2;
  EXPECT_EQ(d.aborts_upgrade, 1u) << d.describe();
  EXPECT_EQ(d.update_commits, 10u) << d.describe();
  EXPECT_EQ(v.unsafe_load(), 14);
}

TEST(Stm, TuningRejectsBadValuesSayingWhatWasExpected) {
  stm::tuning t;
  t.serial_after = 0;
  try {
    stm::set_tuning(t);
    ADD_FAILURE() << "serial_after = 0 accepted";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("serial_after"), std::string::npos) << m;
    EXPECT_NE(m.find("expected 1 to 1000000"), std::string::npos) << m;
    EXPECT_NE(m.find("got 0"), std::string::npos) << m;
  }
  t = stm::tuning{};
  t.backoff_min_ticks = 10;
  t.backoff_max_ticks = 5;
  EXPECT_THROW(stm::set_tuning(t), std::invalid_argument);
  t = stm::tuning{};
  t.hardware_attempts = 65;
  EXPECT_THROW(stm::set_tuning(t), std::invalid_argument);
  EXPECT_EQ(stm::current_tuning().serial_after, stm::tuning{}.serial_after);
}

// ---- the hardware path, under the policy emulation ----

stm::tuning multi_threaded_paths() {
  stm::tuning t;
  t.single_thread_mode = false;
  return t;
}

// ---- the logged commit ----

// Two distinct tvars on one stripe: 2^21 + 1 tvars span more than 16 MiB,
// so some tvar shares the first one's stripe (stripe_index folds address
// bits 23 and up into the index). twin is 0 if none was found.
struct stripe_twins {
  static constexpr std::size_t n = (std::size_t{1} << 21) + 1;
  std::unique_ptr<stm::tvar<long>[]> cells = std::make_unique<stm::tvar<long>[]>(n);
  const std::uint32_t first = stm::detail::stripe_index(&cells[0]);  // their stripe
  std::size_t twin = 0;
  stripe_twins() {
    for (std::size_t i = 1; i < n && twin == 0; ++i)
      if (stm::detail::stripe_index(&cells[i]) == first) twin = i;
  }
};

// Two distinct tvars that map to one stripe: the commit locks it once,
// writes both and unlocks it once (a second CAS on its own lock would wait
// on itself until the bounded wait aborts it, every time).
TEST(Stm, TwoTvarsOnOneStripeCommitTogether) {
  hwsync::test::watchdog dog("TwoTvarsOnOneStripeCommitTogether", 60s);
  tuning_scope ts(multi_threaded_paths());
  stripe_twins cells;
  ASSERT_NE(cells.twin, 0u) << "no tvar shares the first one's stripe";
  stm::tvar<long>& a = cells.cells[0];
  stm::tvar<long>& b = cells.cells[cells.twin];
  const std::uint32_t first = cells.first;
  a.unsafe_store(1000);
  constexpr int per_thread = 20000;
  const auto before = stm::process_statistics();
  auto transfers = [&](long amount) {
    for (int i = 0; i < per_thread; ++i) {
      stm::atomically([&](auto& tx) {
        tx.write(a, tx.read(a) - amount);
        tx.write(b, tx.read(b) + amount);
      });
    }
  };
  std::thread other(transfers, -1L);
  transfers(1L);
  other.join();
  const auto d = stm::process_statistics() - before;
  EXPECT_EQ(a.unsafe_load() + b.unsafe_load(), 1000);
  EXPECT_EQ(a.unsafe_load(), 1000);  // as many +1 as -1 transfers
  // Software commits, or serial ones after a run of aborts on the shared stripe.
  EXPECT_EQ(d.update_commits + d.serial_commits, 2u * per_thread) << d.describe();
  EXPECT_EQ(stm::detail::stripes[first].load() & stm::detail::stripe_locked, 0u);
}

// The logged path's inline reads and writes hand a full log (read set,
// redo log, value arena) and a tvar the attempt already wrote to the
// out-of-line path, which grows the log or finds the write. Every
// transaction size from one tvar to past the logs' first capacities (64
// reads, 16 write entries, 64 words), multi-word tvars, and an or_else
// branch that rewrites a tvar the outer transaction wrote: two redo entries
// for one tvar, of which the commit must store the newer.
TEST(Stm, LoggedAttemptsGrowTheirLogsAndReadTheirOwnWrites) {
  tuning_scope ts(multi_threaded_paths());
  const auto before = stm::process_statistics();
  constexpr int max_n = 150;
  auto cells = std::make_unique<stm::tvar<long>[]>(max_n);
  for (int n = 1; n <= max_n; ++n) {
    const long reread = stm::atomically([&](stm::transaction& tx) {
      for (int i = 0; i < n; ++i) tx.write(cells[i], tx.read(cells[i]) + 1);
      long sum = 0;
      for (int i = 0; i < n; ++i) sum += tx.read(cells[i]);
      return sum;
    });
    // Cell i < n has been incremented by every transaction of more than i
    // cells so far, this one included: n - i times.
    long expected = 0;
    for (int i = 0; i < n; ++i) expected += n - i;
    ASSERT_EQ(reread, expected) << "a transaction of " << n << " cells read a stale value";
  }
  for (int i = 0; i < max_n; ++i) EXPECT_EQ(cells[i].unsafe_load(), max_n - i) << "cell " << i;

  struct triple {
    long a, b, c;
  };
  constexpr int triples = 40;  // 120 words
  auto wide = std::make_unique<stm::tvar<triple>[]>(triples);
  stm::atomically([&](stm::transaction& tx) {
    for (int i = 0; i < triples; ++i) tx.write(wide[i], triple{i, 2L * i, 3L * i});
    for (int i = 0; i < triples; ++i) {
      const triple t = tx.read(wide[i]);
      EXPECT_EQ(t.a + t.b + t.c, 6L * i);
    }
  });
  for (int i = 0; i < triples; ++i) EXPECT_EQ(wide[i].unsafe_load().c, 3L * i);

  stm::tvar<long> x{0};
  for (const bool branch_retries : {false, true}) {
    const long seen = stm::atomically([&](stm::transaction& tx) {
      tx.write(x, 1);
      tx.or_else(
          [&](stm::transaction& t) {
            t.write(x, 2);
            if (branch_retries) t.retry();
          },
          [&](stm::transaction& t) { t.write(x, 3); });
      return tx.read(x);
    });
    const long want = branch_retries ? 3 : 2;
    EXPECT_EQ(seen, want);
    EXPECT_EQ(x.unsafe_load(), want) << "the commit stored the outer write over the branch's";
  }
  const auto d = stm::process_statistics() - before;
  EXPECT_EQ(d.single_thread_commits, 0u) << d.describe();
  EXPECT_EQ(d.update_commits, static_cast<std::uint64_t>(max_n + 3)) << d.describe();
}

// A commit trusts a read-set entry it holds locked (its version was <= rv
// when locked) but must still validate the others: a commit whose written
// values came from a tvar another thread changed meanwhile aborts and
// reruns on the new value.
TEST(Stm, ACommitStillValidatesReadsOutsideItsWriteSet) {
  hwsync::test::watchdog dog("ACommitStillValidatesReadsOutsideItsWriteSet", 60s);
  tuning_scope ts(multi_threaded_paths());
  stm::tvar<long> source{1}, a{0}, b{0};
  std::atomic<int> stage{0};
  std::thread writer([&] {
    // Registers a descriptor without touching a or b: their stripes stay at
    // versions <= the main thread's rv, so its commit trusts the entries it
    // locks and must find the change to source among the others.
    stm::tvar<long> own{0};
    stm::atomically([&](auto& tx) { tx.write(own, 1L); });
    while (stage.load() != 1) std::this_thread::yield();
    stm::atomically([&](auto& tx) { tx.write(source, 2L); });
    stage.store(2);
  });
  const auto before = stm::process_statistics();
  int attempts = 0;
  bool interleaved = false;
  stm::atomically([&](auto& tx) {
    ++attempts;
    // The site writes first: its first attempt upgrades out of the
    // read-only mode before the interleaving, the second runs logged.
    const long b0 = tx.read(b);
    tx.write(b, b0);
    const long a0 = tx.read(a);
    const long v = tx.read(source);
    if (attempts == 2 && !interleaved) {
      // Another thread commits to source while this attempt holds its old
      // value; nothing after this reads a stripe, so only the commit's
      // validation can notice.
      interleaved = true;
      stage.store(1);
      while (stage.load() != 2) std::this_thread::yield();
    }
    tx.write(a, a0 + v);
    tx.write(b, b0 + v);
  });
  writer.join();
  const auto d = stm::process_statistics() - before;
  EXPECT_TRUE(interleaved);
  EXPECT_EQ(attempts, 3);
  EXPECT_EQ(a.unsafe_load(), 2);
  EXPECT_EQ(b.unsafe_load(), 2);
  EXPECT_GE(d.aborts_validation, 1u) << d.describe();
}

// The bug: the loop-free commit of one or two word tvars stored the unlock
// word into its second stripe even when both tvars were on one stripe (a
// one-tvar write set, or two tvars sharing a stripe), so the stripe was
// unlocked twice. Another committer that locked it between the two stores
// lost its lock to the second one; a third then committed over it, and one
// of the two wrote back a stale value (seen as lost updates of the sequence
// tvar in StmStress.RedBlackTreeMatchesASequentialReplay under the tsan
// preset). The debug-checks hook runs right after each unlock store: it
// locks the stripe as another committer would, and the commit must leave
// that lock alone.
namespace unlock_twice {
std::atomic<std::uint32_t> watched{0};
std::atomic<std::uint64_t> unlocked_word_seen{0};
std::atomic<int> hook_calls{0};
std::atomic<bool> intruder_locked{false};
// An owner id no descriptor has (ids count up from 1).
constexpr std::uint64_t intruder = std::uint64_t{1} << 40;
void lock_like_another_committer(std::uint32_t stripe) {
  if (stripe != watched.load() || hook_calls.fetch_add(1) != 0) return;
  std::uint64_t w = stm::detail::stripes[stripe].load();
  if (stm::detail::is_locked(w)) return;  // the check below fails: no intruder
  unlocked_word_seen.store(w);
  intruder_locked.store(
      stm::detail::stripes[stripe].compare_exchange_strong(w, stm::detail::locked_word(intruder)));
}
}  // namespace unlock_twice

TEST(Stm, OneStripeCommitUnlockedTwiceAndReleasedAnotherCommittersLock) {
  if constexpr (!hwsync::debug::checks_enabled) {
    GTEST_SKIP() << "needs the unlock hook of a debug-checks build (tsan preset)";
  } else {
    namespace u = unlock_twice;
    hwsync::test::watchdog dog("OneStripeCommitUnlockedTwiceAndReleasedAnotherCommittersLock", 60s);
    tuning_scope ts(multi_threaded_paths());
    stripe_twins cells;
    ASSERT_NE(cells.twin, 0u) << "no tvar shares the first one's stripe";
    stm::tvar<long>& a = cells.cells[0];
    stm::tvar<long>& b = cells.cells[cells.twin];
    const std::uint32_t first = cells.first;
    auto check = [&](const char* write_set, auto body) {
      stm::atomically(body);  // the site runs logged from here on
      u::watched.store(first);
      u::hook_calls.store(0);
      u::intruder_locked.store(false);
      stm::detail::test_after_unlock.store(&u::lock_like_another_committer);
      stm::atomically(body);
      stm::detail::test_after_unlock.store(nullptr);
      ASSERT_TRUE(u::intruder_locked.load()) << write_set << ": the hook did not run unlocked";
      EXPECT_EQ(stm::detail::stripes[first].load(), stm::detail::locked_word(u::intruder))
          << write_set << ": the commit released a lock it did not hold";
      EXPECT_EQ(u::hook_calls.load(), 1) << write_set << ": unlock stores to the stripe";
      stm::detail::stripes[first].store(u::unlocked_word_seen.load());  // the intruder leaves
    };
    check("one tvar", [&](auto& tx) { tx.write(a, tx.read(a) + 1); });
    check("two tvars on one stripe", [&](auto& tx) {
      tx.write(a, tx.read(a) - 1);
      tx.write(b, tx.read(b) + 1);
    });
    // +1 twice, then -1 twice with b +1 twice.
    EXPECT_EQ(a.unsafe_load(), 0);
    EXPECT_EQ(b.unsafe_load(), 2);
  }
}

TEST(StmHybrid, EmulatedHardwareTransactionsCommitAndAreCounted) {
  tuning_scope ts(multi_threaded_paths());
  hwsync::htm::policy_emulation_scope emu(hwsync::htm::emulation_config::never_abort());
  stm::tvar<long> a{100}, b{0};
  const auto before = stm::process_statistics();
  for (int i = 0; i < 20; ++i) {
    stm::atomically([&](auto& tx) {
      tx.write(a, tx.read(a) - 1);
      tx.write(b, tx.read(b) + 1);
    });
  }
  const auto d = stm::process_statistics() - before;
  EXPECT_EQ(d.hardware_commits, 20u) << d.describe();
  EXPECT_EQ(d.hardware_aborts(), 0u) << d.describe();
  EXPECT_EQ(a.unsafe_load(), 80);
  EXPECT_EQ(b.unsafe_load(), 20);
}

TEST(StmHybrid, ConflictAbortsAreRetriedABoundedNumberOfTimes) {
  tuning_scope ts(multi_threaded_paths());
  hwsync::htm::emulation_config c{};
  c.conflict = 1.0;
  c.capacity = c.retry = c.explicit_abort = 0;
  hwsync::htm::policy_emulation_scope emu(c);
  stm::tvar<long> a{0};
  const auto before = stm::process_statistics();
  for (int i = 0; i < 5; ++i) stm::atomically([&](auto& tx) { tx.write(a, tx.read(a) + 1); });
  const auto d = stm::process_statistics() - before;
  const unsigned attempts = stm::current_tuning().hardware_attempts;
  EXPECT_EQ(d.hw_aborts_conflict, 5u * attempts) << d.describe();
  EXPECT_EQ(d.hw_fallbacks, 5u) << d.describe();
  EXPECT_EQ(d.hardware_commits, 0u) << d.describe();
  EXPECT_EQ(a.unsafe_load(), 5);
}

TEST(StmHybrid, CapacityAbortsFallBackAtOnce) {
  tuning_scope ts(multi_threaded_paths());
  hwsync::htm::emulation_config c{};
  c.capacity = 1.0;
  c.conflict = c.retry = c.explicit_abort = 0;
  hwsync::htm::policy_emulation_scope emu(c);
  stm::tvar<long> a{0};
  const auto before = stm::process_statistics();
  for (int i = 0; i < 5; ++i) stm::atomically([&](auto& tx) { tx.write(a, tx.read(a) + 1); });
  const auto d = stm::process_statistics() - before;
  EXPECT_EQ(d.hw_aborts_capacity, 5u) << d.describe();
  EXPECT_EQ(d.hw_fallbacks, 5u) << d.describe();
  EXPECT_EQ(a.unsafe_load(), 5);
}

TEST(StmHybrid, RetryAndExceptionsInHardwareGetSoftwareSemantics) {
  hwsync::test::watchdog dog("RetryAndExceptionsInHardwareGetSoftwareSemantics", 60s);
  tuning_scope ts(multi_threaded_paths());
  hwsync::htm::policy_emulation_scope emu(hwsync::htm::emulation_config::never_abort());
  stm::tvar<int> box{0};
  EXPECT_THROW(stm::atomically([&](auto& tx) {
                 tx.write(box, 9);
                 throw std::runtime_error("in hardware");
               }),
               std::runtime_error);
  EXPECT_EQ(box.unsafe_load(), 0);
  const auto before = stm::process_statistics();
  std::thread producer([&] {
    while (stm::process_statistics().retries_parked == before.retries_parked)
      std::this_thread::sleep_for(1ms);
    stm::atomically([&](auto& tx) { tx.write(box, 8); });
  });
  const int v = stm::atomically([&](auto& tx) {
    const int x = tx.read(box);
    if (x == 0) tx.retry();
    return x;
  });
  producer.join();
  EXPECT_EQ(v, 8);
  const auto d = stm::process_statistics() - before;
  EXPECT_GE(d.hw_fallbacks, 1u) << d.describe();
}

// ---- misuse and ThreadSanitizer ----

using hwsync::test::misuse_case;
class StmMisuse : public ::testing::TestWithParam<misuse_case> {};

TEST_P(StmMisuse, AbortsWithAMessage) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "needs HWSYNC_DEBUG_CHECKS";
  hwsync::test::expect_misuse_aborts(GetParam(), "hwsync::stm::transaction at 0x");
}

INSTANTIATE_TEST_SUITE_P(DebugChecks, StmMisuse,
                         ::testing::Values(misuse_case{"stm_transaction_escaped",
                                                       "used outside its atomically() block"}),
                         hwsync::test::misuse_case_name);

hwsync::test::child_result run_stm_child(const char* which) {
  const std::string program = hwsync::test::env_path("HWSYNC_STM_TSAN_CHILD");
  EXPECT_FALSE(program.empty()) << "HWSYNC_STM_TSAN_CHILD is not set (run through ctest)";
  return hwsync::test::run_child({program, which});
}

TEST(StmTsan, TransactionsOnTvarsRunClean) {
  const auto r = run_stm_child("clean");
  EXPECT_EQ(r.output.find("ThreadSanitizer"), std::string::npos) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(StmTsan, ARaceOnAPlainVariableNextToTheStmIsReported) {
  if (!hwsync::tsan::enabled) GTEST_SKIP() << "not a ThreadSanitizer build";
  const auto r = run_stm_child("race");
  EXPECT_NE(r.output.find("WARNING: ThreadSanitizer: data race"), std::string::npos) << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
}

}  // namespace
