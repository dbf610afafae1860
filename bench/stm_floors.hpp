// bench/stm_floors.hpp — the disjoint bank written by hand, without an STM,
// so that the disjoint target (two threads on disjoint tvars ≥ 1.6× one
// thread) can be read against floors measured in the same run:
//
//   unsynchronized         the transfer and nothing else (correct here only
//                          because each thread owns its accounts): the
//                          loop's own cost
//   undo_log_by_hand       what the STM's single-thread mode does per
//                          transfer, without atomically(): writes in
//                          place, an undo record per write, a commit that
//                          drops the records
//   tl2_by_hand            what the STM's logged path does per transfer,
//                          without atomically(): TL2 with the same GV5
//                          clock, versioned-lock words, validated reads,
//                          commit-time locking with one CAS per written
//                          word, write-back and unlock with version
//                          clock + 1; the next snapshot is that clock value
//   tl2_tagged_by_hand     the same with committer tags in the words, so
//                          that a thread takes its own last commits without
//                          extending (a change the STM does not make; see
//                          docs/stm.md, "Fifth round")
//   per_account_spinlocks  fine-grained locking: one atomic exchange per
//                          account and a release store
//
// Each has transfer(from, to, amount) and total(). They only need to be
// right for the disjoint scenario (each thread on its own accounts) and
// for the bank (any two accounts); none of them is a general STM.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "hwsync/spin.hpp"

namespace hwsync::bench::stm_floors {

struct unsynchronized {
  static constexpr const char* id = "unsynchronized";
  std::vector<long> a;
  explicit unsynchronized(int accounts) : a(static_cast<std::size_t>(accounts), 1000) {}
  void transfer(int from, int to, long amount) {
    // Relaxed atomics, not plain ints: the compiler may not fold the loop.
    std::atomic_ref<long> f(a[static_cast<std::size_t>(from)]);
    f.store(f.load(std::memory_order_relaxed) - amount, std::memory_order_relaxed);
    std::atomic_ref<long> t(a[static_cast<std::size_t>(to)]);
    t.store(t.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
  }
  long total() const {
    long s = 0;
    for (long v : a) s += v;
    return s;
  }
};

// The single-thread mode's steps: an undo record (address, old value) per
// write into a per-thread log, the write in place, the log dropped at commit.
struct undo_log_by_hand {
  static constexpr const char* id = "undo_log_by_hand";
  struct record {
    long* word;
    long old;
  };
  std::vector<long> a;
  explicit undo_log_by_hand(int accounts) : a(static_cast<std::size_t>(accounts), 1000) {}
  void transfer(int from, int to, long amount) {
    thread_local std::vector<record> undo = [] {
      std::vector<record> v;
      v.reserve(64);
      return v;
    }();
    write(undo, from, read(from) - amount);
    write(undo, to, read(to) + amount);
    undo.clear();  // commit
  }
  long total() const {
    long s = 0;
    for (long v : a) s += v;
    return s;
  }

 private:
  long read(int i) {
    return std::atomic_ref<long>(a[static_cast<std::size_t>(i)]).load(std::memory_order_relaxed);
  }
  void write(std::vector<record>& undo, int i, long v) {
    long& w = a[static_cast<std::size_t>(i)];
    std::atomic_ref<long> r(w);
    undo.push_back({&w, r.load(std::memory_order_relaxed)});
    r.store(v, std::memory_order_relaxed);
  }
};

// TL2 as the STM's logged path runs it, for exactly this transaction (two
// reads, two writes, the read set equal to the write set) and nothing else:
// no atomically() frame, no modes, no redo log beyond two locals, no
// statistics, no retry or serial mode. A word per account: bit 0 locked,
// bits 1-8 a committer tag, bits 9-63 the version of its last commit.
//
// Tagged = false (tl2_by_hand): the STM's protocol; the tag is always 0.
// Tagged = true (tl2_tagged_by_hand): the change docs/stm.md sketches
// ("Fifth round"): each thread tags its commits, and a read that meets a
// word it committed itself at version rv + 1 takes it without extending,
// so that disjoint writers never write the shared clock. Measured here to
// see what that would buy; the STM does not do it.
template <bool Tagged>
class tl2_floor {
 public:
  static constexpr const char* id = Tagged ? "tl2_tagged_by_hand" : "tl2_by_hand";
  explicit tl2_floor(int accounts)
      : words_(std::make_unique<std::atomic<std::uint64_t>[]>(static_cast<std::size_t>(accounts))),
        values_(std::make_unique<std::atomic<long>[]>(static_cast<std::size_t>(accounts))),
        accounts_(accounts) {
    for (int i = 0; i < accounts; ++i) values_[static_cast<std::size_t>(i)].store(1000);
  }

