// hwsync/numa_mutex.hpp — hwsync::numa_mutex, a NUMA-aware parking mutex:
// lock cohorting (Dice, Marathe & Shavit, PPoPP 2012) over futex words.
//
// Contract
//   Drop-in for std::mutex / std::timed_mutex: Lockable and TimedLockable,
//   so std::lock_guard, std::unique_lock and std::scoped_lock work unchanged.
//   Algorithm     A global lock G (the word below) plus one local lock per
//                 NUMA node. The uncontended path takes G alone. A thread
//                 that finds G taken queues on its node's local lock; the
//                 thread holding a node's local lock is that node's head and
//                 waits for G. A holder that leaves with threads of its own
//                 node queued passes G to them with the local lock (a cohort
//                 hand-off: G's cache line and the data it protects stay on
//                 the node) until the node's turn is over (the bound below).
//                 A holder that leaves with nobody of its node queued but
//                 turn left, while other nodes' heads wait, keeps G for its
//                 node (KEPT): the node's next thread takes it without a
//                 hand-off. At the end of a turn the holder releases G, and
//                 a release with heads waiting hands G directly to the next
//                 waiting node in round-robin order after the releaser's
//                 own; a turn kept past its end is handed on the same way by
//                 a waiting head (heads sleep no later than the turn's end).
//   Fairness      Between nodes, a bound: once a node's head is waiting for
//                 G, each other node gets at most one turn before it, so at
//                 most (nodes - 1) * (local_handoff_bound + 1) acquisitions
//                 by other nodes, lasting at most (nodes - 1) * max_turn
//                 plus one critical section each, precede its own. Within a
//                 node, as hwsync::mutex (the local lock is one): barging
//                 with eventual hand-off.
//                 try_lock() and the fast path take G only when it is free
//                 and no head waits, so they never overtake a waiting node.
//   Bound         A node's turn ends at whichever comes first:
//                 local_handoff_bound consecutive cohort hand-offs (default:
//                 no count limit), or max_turn since the turn's head took G
//                 (default 4 ms). A bound of 0 hand-offs releases G at every
//                 unlock (round-robin between nodes, no batching). Time, not
//                 a count, by default: a count means a different time for
//                 every critical section, and a turn must be long against
//                 the cost of moving the lock to another node (a futex
//                 wake-up here; docs/numa.md has the measurements). 4 ms is
//                 the top of hwsync::mutex's fair-unlock interval, the
//                 longest it lets running threads keep its lock from a
//                 parked waiter.
//   Size          24 bytes (32 with HWSYNC_DEBUG_CHECKS); constexpr-
//                 constructible. The per-node local locks live in a block
//                 allocated on the first contended lock() (one cache line
//                 per node, plus one), so a lock that is never contended
//                 allocates nothing, and on a one-node machine the block is
//                 one local lock. Destroying the mutex frees it.
//   Fast paths    lock(): one inline CAS 0 -> LOCKED. unlock(): a load of the
//                 holder's cohort (0 for the fast path) and one fetch_sub.
//   Ordering      lock() acquires, unlock() releases, whichever path.
//   Blocking      Local waiters spin briefly and park on their node's local
//                 lock (hwsync::mutex's word); a head spins for G while no
//                 other head waits, then registers and parks on its node's
//                 grant word. Nobody busy-waits without bound.
//   Node          numa::current_node() (hwsync/numa_placement.hpp): the
//                 CPU's node, or a virtual node a test assigned. The node
//                 count is fixed when the block is allocated; a node past it
//                 (a test switched topologies) folds modulo, as does any node
//                 beyond 64.
//   Exceptions    lock() throws std::system_error (not_enough_memory) if the
//                 first contention cannot allocate the block; nothing else.
//   Misuse        Unlock by a non-owner, relock by the holder, destroying a
//                 held mutex: undefined (as std) in release builds; an abort
//                 naming the mutex and the threads with HWSYNC_DEBUG_CHECKS.
//   Tools         ThreadSanitizer sees a mutex; Clang's -Wthread-safety sees
//                 a capability.
//
// G, the lock word (32 bits)
//   bit 0   LOCKED   G is held: by a fast-path holder, or by a node's cohort
//   bit 1   HEADS    a node's head is registered (in the block's heads mask)
//                    and waits for G to be handed to it
//   bit 2   KEPT     G is free but kept for the node whose turn it is, until
//                    the turn ends (set only with HEADS, never with LOCKED)
//
//   state           meaning                           next unlock()
//   0               free                              (n/a)
//   LOCKED          held, no head registered          fetch_sub only
//   LOCKED | HEADS  held, heads waiting               hands G to the next node
//   HEADS           reserved: the releaser is handing  (only the releaser
//                   G to a registered head            acts; nobody may take it)
//   HEADS | KEPT    free for the turn's node until    (its next head takes it;
//                   the turn ends                     after the end a waiting
//                                                     head grants it onward)
//
//   Invariants (under the block's guard): HEADS is set exactly when the
//   heads mask is not empty; LOCKED is set from 0 by a CAS (fast path, a
//   head's first try), from HEADS | KEPT by a head of the turn's node before
//   the turn ends, or under the guard when G is granted (from HEADS by the
//   releaser, from an expired HEADS | KEPT by a waiting head); a head parks
//   on its grant word only after registering, and never past the current
//   turn's end.
//
// A node's grant word (in the block)
//   0 the head is registered and awake;  2 the head is parked on it;
//   1 G was granted to the head (set under the guard, with its mask bit
//     cleared). The head resets it to 0 when it takes G.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "hwsync/config.hpp"
#include "hwsync/debug_checks.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/lock_observer.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/sanitizer.hpp"
#include "hwsync/thread_annotations.hpp"

