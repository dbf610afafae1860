// hwsync/lock_order.hpp — the lock-order checker: reports a possible deadlock
// the first time two hwsync locks are acquired in orders that form a cycle,
// whether or not the run ever deadlocks.
//
// Contract
//   Switch        Off by default. HWSYNC_LOCKORDER=1 in the environment turns
//                 it on when libhwsync_primitives loads (0 or unset: off; any
//                 other value: a message on stderr saying what was expected,
//                 and off); enable_lock_order_checking() and
//                 disable_lock_order_checking() at any time.
//   Covers        hwsync::mutex, timed_mutex, recursive_mutex,
//                 recursive_timed_mutex, shared_mutex<P> (every mode),
//                 biased_shared_mutex, numa_mutex, and htm::elided<L> over
//                 any of them whenever it takes the real lock (the hooks are
//                 inside L's members; an elided section takes no lock and so
//                 cannot deadlock). See hwsync/lock_observer.hpp for what an
//                 acquisition is.
//   The graph     Nodes are locks, by address. A blocking acquisition of L by
//                 a thread that holds H1..Hk adds the edges Hi -> L. A new
//                 edge H -> L that closes a cycle (L already reaches H) is
//                 reported once, with every edge of the cycle; the edge stays
//                 in the graph, so the same inversion is not reported again.
//                 try_ acquisitions add no edges (they cannot wait) but are
//                 held locks. Re-acquiring a lock the thread holds adds
//                 nothing. A lock's destructor removes its node and edges, so
//                 a new lock at a reused address starts with none.
//   Held locks    Per thread, a stack of at most 64 locks; deeper nesting is
//                 counted (statistics().held_overflows), not tracked, never
//                 a crash.
//   Cost          Per acquisition with the checker on: a push and a pop on
//                 the thread's stack; per edge seen, a lookup in a
//                 per-thread direct-mapped cache of 256 recent edges, so the
//                 steady state takes no process-wide lock. A cache miss
//                 takes the graph's lock; a new edge records a backtrace and
//                 runs a depth-first search. bench/lockprof_bench.cpp
//                 measures it; docs/debugging.md quotes the figures.
//   Reports       Each edge of the cycle: both locks (address and name, see
//                 set_lock_name in hwsync/lock_observer.hpp), where the held
//                 lock was taken and where the second was asked for (return
//                 addresses, symbolized when the text is formatted), the
//                 backtrace of the second acquisition, and the thread (id and
//                 name). The action: log (stderr, the default), callback, or
//                 abort (log, then std::abort()). The callback runs on the
//                 thread that closed the cycle, outside the checker's locks,
//                 before its acquisition proceeds; locks it takes are not
//                 observed. If it throws, the exception is dropped and the
//                 acquisition goes on (the hooks are noexcept).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hwsync {

enum class lock_order_action : std::uint8_t { log, callback, abort };

// One edge of a cycle: `acquired` was asked for while `held` was held.
struct lock_order_edge {
  const void* held = nullptr;
  std::string held_name;
  const void* acquired = nullptr;
  std::string acquired_name;
  const void* held_at = nullptr;      // return address of the held lock's acquisition
  const void* acquired_at = nullptr;  // return address of this acquisition
  std::vector<void*> stack;           // backtrace() of this acquisition
  pid_t thread = 0;                   // gettid()
  std::string thread_name;
};

struct lock_order_report {
  // cycle[0] is the edge that closed the cycle (this thread, now); the
  // others follow it round: cycle[i].acquired == cycle[i + 1].held, and the
  // last one's acquired is cycle[0].held.
  std::vector<lock_order_edge> cycle;

  // The report as the log action prints it (symbolized with dladdr).
  std::string text() const;
};

struct lock_order_statistics {
  std::uint64_t nodes = 0;
  std::uint64_t edges = 0;
  std::uint64_t cycles_reported = 0;
  std::uint64_t held_overflows = 0;  // acquisitions beyond a thread's stack capacity
};

void enable_lock_order_checking() noexcept;
void disable_lock_order_checking() noexcept;
bool lock_order_checking_enabled() noexcept;

// What a detected cycle does. set_lock_order_callback also selects
// lock_order_action::callback; a null callback falls back to log.
void set_lock_order_action(lock_order_action a) noexcept;
void set_lock_order_callback(std::function<void(const lock_order_report&)> callback);

// Forgets every edge (the nodes' names stay). For tests and for programs that
// change phase; threads' caches are invalidated.
void reset_lock_order_graph();

lock_order_statistics lock_order_stats();

}  // namespace hwsync
