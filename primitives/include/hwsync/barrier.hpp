// hwsync/barrier.hpp — hwsync::barrier<CompletionFunction>, a reusable
// barrier whose phases repeat indefinitely, with two arrival algorithms.
//
// Contract
//   Drop-in for std::barrier<CompletionFunction>: arrive(n) returning an
//   arrival_token, wait(token&&), arrive_and_wait(), arrive_and_drop(),
//   max(), with the same meaning. Plus timed waits, which std::barrier
//   lacks: wait_for(token, rel) and wait_until(token, abs) return true once
//   the token's phase has completed, false when the time ran out first; the
//   token stays usable, so a caller can wait again.
//   Completion    The completion function runs exactly once per phase, on
//                 the thread whose arrival completed the phase (inside its
//                 arrive()), after every arrival of the phase and before
//                 any waiter of the phase is released. arrive_and_drop()
//                 lowers the parties of every later phase by one (and
//                 arrives once in the current one). CompletionFunction must
//                 be nothrow-invocable as an lvalue, as std requires.
//   Phases        A 32-bit phase number; a token records the phase its
//                 arrival counted in, and a wait compares it with the
//                 current phase for equality only. A token is good for its
//                 own phase and the one after it (std's precondition), so
//                 wrap-around after 2^32 phases never confuses a wait.
//   Ordering      Everything a thread wrote before its arrive() is visible
//                 to the completion function and, after their waits return,
//                 to every thread that waited on that phase; everything the
//                 completion function wrote is visible to them too.
//   Blocking      As hwsync::latch (detail::await_release): a waiter
//                 spins briefly while the missing arrivals could be running
//                 on the other cores (at most one spinner per spare core),
//                 then yields its CPU up to 16 times, handing it to threads
//                 that have yet to arrive, then parks on the high half of the
//                 state word, the phase number, which the completer changes
//                 once and wakes once with FUTEX_WAKE(all), and only if
//                 someone parked. No busy waiting when threads outnumber
//                 the cores: spinning stops while arrivals wait for a CPU,
//                 and the yields are bounded.
//   Algorithms    Chosen by the number of parties that can arrive at
//                 once, min(parties, online CPUs) (algorithm_for(); tree
//                 from 16); the constructor overload taking a
//                 barrier_algorithm forces one, for tests and benchmarks;
//                 algorithm() tells which runs.
//                 central         one fetch_sub per arrival on the state
//                                 word: a phase-counting (sense-reversing,
//                                 with a 32-bit sense) centralized barrier.
//                                 Cheapest while few threads arrive at once.
//                 combining_tree  Mellor-Crummey & Scott's combining tree
//                                 (1991), shaped by hwsync/topology.hpp:
//                                 arrivals count in small leaves (fan-in 4),
//                                 the arrival that fills a leaf counts one
//                                 in its parent, and so on; the one that
//                                 fills the root completes the phase. Leaves
//                                 are grouped PU first, then core, then each
//                                 shared cache level, then NUMA node and
//                                 package, so threads that share a core, a
//                                 cache or a node combine before their
//                                 counts cross to another one. Spreads the
//                                 arrivals of many threads over many lines.
//   Leaves        std's API has no thread ids, so an arriving thread picks
//                 its leaf from the CPU it runs on (topology::current_pu(),
//                 one rseq read): one of that PU's leaves, chosen by a hash
//                 of the thread so that threads sharing a PU spread over its
//                 leaves; where the CPU is unknown (-1), a leaf by the hash
//                 alone. A full leaf (its share of this phase's arrivals
//                 already counted) passes the arrival on to the next leaf in
//                 topology order, wrapping around. Correctness never depends
//                 on the mapping: the leaves' capacities add up to the
//                 phase's parties, so every arrival finds room somewhere,
//                 every leaf fills exactly once and the root exactly once per
//                 phase, whichever threads land where and however the
//                 scheduler migrates them. Only contention depends on it.
//   Timeouts      steady_clock deadlines wait on CLOCK_MONOTONIC,
//                 system_clock ones on CLOCK_REALTIME, other clocks in
//                 steady_clock slices (detail::wait_until_on). A deadline
//                 already past looks once.
//   Size          central: 64 bytes (the state word on its own cache line,
//                 the next phase's parties, the algorithm, the completion
//                 function). combining_tree: the same plus one 64-byte line
//                 per tree node, allocated by the constructor (about
//                 parties / 3 nodes; at most 64 leaves per PU, beyond which
//                 leaves take more than 4 arrivals each).
//   Limits        max() = 2^31 - 1 parties.
//   Misuse        Undefined (as std) in release builds; with
//                 HWSYNC_DEBUG_CHECKS an abort naming the barrier and the
//                 thread: an expected count below 0 or above max(),
//                 arrive(n) with n < 1 or larger than the arrivals left in
//                 the phase (arrive_and_drop() counts as arrive(1)), and a
//                 wait with a token of another barrier or of a phase that is
//                 neither the current one nor the one before (checked when
//                 the wait starts).
//   Constructor   Throws std::bad_alloc, and, for combining_tree, whatever
//                 topology::system() throws (a malformed HWLOC_SYNTHETIC).
//
// The state word (64 bits; x86-64 is little-endian, so the high half is the
// futex word at address + 4)
//   bits 0-30   LEFT     central: arrivals still expected in this phase
//                        (always 0 for combining_tree, where the tree counts)
//   bit 31      PARKED   a waiter parked (or is about to) in this phase
//   bits 32-63  PHASE    the current phase number, modulo 2^32
//
//   state                 meaning                     next transition
//   P | L*n               phase P, n arrivals to go   arrive(k): fetch_sub k (central)
//   P | L*n | PARKED      same, waiters parked        same
//   P | 0 (| PARKED)      phase P complete, its       the completer runs the completion,
//                         completion running            then exchanges in (P+1) | L*parties
//                                                       and, if PARKED was set, wakes all
//
//   Invariants: PHASE changes only by the completer's exchange, which also
//   clears PARKED; a waiter sets PARKED by a CAS on a word whose PHASE is
//   its token's and sleeps only while the high half still equals it, so the
//   exchange either sees PARKED and wakes the sleeper, or came first and the
//   sleeper's futex wait returns at once (lost wake-ups are impossible). No
//   arrival of phase P+1 can happen before the exchange: LEFT is 0 (central)
//   or every leaf is full (tree), and an arrival then is misuse.
//
// Combining-tree nodes (detail::combining_tree, one cache line each)
//   arrived    arrivals counted (leaf) or children filled (inner) this phase
//   capacity   a leaf: its share of the phase's parties (0: unused after
//              drops); an inner node: its children with capacity > 0
//   A node is full when arrived == capacity. The arrival (CAS) that fills a
//   leaf adds one to its parent (fetch_add); the one that fills the root
//   completes the phase. The completer zeroes every `arrived` (and, after
//   drops, recomputes the capacities) before it publishes the next phase;
//   nothing else touches the nodes then, since all of the phase's arrivals
//   have been counted.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "hwsync/config.hpp"
#include "hwsync/debug_checks.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/mutex.hpp"  // detail::wait_until_on, the one clock dispatch of timed waits
#include "hwsync/spin.hpp"   // spinner_slots(): the online CPUs, less one