namespace hwsync {

namespace detail {
struct numa_cohorts;  // the per-node local locks, in src/numa_mutex.cpp
}  // namespace detail

class HWSYNC_CAPABILITY("mutex") numa_mutex {
 public:
  static constexpr std::uint32_t default_local_handoff_bound = ~std::uint32_t{0};  // no limit
  static constexpr std::chrono::microseconds default_max_turn{4000};

  // Counters for tests and benchmarks, read with relaxed loads (a snapshot
  // of counters that may be moving). Only contended paths count: the fast
  // path stays one CAS.
  struct statistics {
    unsigned nodes = 0;                        // 0 until the first contention
    std::uint64_t contended_acquisitions = 0;  // through a node's local lock
    std::uint64_t local_handoffs = 0;          // G passed within a node
    std::uint64_t global_handoffs = 0;         // G handed to a waiting head
    std::uint64_t cross_node_handoffs = 0;     // ... of another node than the releaser's
    std::uint64_t heads_waiting = 0;           // mask: nodes whose head waits for G now
  };

  constexpr numa_mutex() noexcept = default;
  constexpr explicit numa_mutex(std::uint32_t local_handoff_bound,
                                std::chrono::microseconds max_turn = default_max_turn) noexcept
      : bound_(local_handoff_bound),
        max_turn_us_(static_cast<std::uint32_t>(
            std::clamp<std::chrono::microseconds::rep>(max_turn.count(), 0, ~std::uint32_t{0}))) {}
  numa_mutex(const numa_mutex&) = delete;
  numa_mutex& operator=(const numa_mutex&) = delete;
  ~numa_mutex();

  void lock() HWSYNC_ACQUIRE() {
    before_lock();
    const detail::observe::attempt seen(this, detail::observe::until_acquired);
    tsan::pre_lock(this, 0);
    std::uint32_t expected = 0;
    if (!word_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                       std::memory_order_relaxed)) [[unlikely]]
      lock_contended(nullptr);
    tsan::post_lock(this, 0, 0);
    locked_by_me();
    seen.acquired();
  }

  bool try_lock() HWSYNC_TRY_ACQUIRE(true) { return try_lock_at(nullptr); }

