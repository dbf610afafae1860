// hwsync/latch.hpp — hwsync::latch, a single-use countdown that threads wait
// on until it reaches zero.
//
// Contract
//   Drop-in for std::latch: count_down(n), try_wait(), wait(),
//   arrive_and_wait(n), max(), with the same meaning. Plus timed waits, which
//   std::latch lacks: wait_for(rel) and wait_until(abs) return true once the
//   count is zero, false when the time ran out first.
//   Size          4 bytes: one futex word. constexpr-constructible.
//   Fast paths    count_down(): one atomic fetch_sub; the kernel is entered
//                 only by the count_down() that reaches zero, and only if a
//                 waiter parked. try_wait() and a wait() on an open latch:
//                 one load.
//   Ordering      Everything a thread wrote before its count_down() is
//                 visible to every thread after its wait() (or try_wait(),
//                 wait_for(), wait_until() returning true): each count_down()
//                 releases, each wait that sees zero acquires, and the
//                 fetch_subs form one release sequence.
//   Blocking      A waiter spins briefly (hwsync/spin.hpp, a fine-grained
//                 policy: the word changes once per count_down, nobody
//                 holds it) while the missing count_downs could be running
//                 on the other cores, then yields its CPU a bounded number
//                 of times (detail::await_release), then parks on the word
//                 with futex(2). The count_down() that reaches zero wakes
//                 every parked waiter with one FUTEX_WAKE, and only if one
//                 parked. No busy waiting when threads outnumber cores:
//                 spinners are limited to one per spare core, and a yield
//                 only runs while another thread wants the CPU.
//   Fairness      Not applicable: every waiter is released by the same event.
//   Timeouts      steady_clock deadlines wait on CLOCK_MONOTONIC,
//                 system_clock ones on CLOCK_REALTIME, any other clock in
//                 steady_clock slices (detail::wait_until_on, as the timed
//                 mutexes). A deadline already past looks once (try_wait()).
//   Limits        max() = 2^31 - 1.
//   Misuse        Undefined (as std) in release builds; with
//                 HWSYNC_DEBUG_CHECKS an abort naming the latch and the
//                 thread, with the numbers involved: an expected count below
//                 0 or above max(), count_down(n) with n < 0, and
//                 count_down(n) with n larger than the count left (counting
//                 down past zero).
//
// The latch word (32 bits)
//   bit 0      PARKED   a waiter has parked (or is about to park) on the word
//   bits 1-31  COUNT    count_down()s still expected
//
//   state            meaning                          the count_down() to zero
//   C*n              open in n, nobody parked         fetch_sub only
//   C*n | PARKED     open in n, waiters parked        fetch_sub, then wakes all
//   0 (| PARKED)     open: every wait returns at once (n/a; more is misuse)
//
//   Invariants: PARKED is set before a waiter sleeps, by a CAS that fails if
//   the count changed meanwhile, and the waiter sleeps only on the exact word
//   it installed; so the count_down() that takes COUNT to zero either sees
//   PARKED and wakes the sleeper, or changed the word first and the sleeper's
//   futex wait returns at once. PARKED is never cleared: once set, the last
//   count_down() pays one futex wake, whether or not anyone still sleeps.
#pragma once

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "hwsync/config.hpp"
#include "hwsync/debug_checks.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/mutex.hpp"  // detail::wait_until_on, the one clock dispatch of timed waits
#include "hwsync/spin.hpp"