namespace hwsync {

class topology;

enum class barrier_algorithm : std::uint8_t { central, combining_tree };

namespace detail {

struct barrier_no_completion {
  void operator()() const noexcept {}
};

// The topology-shaped combining tree (see the header comment). Built for a
// topology and a number of parties; arrive() and reset() are the algorithm,
// the rest describes the shape for tests.
class combining_tree {
 public:
  static constexpr unsigned fan_in = 4;
  static constexpr unsigned max_leaves_per_pu = 64;

  // t null: no topology (one PU; leaves chosen by the thread hash).
  combining_tree(const topology* t, std::uint32_t parties);
  ~combining_tree();
  combining_tree(const combining_tree&) = delete;
  combining_tree& operator=(const combining_tree&) = delete;

  // Counts n arrivals of the calling thread, starting at its leaf. Returns
  // true when they filled the root. `unplaced`: arrivals that found every
  // leaf full (misuse: more arrivals than the phase had left).
  bool arrive(std::uint32_t n, std::uint32_t& unplaced) noexcept;
  // Arrivals the leaves still have room for this phase (a hint for waiters:
  // read without a snapshot).
  std::uint64_t missing_arrivals() const noexcept;
  // Between phases, by the completer only: zeroes the counts and, when
  // `parties` differs from the last phase's, recomputes the capacities.
  void reset(std::uint32_t parties) noexcept;

  // Shape, for tests and descriptions. Nodes are numbered leaves first
  // (0..leaves()-1, in topology order), then inner nodes; the root is last.
  std::size_t leaves() const noexcept { return leaves_; }
  std::size_t nodes() const noexcept { return node_count_; }
  int parent(std::size_t node) const noexcept;  // -1 for the root
  std::uint32_t capacity(std::size_t node) const noexcept;
  unsigned pu_of_leaf(std::size_t leaf) const noexcept;
  // The leaf a thread with this hash, running on `pu` (-1: unknown), starts at.
  std::size_t home_leaf(int pu, std::uint64_t thread_hash) const noexcept;
  // "8 leaves (4 per PU) under 3 inner nodes, depth 2, capacities 4 ...".
  std::string describe() const;