  void unlock() HWSYNC_RELEASE() {
    before_unlock();
    detail::observe::released(this);
    tsan::pre_unlock(this, 0);
    // A cohort member passes or releases G out of line. The fast path's
    // fetch_sub is acq_rel, not release: seeing HEADS must make the block
    // the head registered in visible to hand_global (on x86 the same `lock
    // sub`).
    if (cohort_.load(std::memory_order_relaxed) != 0) [[unlikely]]
      unlock_cohort();
    else if (word_.fetch_sub(locked, std::memory_order_acq_rel) - locked != 0) [[unlikely]]
      hand_global(no_node);
    tsan::post_unlock(this, 0);
  }

  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) HWSYNC_TRY_ACQUIRE(true) {
    return try_lock_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs)
      HWSYNC_TRY_ACQUIRE(true) {
    return detail::wait_until_on(abs, [&](const futex::deadline* d) { return try_lock_at(d); });
  }

  std::uint32_t local_handoff_bound() const noexcept { return bound_; }
  std::chrono::microseconds max_turn() const noexcept {
    return std::chrono::microseconds(max_turn_us_);
  }
  // Relaxed read of LOCKED, no ordering.
  bool is_locked() const noexcept { return (word_.load(std::memory_order_relaxed) & locked) != 0; }
  statistics stats() const noexcept;

 private:
  static constexpr std::uint32_t locked = 1u << 0;
  static constexpr std::uint32_t heads = 1u << 1;
  static constexpr std::uint32_t kept = 1u << 2;
  static constexpr unsigned no_node = ~0u;
  static constexpr const char* type_name = "hwsync::numa_mutex";

  // d null: one attempt (try_lock, an expired deadline); else wait until *d.
  bool try_lock_at(const futex::deadline* d) {
    before_lock();
    const detail::observe::attempt seen(this, d != nullptr);
    tsan::pre_lock(this, tsan::flag::try_lock);
    std::uint32_t expected = 0;
    bool ok = word_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                            std::memory_order_relaxed);
    if (!ok && d != nullptr) ok = lock_contended(d);
    tsan::post_lock(
        this, ok ? tsan::flag::try_lock : tsan::flag::try_lock | tsan::flag::try_lock_failed, 0);
    if (ok) locked_by_me();
    if (ok) seen.acquired();
    return ok;
  }

  // The slow paths (src/numa_mutex.cpp). d null: no time limit.
  bool lock_contended(const futex::deadline* d);
  detail::numa_cohorts& cohorts();
  enum class took { nothing, new_turn, kept };
  took take_global(detail::numa_cohorts& c, unsigned node, const futex::deadline* d) noexcept;
  bool grant_expired_turn(detail::numa_cohorts& c) noexcept;
  void grant_next(detail::numa_cohorts& c, unsigned from) noexcept;
  void unlock_cohort() noexcept;
  void hand_global(unsigned from_node) noexcept;

  void before_lock() const noexcept {
    if constexpr (debug::checks_enabled) {
      if (owner_.load(std::memory_order_relaxed) == debug::this_thread_id())
        debug::misuse(type_name, this,
                      "lock() by the thread that already holds it (would deadlock)");
    }
  }
  void locked_by_me() noexcept {
    if constexpr (debug::checks_enabled)
      owner_.store(debug::this_thread_id(), std::memory_order_relaxed);
  }
  void before_unlock() noexcept {
    if constexpr (debug::checks_enabled) {
      const pid_t holder = owner_.load(std::memory_order_relaxed);
      if (holder != debug::this_thread_id()) {
        if (holder == 0) debug::misuse(type_name, this, "unlock() of a mutex that is not locked");
        debug::misuse(type_name, this, "unlock() by a thread that does not hold it; held by",
                      holder);
      }
      owner_.store(0, std::memory_order_relaxed);
    }
  }

  struct no_owner {
    constexpr no_owner() noexcept = default;
    pid_t load(std::memory_order) const noexcept { return 0; }
    void store(pid_t, std::memory_order) noexcept {}
  };

  futex::word word_{0};  // G
  // Written by G's holder only: 0 when it took G by the fast path, node + 1
  // when it holds that node's local lock (and must pass G or release it).
  std::atomic<std::uint32_t> cohort_{0};
  std::atomic<detail::numa_cohorts*> cohorts_{nullptr};
  std::uint32_t bound_ = default_local_handoff_bound;
  std::uint32_t max_turn_us_ = static_cast<std::uint32_t>(default_max_turn.count());
  [[no_unique_address]] std::conditional_t<debug::checks_enabled, std::atomic<pid_t>, no_owner>
      owner_{};
};

#if !HWSYNC_DEBUG_CHECKS
static_assert(sizeof(numa_mutex) == 24, "hwsync::numa_mutex: G, the cohort, the block, the bounds");
#endif

}  // namespace hwsync
