// hwsync::stm stress tests, each bounded in iterations and in seconds:
// the bank (total conserved, 2 to 16 threads, audited by read-only
// transactions), opacity (an invariant asserted inside every attempt,
// doomed ones included), the three integer sets (every result checked
// against a sequential replay in commit order, final contents against
// std::set), retry hand-offs through a bounded buffer, starvation (a
// 256-tvar transaction against 4 short writers), and all of it once more
// through the emulated hardware path.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "hwsync/htm.hpp"
#include "hwsync/sanitizer.hpp"
#include "hwsync/spin.hpp"
#include "hwsync/stm.hpp"
#include "intsets.hpp"
#include "support/watchdog.hpp"

namespace stm = hwsync::stm;
namespace sets = hwsync::stm_sets;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

// ThreadSanitizer runs everything 5-20 times slower: fewer iterations.
constexpr long scale(long n) {
  return hwsync::tsan::enabled ? n / 10 : n;
}

template <class Body>
void run_threads(int n, Body body) {
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back(body, i);
  for (auto& t : ts) t.join();
}

void expect_consistent(const stm::statistics& d) {
  EXPECT_EQ(d.attempts(), d.commits() + d.aborts());
}

// ---- bank ----

void bank(int threads, long transfers_per_thread, std::chrono::seconds limit) {
  constexpr int accounts = 1024;
  constexpr long initial = 1000;
  auto acct = std::make_unique<stm::tvar<long>[]>(accounts);
  for (int i = 0; i < accounts; ++i) acct[i].unsafe_store(initial);
  std::atomic<long> bad_audits{0}, audits{0}, done_transfers{0};
  std::atomic<bool> stop{false};
  const auto deadline = steady::now() + limit;
  const auto before = stm::process_statistics();
  std::thread auditor([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      const long total = stm::atomically([&](auto& tx) {
        long s = 0;
        for (int i = 0; i < accounts; ++i) s += tx.read(acct[i]);
        return s;
      });
      if (total != accounts * initial) bad_audits.fetch_add(1);
      audits.fetch_add(1);
    }
  });
  run_threads(threads, [&](int id) {
    std::mt19937_64 rng(id * 7919 + 1);
    long i = 0;
    for (; i < transfers_per_thread; ++i) {
      if ((i & 255) == 0 && steady::now() > deadline) break;
      const int from = static_cast<int>(rng() % accounts);
      const int to = static_cast<int>(rng() % accounts);
      const long amount = static_cast<long>(rng() % 50);
      stm::atomically([&](auto& tx) {
        const long f = tx.read(acct[from]);
        tx.write(acct[from], f - amount);
        tx.write(acct[to], tx.read(acct[to]) + amount);
      });
    }
    done_transfers.fetch_add(i);
  });
  stop.store(true);
  auditor.join();
  long total = 0;
  for (int i = 0; i < accounts; ++i) total += acct[i].unsafe_load();
  EXPECT_EQ(total, accounts * initial) << threads << " threads";
  EXPECT_EQ(bad_audits.load(), 0) << "audits that saw money created or lost";
  EXPECT_GT(audits.load(), 0);
  const auto d = stm::process_statistics() - before;
  expect_consistent(d);
  std::printf("bank %2d threads: %ld transfers, %ld audits; %s\n", threads, done_transfers.load(),
              audits.load(), d.describe().c_str());
}

TEST(StmStress, BankConservesTheTotal) {
  hwsync::test::watchdog dog("BankConservesTheTotal", 240s);
  for (int threads : {2, 4, 8, 16}) bank(threads, scale(2'000'000) / threads, 6s);
}

// ---- opacity ----

struct pair_of_halves {
  long x, y;
};

