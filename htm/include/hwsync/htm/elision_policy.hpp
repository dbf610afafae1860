// hwsync/htm/elision_policy.hpp — the adaptive retry and fallback policy of
// one elided lock, and its per-lock state. elided<Lock> (hwsync/htm/elided.hpp)
// is the public face; this header is what it shares with htm/src/elision.cpp.
//
// Contract (one acquisition of an elided lock, backend rtm or policy_emulation)
//   0. If this lock's elision is switched off (skip_remaining > 0): count
//      one skipped acquisition, decrement, take the lock. No transaction.
//   1. Begin a transaction and read the lock word at once (the subscription:
//      never lazily at commit, see Dice et al., "Pitfalls of lazy
//      subscription"). Held: abort with lock_busy_code. Free: run the
//      critical section transactionally; unlock() commits.
//   2. After an abort, by its cause (hwsync/htm/statistics.hpp):
//        lock_busy            wait until the lock looks free (below), retry
//        conflict, retry      (RETRY set) wait if the lock is held, retry
//        capacity             switch elision off (step 3), take the lock
//        explicit, debug,     take the lock: retrying the same section would
//        unreported           abort the same way
//      Retries are bounded: at most `retries` after the first attempt; then
//      the lock is taken (a fallback).
//   3. Switching off: skip the next `interval` acquisitions, where interval
//      starts at first_skip and doubles at each switch-off up to max_skip
//      (glibc skips a fixed 3). Triggers: a capacity abort, or an abort rate
//      above max_abort_percent over a window of at least rate_window
//      attempts (judged when an abort is counted, from the lock's own
//      counters). Switching back on: once skip_remaining is spent the next
//      acquisition tries again; each commit while interval > 0 halves the
//      interval (to 0 below first_skip), so a lock that recovers returns to
//      full elision, and one that keeps failing waits longer each time.
//   Waiting for the lock to be free: polls the word with pause and
//   exponential backoff (1 to 32 pauses, about 130 in all), then yields the
//   CPU up to 4 times; if it is still held, stops retrying and takes the
//   lock, which parks on a futex. Never an unbounded spin.
//   All policy state is relaxed atomics, read and written outside
//   transactions; races between threads only blur the heuristic (two
//   threads may both spend the same skip), never mutual exclusion, which
//   comes from the lock or the transaction alone.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "hwsync/htm/capabilities.hpp"
#include "hwsync/htm/statistics.hpp"

namespace hwsync::htm {

struct elision_tuning {
  std::uint32_t retries = 3;             // further attempts after a retryable abort
  std::uint32_t first_skip = 4;          // acquisitions without elision at the first switch-off
  std::uint32_t max_skip = 1024;         // the interval stops doubling here
  std::uint32_t rate_window = 32;        // attempts per abort-rate judgement
  std::uint32_t max_abort_percent = 50;  // a higher abort rate switches elision off

  // Throws std::invalid_argument saying which field is out of range and why.
  void validate() const;
};

namespace detail {

// Who holds the underlying lock for real, as its holder recorded it (read
// and written only by a thread that holds the lock, really or
// transactionally: a hardware transaction never writes it, so a holder
// that reads `none` at unlock() is eliding).
enum class holder : std::uint8_t { none, fallback, emulated_transaction };

// The underlying lock, type-erased, so that the policy is compiled once in
// htm/src/elision.cpp.
struct lock_ops {
  bool (*is_locked)(const void*) noexcept;
  bool (*try_lock)(void*);
  void (*lock)(void*);
  void (*unlock)(void*);
};

enum counter : std::size_t {
  commits,
  aborts,
  first_cause,  // aborts_by_cause occupy [first_cause, first_cause + abort_cause_count)
  fallbacks = first_cause + abort_cause_count,
  skipped,
  switched_off,
  counter_count,
};

// One elided lock's counters and adaptive state, on lines of its own: the
// lock word's line is read by every transaction, and a counter written on
// it would abort them.
struct alignas(64) elision_site {
  explicit elision_site(const elision_tuning& t) : tuning(t) { tuning.validate(); }

  std::array<std::atomic<std::uint64_t>, counter_count> counters{};
  std::atomic<std::uint32_t> skip_interval{0};
  std::atomic<std::uint32_t> skip_remaining{0};
  // The counters when the current abort-rate window began.
  std::atomic<std::uint64_t> window_commits{0};
  std::atomic<std::uint64_t> window_aborts{0};
  elision_tuning tuning;

  statistics snapshot() const noexcept;
};

// The policy (htm/src/elision.cpp). `b` is the backend the caller read. lock
// and unlock of one acquisition may see different ones (a policy scope began
// or ended in between); unlock tells what it releases from the holder byte,
// the transaction state and the lock word (hwsync/htm/elided.hpp's table).
void elided_lock(elision_site& site, holder& h, void* lock, const lock_ops& ops, backend b);
bool elided_try_lock(elision_site& site, holder& h, void* lock, const lock_ops& ops, backend b);
void elided_unlock(elision_site& site, holder& h, void* lock, const lock_ops& ops, backend b);

// The backend as elided locks read it on every acquisition: one relaxed
// load (htm/src/capabilities.cpp). unresolved until the first decision.
extern std::atomic<backend> current_backend;

}  // namespace detail
}  // namespace hwsync::htm