 private:
  struct node;
  void set_capacities(std::uint32_t parties) noexcept;
  bool climb(std::size_t node) noexcept;

  const topology* topology_;
  std::size_t leaves_ = 0;
  std::size_t node_count_ = 0;
  unsigned pus_ = 1;
  std::uint32_t parties_ = 0;
  std::unique_ptr<node[]> nodes_;
  std::vector<std::uint32_t> first_leaf_of_pu_;  // PU u's leaves: [first[u], first[u+1])
  std::vector<std::uint32_t> pu_of_leaf_;
};

// The state word and both algorithms; barrier<F> adds the completion
// function and the token type. Out of line where it is not a fast path.
class barrier_core {
 public:
  static constexpr std::ptrdiff_t max = (std::ptrdiff_t{1} << 31) - 1;
  static constexpr std::uint64_t left_mask = (std::uint64_t{1} << 31) - 1;
  static constexpr std::uint64_t parked = std::uint64_t{1} << 31;
  static constexpr unsigned phase_shift = 32;
  // The combining tree is picked when at least this many parties can arrive
  // at the same time: min(parties, online CPUs). Measured (docs/barrier.md):
  // on a 2-core machine, where at most 2 arrive at once, central was faster
  // at every party count from 8 to 128, so the choice cannot rest on the
  // party count alone. 16 concurrent arrivals is a judgement, not a
  // measurement: where tens of threads hit one line at once the tree's extra
  // levels pay; a many-core host has to confirm it (barrier/threshold).
  static constexpr std::ptrdiff_t tree_threshold = 16;

  static barrier_algorithm algorithm_for(std::ptrdiff_t parties, unsigned cpus) noexcept {
    const std::ptrdiff_t at_once = parties < std::ptrdiff_t{cpus} ? parties : std::ptrdiff_t{cpus};
    return at_once >= tree_threshold ? barrier_algorithm::combining_tree
                                     : barrier_algorithm::central;
  }
  static barrier_algorithm algorithm_for(std::ptrdiff_t parties) noexcept {
    return algorithm_for(parties, spinner_slots() + 1);
  }

  // Misuse found here is reported at the core's address: the barrier's own,
  // since the core is its first member.
  barrier_core(std::ptrdiff_t expected, barrier_algorithm a);
  ~barrier_core();
  barrier_core(const barrier_core&) = delete;
  barrier_core& operator=(const barrier_core&) = delete;

  // Counts n arrivals in the current phase and returns that phase. `last`:
  // they completed it; the caller runs the completion, then finish_phase().
  std::uint32_t arrive(std::ptrdiff_t n, bool& last, const void* self) noexcept {
    if constexpr (debug::checks_enabled) {
      if (n < 1 || n > max) bad_arrival(self, n, -1);
    }
    if (algorithm_ != barrier_algorithm::central) return arrive_tree(n, last, self);
    const std::uint64_t old =
        state_.fetch_sub(static_cast<std::uint64_t>(n), std::memory_order_acq_rel);
    const auto left = static_cast<std::ptrdiff_t>(old & left_mask);
    if constexpr (debug::checks_enabled) {
      if (n > left) bad_arrival(self, n, left);
    }
    last = left == n;
    return static_cast<std::uint32_t>(old >> phase_shift);
  }

  // arrive_and_drop(): the parties of later phases, then one arrival.
  void drop(const void* self) noexcept;

  // Publishes phase + 1 (by the thread whose arrival completed `phase`,
  // after the completion function) and wakes the parked waiters.
  void finish_phase(std::uint32_t phase) noexcept;

  // true once `phase` is over; d null: one look, else waits until *d.
  bool wait(std::uint32_t phase, const futex::deadline* d, const void* self) const noexcept {
    const std::uint64_t s = state_.load(std::memory_order_acquire);
    if constexpr (debug::checks_enabled) check_token(s, phase, self);
    if (static_cast<std::uint32_t>(s >> phase_shift) != phase) return true;
    if (d == nullptr) return false;
    return park_until(phase, *d);
  }

  barrier_algorithm algorithm() const noexcept { return algorithm_; }
  std::uint32_t phase() const noexcept {
    return static_cast<std::uint32_t>(state_.load(std::memory_order_acquire) >> phase_shift);
  }
  const combining_tree* tree() const noexcept { return tree_.get(); }