TEST(StmStress, EveryAttemptSeesTheInvariant) {
  hwsync::test::watchdog dog("EveryAttemptSeesTheInvariant", 120s);
  constexpr long total = 1'000'000;
  constexpr int pairs = 4;
  stm::tvar<long> xs[pairs], ys[pairs];
  stm::tvar<pair_of_halves> wide{pair_of_halves{total, 0}};
  for (int p = 0; p < pairs; ++p) {
    xs[p].unsafe_store(total);
    ys[p].unsafe_store(0);
  }
  std::atomic<long> violations{0}, attempts{0};
  const auto deadline = steady::now() + 8s;
  run_threads(4, [&](int id) {
    std::mt19937 rng(id + 17);
    for (long i = 0; i < scale(400'000); ++i) {
      if ((i & 255) == 0 && steady::now() > deadline) break;
      const int p = static_cast<int>(rng() % pairs);
      const long d = static_cast<long>(rng() % 1000) - 500;
      stm::atomically([&](auto& tx) {
        attempts.fetch_add(1, std::memory_order_relaxed);
        // Inside every attempt, before it can know whether it will commit.
        const long x = tx.read(xs[p]);
        const long y = tx.read(ys[p]);
        if (x + y != total) violations.fetch_add(1, std::memory_order_relaxed);
        const pair_of_halves w = tx.read(wide);
        if (w.x + w.y != total) violations.fetch_add(1, std::memory_order_relaxed);
        // Across pairs too: every pair sums to total at once.
        long sum = 0;
        for (int q = 0; q < pairs; ++q) sum += tx.read(xs[q]) + tx.read(ys[q]);
        if (sum != pairs * total) violations.fetch_add(1, std::memory_order_relaxed);
        tx.write(xs[p], x - d);
        tx.write(ys[p], y + d);
        tx.write(wide, pair_of_halves{w.x - d, w.y + d});
      });
    }
  });
  EXPECT_EQ(violations.load(), 0) << "of " << attempts.load() << " attempts";
  for (int p = 0; p < pairs; ++p) EXPECT_EQ(xs[p].unsafe_load() + ys[p].unsafe_load(), total);
}

// The clock is advanced lazily (GV5, docs/stm.md "The clock"): committers
// with disjoint write sets commit concurrently and may share a version.
// Each thread here owns one pair (so commits overlap and share versions)
// and, in the same transaction, reads every other pair while their owners
// commit. A snapshot that admitted a shared version without seeing every
// committer's locks (say, rv set to the thread's own commit version, which
// the clock may never have held) sees a pair half-moved; the bank test only
// sees it later, as money lost.
TEST(StmStress, EveryAttemptSeesTheInvariantWhileDisjointCommitsShareAVersion) {
  hwsync::test::watchdog dog("EveryAttemptSeesTheInvariantWhileDisjointCommitsShareAVersion", 120s);
  constexpr long total = 1'000'000;
  constexpr int threads = 4;
  struct alignas(64) padded_tvar {
    stm::tvar<long> v;
  };
  padded_tvar xs[threads], ys[threads];
  for (int p = 0; p < threads; ++p) {
    xs[p].v.unsafe_store(total);
    ys[p].v.unsafe_store(0);
  }
  std::atomic<long> violations{0}, attempts{0};
  const auto deadline = steady::now() + 8s;
  run_threads(threads, [&](int id) {
    std::mt19937 rng(id + 29);
    for (long i = 0; i < scale(400'000); ++i) {
      if ((i & 255) == 0 && steady::now() > deadline) break;
      const long d = static_cast<long>(rng() % 1000) - 500;
      stm::atomically([&](auto& tx) {
        attempts.fetch_add(1, std::memory_order_relaxed);
        long sum = 0;
        for (int q = 0; q < threads; ++q) {
          if (q == id) continue;
          // y first: its owner writes x first, and a torn view needs the
          // newer half read after the older one; the pause between the two
          // reads widens the window a commit of pair q can fall into.
          const long y = tx.read(ys[q].v);
          for (int k = 0; k < 32; ++k) hwsync::cpu_relax();
          const long x = tx.read(xs[q].v);
          if (x + y != total) violations.fetch_add(1, std::memory_order_relaxed);
          sum += x + y;
        }
        if (sum != (threads - 1) * total) violations.fetch_add(1, std::memory_order_relaxed);
        tx.write(xs[id].v, tx.read(xs[id].v) - d);
        tx.write(ys[id].v, tx.read(ys[id].v) + d);
      });
    }
  });
  EXPECT_EQ(violations.load(), 0) << "of " << attempts.load() << " attempts";
  for (int p = 0; p < threads; ++p) EXPECT_EQ(xs[p].v.unsafe_load() + ys[p].v.unsafe_load(), total);
}

// ---- integer sets ----

enum class op : std::uint8_t { contains, insert, erase };
struct record {
  std::uint64_t seq;
  op kind;
  long key;
  bool result;
};

template <class Set>
bool apply(Set& s, sets::stm_access& a, op kind, long key) {
  switch (kind) {
    case op::contains:
      return s.contains(a, key);
    case op::insert:
      return s.insert(a, key);
    case op::erase:
      return s.erase(a, key);
  }
  return false;
}

// Every operation also increments one sequence tvar, which orders the
// operations as the STM serialized them; replaying them in that order on a
// std::set must give every result and the final contents.
template <class Set>
void replay_check(const char* name, Set& set, long key_range, int threads, long ops_per_thread) {
  stm::tvar<std::uint64_t> seq{0};
  std::vector<std::vector<record>> logs(threads);
  const auto deadline = steady::now() + 8s;
  run_threads(threads, [&](int id) {
    std::mt19937_64 rng(id * 31 + 5);
    auto& log = logs[id];
    for (long i = 0; i < ops_per_thread; ++i) {
      if ((i & 127) == 0 && steady::now() > deadline) break;
      const long key = static_cast<long>(rng() % key_range);
      const unsigned dice = static_cast<unsigned>(rng() % 10);
      const op kind = dice < 2 ? op::insert : dice < 4 ? op::erase : op::contains;
      stm::atomically([&](stm::transaction& tx) {
        sets::stm_access a{tx};
        const bool r = apply(set, a, kind, key);
        const std::uint64_t n = tx.read(seq);
        tx.write(seq, n + 1);
        tx.on_commit([&log, n, kind, key, r] { log.push_back({n, kind, key, r}); });
      });
    }
  });
  std::vector<record> all;
  for (auto& l : logs) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end(), [](const record& a, const record& b) { return a.seq < b.seq; });
  ASSERT_EQ(all.size(), seq.unsafe_load()) << name;
  std::set<long> model;
  long mismatches = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(all[i].seq, i) << name << ": the sequence has a gap or a duplicate";
    bool expect = false;
    switch (all[i].kind) {
      case op::contains:
        expect = model.count(all[i].key) != 0;
        break;
      case op::insert:
        expect = model.insert(all[i].key).second;
        break;
      case op::erase:
        expect = model.erase(all[i].key) != 0;
        break;
    }
    if (expect != all[i].result) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0) << name << ": results that differ from the sequential replay";
  EXPECT_TRUE(set.check()) << name << ": structure invariant broken";
  EXPECT_EQ(set.keys(), std::vector<long>(model.begin(), model.end())) << name;
  std::printf("%s: %zu operations replayed\n", name, all.size());
}