namespace hwsync {

namespace detail {

// How a thread waiting for a latch or a barrier phase spins before it parks:
// the standard budget, but looking at the word every 0.1 µs rising to 0.4 µs
// rather than hwsync/spin.hpp's 0.75-1.5 µs. A mutex waiter that polls often
// steals the lock line from the holder it waits for; a latch or phase word is
// written once per episode, so polling costs only the waiter's own core and
// each look shortens the wake-up by up to one interval.
spin_policy release_wait_policy() noexcept;

// Yields a waiter makes after spinning and before it parks (see
// await_release()).
inline constexpr int release_wait_yields = 16;

// What a latch or barrier waiter does before it parks; true as soon as
// done() holds. `missing`: arrivals (count_downs) the release still needs.
//   1. Spin (release_wait_policy()) only while the missing arrivals could be
//      running right now, on the cores other than this one: with more
//      missing than spinner slots, some of them need this CPU, and spinning
//      only delays them (and the release) by the whole budget.
//   2. Yield the CPU up to release_wait_yields times: when threads outnumber
//      cores, the threads that have yet to arrive are waiting for a CPU, and
//      a yield hands them this one at the cost of a context switch, where
//      parking costs that switch plus a futex wake-up (~30 µs on this VM)
//      each. With nothing else runnable a yield returns at once, so the
//      yields are a bounded spin (a few µs), not a busy wait.
//   3. Return false: the caller parks.
template <class Done>
bool await_release(Done&& done, std::uint64_t missing) noexcept {
  if (missing <= spinner_slots()) {
    spinner spin(release_wait_policy());
    while (spin.spin())
      if (done()) return true;
  }
  for (int i = 0; i < release_wait_yields; ++i) {
    sched_yield();
    if (done()) return true;
  }
  return false;
}

// Debug-check reports with numbers (out of line: they format a message).
[[noreturn]] void latch_bad_count(const void* self, const char* what, std::ptrdiff_t n,
                                  std::ptrdiff_t limit) noexcept;

}  // namespace detail

class latch {
 public:
  static constexpr std::ptrdiff_t max() noexcept { return (std::ptrdiff_t{1} << 31) - 1; }

  constexpr explicit latch(std::ptrdiff_t expected) noexcept
      : word_(static_cast<std::uint32_t>(expected) << count_shift) {
    if constexpr (debug::checks_enabled) {
      if (expected < 0 || expected > max())
        detail::latch_bad_count(
            this, "constructed with an expected count outside 0..max():", expected, max());
    }
  }
  latch(const latch&) = delete;
  latch& operator=(const latch&) = delete;

  void count_down(std::ptrdiff_t n = 1) noexcept {
    if constexpr (debug::checks_enabled) {
      if (n < 0 || n > max())
        detail::latch_bad_count(this, "count_down(n) with n outside 0..max(): n =", n, max());
    }
    const std::uint32_t old =
        word_.fetch_sub(static_cast<std::uint32_t>(n) << count_shift, std::memory_order_release);
    const std::ptrdiff_t left = static_cast<std::ptrdiff_t>(old >> count_shift);
    if constexpr (debug::checks_enabled) {
      if (n > left) detail::latch_bad_count(this, "count_down(n) past zero: n =", n, left);
    }
    if (left == n && n != 0 && (old & parked) != 0) [[unlikely]]
      wake_all();
  }

  bool try_wait() const noexcept {
    return (word_.load(std::memory_order_acquire) >> count_shift) == 0;
  }

  void wait() const noexcept {
    if (!try_wait()) [[unlikely]]
      park_until(futex::deadline::never());
  }

  void arrive_and_wait(std::ptrdiff_t n = 1) noexcept {
    count_down(n);
    wait();
  }

  // true: the count reached zero; false: rel passed first.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& rel) const {
    return wait_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool wait_until(const std::chrono::time_point<Clock, Duration>& abs) const {
    return detail::wait_until_on(
        abs, [&](const futex::deadline* d) { return d == nullptr ? try_wait() : park_until(*d); });
  }

 private:
  static constexpr std::uint32_t parked = 1u << 0;
  static constexpr unsigned count_shift = 1;

  bool park_until(const futex::deadline& d) const noexcept;
  void wake_all() const noexcept;

  mutable futex::word word_;
};

static_assert(sizeof(latch) == 4, "hwsync::latch is one futex word");

}  // namespace hwsync