  [[noreturn]] static void bad_token_owner(const void* self) noexcept;

 private:
  std::uint32_t arrive_tree(std::ptrdiff_t n, bool& last, const void* self) noexcept;
  bool park_until(std::uint32_t phase, const futex::deadline& d) const noexcept;
  std::uint64_t missing_arrivals(std::uint64_t s) const noexcept;
  static void check_token(std::uint64_t s, std::uint32_t phase, const void* self) noexcept;
  [[noreturn]] static void bad_arrival(const void* self, std::ptrdiff_t n,
                                       std::ptrdiff_t left) noexcept;

  // The futex word is the high half of state_. Only the kernel reads it as
  // such; user space touches the word only as a whole.
  const futex::word& phase_word() const noexcept {
    return *reinterpret_cast<const futex::word*>(reinterpret_cast<const char*>(&state_) + 4);
  }

  alignas(64) mutable std::atomic<std::uint64_t> state_;
  std::atomic<std::uint32_t> parties_;  // of the next phase (drops lower it)
  barrier_algorithm algorithm_;
  std::unique_ptr<combining_tree> tree_;
};

}  // namespace detail

template <class CompletionFunction = detail::barrier_no_completion>
class barrier {
  static_assert(std::is_nothrow_invocable_v<CompletionFunction&>,
                "hwsync::barrier: the completion function must be nothrow-invocable as an "
                "lvalue (as std::barrier requires)");

 public:
  class arrival_token {
   public:
    arrival_token(arrival_token&&) noexcept = default;
    arrival_token& operator=(arrival_token&&) noexcept = default;

   private:
    friend class barrier;
    struct no_owner {
      explicit no_owner(const barrier*) noexcept {}
    };
    using owner_t = std::conditional_t<debug::checks_enabled, const barrier*, no_owner>;
    arrival_token(std::uint32_t phase, const barrier* owner) noexcept
        : phase_(phase), owner_(owner) {}
    std::uint32_t phase_;
    [[no_unique_address]] owner_t owner_;
  };

  static constexpr std::ptrdiff_t max() noexcept { return detail::barrier_core::max; }

  explicit barrier(std::ptrdiff_t expected, CompletionFunction f = CompletionFunction())
      : barrier(expected, detail::barrier_core::algorithm_for(expected), std::move(f)) {}
  // Forces an algorithm (tests, benchmarks).
  barrier(std::ptrdiff_t expected, barrier_algorithm algorithm,
          CompletionFunction f = CompletionFunction())
      : core_(expected, algorithm), completion_(std::move(f)) {}
  barrier(const barrier&) = delete;
  barrier& operator=(const barrier&) = delete;

  [[nodiscard]] arrival_token arrive(std::ptrdiff_t n = 1) noexcept {
    bool last = false;
    const std::uint32_t phase = core_.arrive(n, last, this);
    if (last) complete(phase);
    return arrival_token(phase, this);
  }

  void wait(arrival_token&& t) const noexcept {
    check_owner(t);
    const futex::deadline never = futex::deadline::never();
    core_.wait(t.phase_, &never, this);
  }

  void arrive_and_wait() noexcept { wait(arrive()); }

  void arrive_and_drop() noexcept {
    core_.drop(this);
    bool last = false;
    const std::uint32_t phase = core_.arrive(1, last, this);
    if (last) complete(phase);
  }

  // true: the token's phase completed; false: rel passed first (the token
  // stays good for another wait).
  template <class Rep, class Period>
  bool wait_for(const arrival_token& t, const std::chrono::duration<Rep, Period>& rel) const {
    return wait_until(t, detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool wait_until(const arrival_token& t,
                  const std::chrono::time_point<Clock, Duration>& abs) const {
    check_owner(t);
    return detail::wait_until_on(
        abs, [&](const futex::deadline* d) { return core_.wait(t.phase_, d, this); });
  }

  barrier_algorithm algorithm() const noexcept { return core_.algorithm(); }
  // The tree's shape (null for central), for tests and benchmarks.
  const detail::combining_tree* tree() const noexcept { return core_.tree(); }

 private:
  void complete(std::uint32_t phase) noexcept {
    completion_();
    core_.finish_phase(phase);
  }
  void check_owner(const arrival_token& t) const noexcept {
    if constexpr (debug::checks_enabled) {
      if (t.owner_ != this) detail::barrier_core::bad_token_owner(this);
    }
  }

  detail::barrier_core core_;
  [[no_unique_address]] CompletionFunction completion_;
};

}  // namespace hwsync