  void transfer(int from, int to, long amount) {
    // The thread's snapshot, kept between transactions as the STM keeps it
    // (any clock value this thread has seen is a valid rv).
    thread_local snapshot mine;
    if (mine.generation != generation_)
      mine = {generation_, clock_.load(std::memory_order_seq_cst), new_tag()};
    std::atomic<std::uint64_t>& sf = words_[idx(from)];
    std::atomic<std::uint64_t>& st = words_[idx(to)];
    for (;;) {
      // Reads validated one by one against rv; a newer version advances
      // the clock to it and revalidates what was read before (TL2's
      // extension), as the STM does.
      std::uint64_t wf, wt;
      long vf, vt;
      if (!read(sf, values_[idx(from)], wf, vf)) continue;
      if (newer(wf, mine)) mine.rv = advance_clock(version(wf));
      if (!read(st, values_[idx(to)], wt, vt)) continue;
      if (newer(wt, mine)) {
        mine.rv = advance_clock(version(wt));
        if (sf.load(std::memory_order_seq_cst) != wf) continue;
      }
      // Commit: lock the written words (the expected values are the words
      // read, so a success also validates the reads), load the clock, write
      // back, unlock with version clock + 1.
      if (!sf.compare_exchange_strong(wf, wf | 1, std::memory_order_seq_cst)) continue;
      if (from != to && !st.compare_exchange_strong(wt, wt | 1, std::memory_order_seq_cst)) {
        sf.store(wf, std::memory_order_release);
        continue;
      }
      const std::uint64_t wv = clock_.load(std::memory_order_seq_cst) + 1;
      if (from == to) {
        values_[idx(from)].store(vf, std::memory_order_release);
      } else {
        values_[idx(from)].store(vf - amount, std::memory_order_release);
        values_[idx(to)].store(vt + amount, std::memory_order_release);
        st.store(unlocked(wv, mine.tag), std::memory_order_release);
      }
      sf.store(unlocked(wv, mine.tag), std::memory_order_release);
      mine.rv = wv - 1;
      return;
    }
  }

  long total() const {
    long s = 0;
    for (int i = 0; i < accounts_; ++i) s += values_[idx(i)].load();
    return s;
  }

 private:
  struct snapshot {
    std::uint64_t generation = 0;
    std::uint64_t rv = 0;
    std::uint64_t tag = 0;  // tagged: 1 to 255, or 0 (untagged) after 255 snapshots
  };
  static std::size_t idx(int i) { return static_cast<std::size_t>(i); }
  static std::uint64_t version(std::uint64_t w) { return w >> 9; }
  // A tag for a thread's first transfer on an instance (a floor does not
  // bother to hand tags back).
  static std::uint64_t new_tag() {
    if constexpr (!Tagged) {
      return 0;
    } else {
      static std::atomic<std::uint64_t> next{1};
      const std::uint64_t t = next.fetch_add(1, std::memory_order_relaxed);
      return t < 256 ? t : 0;
    }
  }
  static std::uint64_t unlocked(std::uint64_t version, std::uint64_t tag) {
    return version << 9 | tag << 1;
  }
  // Whether a read's word needs an extension: a version above rv, except,
  // tagged, this thread's own commit at rv + 1.
  static bool newer(std::uint64_t w, const snapshot& mine) {
    if (version(w) <= mine.rv) return false;
    return !(Tagged && mine.tag != 0 && w == unlocked(mine.rv + 1, mine.tag));
  }

  // A consistent (unlocked, unchanged around the value) read; false after
  // waiting out a lock held by a committer (never in the disjoint scenario).
  static bool read(std::atomic<std::uint64_t>& s, std::atomic<long>& v, std::uint64_t& word,
                   long& value) {
    word = s.load(std::memory_order_seq_cst);
    if ((word & 1) == 0) {
      value = v.load(std::memory_order_acquire);
      if (s.load(std::memory_order_relaxed) == word) return true;
    }
    while (s.load(std::memory_order_relaxed) & 1) yield_cpu();
    return false;
  }

  std::uint64_t advance_clock(std::uint64_t to) {
    std::uint64_t c = clock_.load(std::memory_order_seq_cst);
    while (c < to && !clock_.compare_exchange_weak(c, to, std::memory_order_seq_cst)) {
    }
    return c < to ? to : c;
  }

  // A thread's snapshot belongs to one instance: a new instance (perhaps
  // at a freed one's address) starts with a clock at 0.
  static inline std::atomic<std::uint64_t> generations_{0};
  const std::uint64_t generation_ = ++generations_;
  alignas(64) std::atomic<std::uint64_t> clock_{0};
  alignas(64) std::unique_ptr<std::atomic<std::uint64_t>[]> words_;
  std::unique_ptr<std::atomic<long>[]> values_;
  int accounts_;
};
using tl2_by_hand = tl2_floor<false>;
using tl2_tagged_by_hand = tl2_floor<true>;

// Hand-written fine-grained locking: a spin lock word per account, taken
// with one atomic exchange and released with a plain store. No logs, no
// validation, no clock: the floor for any design that locks what it writes
// (TL2's commit takes the same two locked instructions per transfer).
struct per_account_spinlocks {
  static constexpr const char* id = "per_account_spinlocks";
  std::vector<long> a;
  std::unique_ptr<std::atomic<std::uint64_t>[]> locks;
  explicit per_account_spinlocks(int accounts)
      : a(static_cast<std::size_t>(accounts), 1000),
        locks(std::make_unique<std::atomic<std::uint64_t>[]>(static_cast<std::size_t>(accounts))) {}
  void acquire(int i) {
    std::atomic<std::uint64_t>& l = locks[static_cast<std::size_t>(i)];
    while (l.exchange(1, std::memory_order_acquire) != 0) {
      // Never taken in the disjoint scenarios; elsewhere, yield rather
      // than spin against a preempted holder.
      while (l.load(std::memory_order_relaxed) != 0) yield_cpu();
    }
  }
  void release(int i) { locks[static_cast<std::size_t>(i)].store(0, std::memory_order_release); }
  void transfer(int from, int to, long amount) {
    // In index order: two transfers in opposite directions cannot deadlock.
    const int lo = from < to ? from : to;
    const int hi = from < to ? to : from;
    acquire(lo);
    if (hi != lo) acquire(hi);
    a[static_cast<std::size_t>(from)] -= amount;
    a[static_cast<std::size_t>(to)] += amount;
    if (hi != lo) release(hi);
    release(lo);
  }
  long total() const {
    long s = 0;
    for (long v : a) s += v;
    return s;
  }
};

}  // namespace hwsync::bench::stm_floors