// Without the sequence tvar (full concurrency): per key, successful inserts
// minus successful erases must equal its presence at the end.
template <class Set>
void net_count_check(const char* name, Set& set, long key_range, int threads, long ops_per_thread) {
  std::vector<std::vector<long>> net(threads, std::vector<long>(key_range, 0));
  const auto deadline = steady::now() + 8s;
  const auto before = stm::process_statistics();
  run_threads(threads, [&](int id) {
    std::mt19937_64 rng(id * 131 + 9);
    for (long i = 0; i < ops_per_thread; ++i) {
      if ((i & 127) == 0 && steady::now() > deadline) break;
      const long key = static_cast<long>(rng() % key_range);
      const unsigned dice = static_cast<unsigned>(rng() % 10);
      const op kind = dice < 1 ? op::insert : dice < 2 ? op::erase : op::contains;
      const bool r = stm::atomically([&](stm::transaction& tx) {
        sets::stm_access a{tx};
        return apply(set, a, kind, key);
      });
      if (r && kind == op::insert) ++net[id][key];
      if (r && kind == op::erase) --net[id][key];
    }
  });
  std::set<long> expected;
  for (long k = 0; k < key_range; ++k) {
    long n = 0;
    for (auto& v : net) n += v[k];
    ASSERT_TRUE(n == 0 || n == 1) << name << ": key " << k << " net " << n;
    if (n == 1) expected.insert(k);
  }
  EXPECT_TRUE(set.check()) << name;
  EXPECT_EQ(set.keys(), std::vector<long>(expected.begin(), expected.end())) << name;
  const auto d = stm::process_statistics() - before;
  expect_consistent(d);
  std::printf("%s (unsequenced): %s\n", name, d.describe().c_str());
}

TEST(StmStress, SortedListMatchesASequentialReplay) {
  hwsync::test::watchdog dog("SortedListMatchesASequentialReplay", 120s);
  for (int threads : {2, 4}) {
    sets::list_set<sets::stm_access> s;
    replay_check("list", s, 256, threads, scale(100'000));
    sets::list_set<sets::stm_access> u;
    net_count_check("list", u, 256, threads, scale(100'000));
  }
}

TEST(StmStress, HashSetMatchesASequentialReplay) {
  hwsync::test::watchdog dog("HashSetMatchesASequentialReplay", 120s);
  for (int threads : {2, 4}) {
    sets::hash_set<sets::stm_access> s(4096);
    replay_check("hash", s, 8192, threads, scale(200'000));
    sets::hash_set<sets::stm_access> u(4096);
    net_count_check("hash", u, 8192, threads, scale(200'000));
  }
}

TEST(StmStress, RedBlackTreeMatchesASequentialReplay) {
  hwsync::test::watchdog dog("RedBlackTreeMatchesASequentialReplay", 120s);
  for (int threads : {2, 4}) {
    sets::rb_tree_set<sets::stm_access> s;
    replay_check("rbtree", s, 1024, threads, scale(200'000));
    sets::rb_tree_set<sets::stm_access> u;
    net_count_check("rbtree", u, 1024, threads, scale(200'000));
  }
}

// ---- retry hand-offs ----

TEST(StmStress, BoundedBufferHandsOffEveryItemOnce) {
  hwsync::test::watchdog dog("BoundedBufferHandsOffEveryItemOnce", 120s);
  constexpr int capacity = 4;
  stm::tvar<long> slots[capacity];
  stm::tvar<int> head{0}, count{0};
  const long items = scale(40'000);
  constexpr int producers = 2, consumers = 2;
  std::vector<std::vector<long>> got(consumers);
  std::atomic<long> taken{0};
  std::vector<std::thread> ts;
  const auto before = stm::process_statistics();
  for (int p = 0; p < producers; ++p) {
    ts.emplace_back([&, p] {
      for (long i = p; i < items; i += producers) {
        stm::atomically([&](auto& tx) {
          const int c = tx.read(count);
          if (c == capacity) tx.retry();
          tx.write(slots[(tx.read(head) + c) % capacity], i);
          tx.write(count, c + 1);
        });
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    ts.emplace_back([&, c] {
      for (;;) {
        // The last items: stop when everything has been taken, by waiting
        // on either the buffer or the taken count (or_else).
        const long v = stm::atomically(stm::or_else(
            [&](stm::transaction& tx) -> long {
              const int n = tx.read(count);
              if (n == 0) tx.retry();
              const int h = tx.read(head);
              tx.write(head, (h + 1) % capacity);
              tx.write(count, n - 1);
              return tx.read(slots[h]);
            },
            [&](stm::transaction& tx) -> long {
              if (taken.load() < items) tx.retry();
              return -1;
            }));
        if (v < 0) break;
        got[c].push_back(v);
        if (taken.fetch_add(1) + 1 == items) {
          // Wake the other consumer: it may be parked on the empty buffer.
          stm::atomically([&](auto& tx) { tx.write(count, tx.read(count)); });
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  std::vector<long> all;
  for (auto& g : got) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(static_cast<long>(all.size()), items);
  for (long i = 0; i < items; ++i) ASSERT_EQ(all[i], i);
  const auto d = stm::process_statistics() - before;
  std::printf("bounded buffer: %s\n", d.describe().c_str());
}

// ---- starvation ----

// Privatization through quiesce() (docs/stm.md, "Privatization"): writers
// increment the counter of whichever cell is linked; the privatizer unlinks
// the current cell in a transaction, calls quiesce() and from then on owns
// it. A writer that validated its read of the link before the unlink may
// still be writing back; quiesce() must wait for it, so the privatized
// counter never changes after quiesce() returns.
TEST(StmStress, QuiesceWaitsForWriteBacksToPrivatizedData) {
  hwsync::test::watchdog dog("QuiesceWaitsForWriteBacksToPrivatizedData", 120s);
  struct cell {
    stm::tvar<long> count{0};
  };
  // A late write-back needs a writer preempted between its validation and
  // its write-back; every privatized cell is checked again at the end, so
  // one that lands any time before then is seen.
  const int cells = static_cast<int>(scale(100'000));
  auto pool = std::make_unique<cell[]>(static_cast<std::size_t>(cells));
  std::vector<long> seen(static_cast<std::size_t>(cells), -1);
  stm::tvar<cell*> linked{&pool[0]};
  std::atomic<bool> stop{false};
  std::atomic<long> increments{0};
  const auto deadline = steady::now() + 8s;
  int privatized = 0;
  std::thread privatizer([&] {
    for (int i = 1; i < cells && steady::now() < deadline; ++i) {
      cell* const next = &pool[i];
      cell* const mine = stm::atomically([&](auto& tx) {
        cell* const c = tx.read(linked);
        tx.write(linked, next);
        return c;
      });
      stm::quiesce();
      seen[static_cast<std::size_t>(mine - pool.get())] = mine->count.unsafe_load();
      ++privatized;
    }
    stop.store(true);
  });
  run_threads(3, [&](int) {
    while (!stop.load(std::memory_order_relaxed)) {
      stm::atomically([&](auto& tx) {
        cell* const c = tx.read(linked);
        tx.write(c->count, tx.read(c->count) + 1);
      });
      increments.fetch_add(1, std::memory_order_relaxed);
    }
  });
  privatizer.join();
  long changed = 0, total = 0;
  for (int i = 0; i < cells; ++i) {
    const long now = pool[static_cast<std::size_t>(i)].count.unsafe_load();
    total += now;
    if (seen[static_cast<std::size_t>(i)] >= 0 && now != seen[static_cast<std::size_t>(i)])
      ++changed;
  }
  EXPECT_EQ(changed, 0) << "of " << privatized << " cells privatized were written after quiesce()";
  EXPECT_EQ(total, increments.load());
  std::printf("quiesce: %d cells privatized, %ld increments\n", privatized, increments.load());
}

TEST(StmStress, ALongTransactionCommitsAgainstShortWriters) {
  hwsync::test::watchdog dog("ALongTransactionCommitsAgainstShortWriters", 120s);
  constexpr int n = 256;
  auto vars = std::make_unique<stm::tvar<long>[]>(n);
  stm::tvar<long> long_commits{0};
  std::atomic<bool> stop{false};
  std::atomic<long> short_commits{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(w + 3);
      while (!stop.load(std::memory_order_relaxed)) {
        const int i = static_cast<int>(rng() % n);
        stm::atomically([&](auto& tx) { tx.write(vars[i], tx.read(vars[i]) + 1); });
        short_commits.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  // The long transactions run while all four writers are committing.
  while (short_commits.load() < 4000) std::this_thread::yield();
  const auto before = stm::process_statistics();
  const long short_before = short_commits.load();
  constexpr int rounds = 10;
  long attempts = 0;
  for (int r = 0; r < rounds; ++r) {
    stm::atomically([&](auto& tx) {
      ++attempts;
      long sum = 0;
      for (int i = 0; i < n; ++i) {
        sum += tx.read(vars[i]);
        // Long enough that the writers commit many times during one attempt.
        for (int k = 0; k < 200; ++k) hwsync::cpu_relax();
      }
      tx.write(long_commits, tx.read(long_commits) + 1);
      tx.write(vars[sum % n], tx.read(vars[sum % n]) + 1);
    });
  }
  stop.store(true);
  for (auto& t : writers) t.join();
  EXPECT_EQ(long_commits.unsafe_load(), rounds);
  const long short_during = short_commits.load() - short_before;
  EXPECT_GT(short_during, 0) << "the writers did not run beside the long transactions";
  const auto d = stm::process_statistics() - before;
  std::printf("starvation: %d long commits in %ld attempts, %ld short commits meanwhile; %s\n",
              rounds, attempts, short_during, d.describe().c_str());
}

// ---- the hybrid path under the policy emulation ----

TEST(StmStress, BankAndSetsThroughTheEmulatedHardwarePath) {
  hwsync::test::watchdog dog("BankAndSetsThroughTheEmulatedHardwarePath", 240s);
  stm::tuning t;
  t.single_thread_mode = false;
  stm::set_tuning(t);
  {
    hwsync::htm::policy_emulation_scope emu;  // the default mix of injected aborts
    const auto before = stm::process_statistics();
    bank(4, scale(200'000), 6s);
    sets::rb_tree_set<sets::stm_access> s;
    replay_check("rbtree (emulated hardware)", s, 1024, 4, scale(50'000));
    const auto d = stm::process_statistics() - before;
    EXPECT_GT(d.hardware_commits, 0u) << d.describe();
    EXPECT_GT(d.hw_aborts_conflict, 0u) << d.describe();
    EXPECT_GT(d.hw_aborts_capacity, 0u) << d.describe();
    EXPECT_GT(d.update_commits + d.read_only_commits, 0u) << "software and hardware both ran";
  }
  stm::set_tuning(stm::tuning{});
}

}  // namespace
