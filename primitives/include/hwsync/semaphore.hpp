// hwsync/semaphore.hpp — hwsync::counting_semaphore, hwsync::binary_semaphore
// and hwsync::fair_counting_semaphore.
//
// Contract
//   counting_semaphore<LeastMaxValue>: std::counting_semaphore's API and
//   meaning — release(n = 1), acquire(), try_acquire(), try_acquire_for(),
//   try_acquire_until(), static max() — so swapping std:: for hwsync:: compiles
//   and behaves the same. binary_semaphore is counting_semaphore<1>.
//   fair_counting_semaphore<LeastMaxValue>: the same API, granting permits in
//   arrival order (Java's Semaphore(permits, fair = true)).
//
//   max()         LeastMaxValue exactly (as libstdc++), at most 2^31 - 1, the
//                 default (as libstdc++'s default). The count lives in 32
//                 bits.
//   Size          counting_semaphore: 8 bytes (one 64-bit word whose low half
//                 is the futex word). fair_counting_semaphore: 32 bytes (the
//                 word, an internal lock, the head and tail of a queue whose
//                 nodes live on the waiters' stacks). Both constexpr-
//                 constructible, so `constinit` works.
//   Fast paths    try_acquire()/acquire() with a permit free: a load and one
//                 CAS. release(): one fetch_add; the kernel is entered only
//                 when a waiter has registered to park (counting) or is
//                 queued (fair). Uncontended use never makes a system call.
//   Ordering      release() releases and a successful acquire acquires:
//                 everything written before a release() is visible after
//                 the acquire that takes one of its permits (for fair, also
//                 when another releaser hands that permit over).
//   Blocking      acquire() spins briefly (hwsync/spin.hpp), then (counting
//                 only) yields its CPU for up to 50 µs (yield_until: a
//                 permit handed straight back needs no futex wake-up), then
//                 parks: counting on the count's futex word, fair on a futex word
//                 of its own (fair: only a waiter first in line spins; one
//                 behind others cannot be served before them and parks at
//                 once). release(n) wakes at most n parked waiters, never
//                 all of them.
//   Fairness      counting_semaphore: none (as std and sem_t). A running
//                 thread may take a permit that a woken waiter was about to
//                 take; woken waiters are whoever the kernel picks (FIFO per
//                 futex word in practice). Under contention the permits
//                 circulate among the threads that are running.
//                 fair_counting_semaphore: strict FIFO. An acquirer that
//                 finds waiters queued queues behind them even if permits
//                 are free, and release() hands each permit directly to the
//                 queue's head (hand-off: nobody can barge in between, and
//                 try_acquire() fails while anyone is queued). The cost:
//                 with waiters queued, every release goes through the
//                 internal lock, and most hand-offs wake a parked thread
//                 (a futex wake-up, ~30 µs on this host's VM) instead of
//                 letting a running thread take the permit at once; see
//                 docs/semaphore.md for the measured price.
//   Timeouts      try_acquire_for/try_acquire_until: steady_clock deadlines
//                 wait on CLOCK_MONOTONIC, system_clock ones on
//                 CLOCK_REALTIME (a clock step moves the wake-up), other
//                 clocks in steady_clock slices re-reading that clock. A
//                 deadline already past makes one try_acquire(). A waiter
//                 whose deadline passes as a permit arrives takes the permit
//                 and returns true: a permit is never lost to a timeout.
//   Spurious failure
//                 None: try_acquire() fails only when no permit is free
//                 (std allows more).
//   Misuse        Undefined (as std) in release builds; with
//                 HWSYNC_DEBUG_CHECKS an abort naming the semaphore, the
//                 thread and the numbers: release(n) with n < 0, a release
//                 that would raise the count past max(), an initial count
//                 outside [0, max()], destroying a semaphore that threads
//                 wait on. release(0) is valid and does nothing (std's
//                 precondition is n >= 0).
//   Destruction   Safe once the last acquire() that a release() satisfied has
//                 returned: release() touches nothing of the semaphore after
//                 the point where a waiter can return (counting: its atomic
//                 add; fair: the grant, made after the internal lock is
//                 released), and a futex wake on a freed address only
//                 makes a spurious wake-up, which every futex user tolerates.
//
// counting_semaphore's word (64 bits; the low half is the futex word)
//   bits 0-31   COUNT    permits free
//   bits 32-63  WAITERS  threads registered to park (asleep or about to be)
//
//   state                 meaning                          next release(n)
//   C*c                   c permits, nobody waiting        fetch_add only
//   W*k                   no permit, k waiters             fetch_add, wakes
//                                                            min(n, k)
//   C*c | W*k (c > 0)     permits released, woken          fetch_add, wakes
//                         waiters on their way to take       min(n, k)
//                         them (or a waiter registering)
//
//   Invariants: a waiter parks only on COUNT == 0 (it waits on the low half
//   with the expected value 0), after registering in WAITERS; every release
//   that adds permits while WAITERS > 0 wakes min(n, WAITERS). So a sleeper
//   is never left with permits free and nobody coming: either a release woke
//   a waiter (who takes a permit or, beaten to it, parks again on a count of
//   0), or the waiter had not yet slept and its futex wait sees COUNT != 0.
//   A waiter leaves WAITERS in the same CAS that takes its permit, or, on a
//   timeout, with no permit free (else it takes one).
//
// fair_counting_semaphore's word (64 bits)
//   bits 0-31   COUNT    permits free
//   bits 32-63  QUEUED   waiters on the queue
//
//   state                 meaning                          next release(n)
//   C*c                   c permits, nobody queued         fetch_add only
//   Q*k                   no permit, k waiters queued      fetch_add, then hands
//                                                            min(n, k) permits to
//                                                            the queue's head(s)
//   C*c | Q*k (c, k > 0)  transient: a release added c     (that release is on
//                         permits and is on its way to       its way)
//                         hand them over
//
//   Invariants: QUEUED equals the queue's length (both change only under the
//   internal lock). QUEUED goes from 0 to 1 only in a CAS that sees COUNT ==
//   0 (an acquirer that sees permits and nobody queued takes one instead).
//   The fast-path acquire requires QUEUED == 0, so nobody takes a permit past
//   a queued waiter. COUNT > 0 with QUEUED > 0 only after a release whose
//   fetch_add saw QUEUED > 0, and that release then hands permits to queue
//   heads, under the lock, until COUNT or QUEUED is 0.
//
//   Queue nodes (on each waiter's stack, one futex word each; bits)
//     bit        set by                   meaning
//     (none)     the waiter               queued, no permit yet
//     GRANTING   a release, under the     dequeued with a permit, not yet told:
//                internal lock            a timed-out waiter that sees it keeps
//                                         waiting (briefly) for GRANTED
//     GRANTED    the same release, after  the waiter returns true; nobody
//                the lock is released     touches the node after this store
//     PARKED     the waiter, before it    it is (or is about to be) in
//                sleeps                   futex_wait: the grant must wake it
//   A release dequeues the heads and marks them GRANTING under the lock, then
//   releases the lock and only then sets GRANTED: once a waiter can return
//   (and its owner destroy the semaphore), the release touches nothing of
//   the semaphore again. A timed-out waiter takes the lock: with neither bit
//   set it unlinks its node and returns false; otherwise the permit is its
//   own and it returns true.
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "hwsync/config.hpp"
#include "hwsync/debug_checks.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/waiter_list.hpp"

namespace hwsync {

namespace detail {

static_assert(std::endian::native == std::endian::little,
              "the low half of a semaphore word is its futex word");

struct semaphore_test_access;  // defined by the tests only

// The two halves of a semaphore word.
constexpr std::uint32_t semaphore_count(std::uint64_t s) noexcept {
  return static_cast<std::uint32_t>(s);
}
constexpr std::uint32_t semaphore_high(std::uint64_t s) noexcept {
  return static_cast<std::uint32_t>(s >> 32);
}

// The misuse messages (debug checks), out of line: each says what was
// expected and what arrived.
[[noreturn]] void semaphore_negative_update(const char* type, const void* self,
                                            std::ptrdiff_t update) noexcept;
[[noreturn]] void semaphore_release_past_max(const char* type, const void* self,
                                             std::ptrdiff_t update, std::uint32_t count_before,
                                             std::ptrdiff_t max) noexcept;
[[noreturn]] void semaphore_bad_desired(const char* type, const void* self, std::ptrdiff_t desired,
                                        std::ptrdiff_t max) noexcept;
[[noreturn]] void semaphore_destroyed_with_waiters(const char* type, const void* self,
                                                   std::uint32_t waiters) noexcept;

// counting_semaphore's word and algorithm (state table above).
class semaphore_word {
 public:
  static constexpr std::uint64_t one_waiter = std::uint64_t{1} << 32;

  constexpr explicit semaphore_word(std::uint32_t initial) noexcept : word_(initial) {}

  bool try_acquire() noexcept {
    std::uint64_t s = word_.load(std::memory_order_relaxed);
    while (semaphore_count(s) != 0) {
      if (word_.compare_exchange_weak(s, s - 1, std::memory_order_acquire,
                                      std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  void acquire() noexcept {
    if (!try_acquire()) [[unlikely]]
      acquire_contended(futex::deadline::never());
  }

  bool acquire_until(const futex::deadline& d) noexcept {
    return try_acquire() || acquire_contended(d);
  }

  // Adds n permits; returns the word as it was before.
  std::uint64_t release(std::uint32_t n) noexcept {
    const std::uint64_t before = word_.fetch_add(n, std::memory_order_release);
    if (semaphore_high(before) != 0) [[unlikely]]
      wake(before, n);
    return before;
  }

  std::uint64_t raw() const noexcept { return word_.load(std::memory_order_relaxed); }
  std::uint32_t waiters() const noexcept { return semaphore_high(raw()); }

 private:
  bool acquire_contended(const futex::deadline& d) noexcept;
  void wake(std::uint64_t before, std::uint32_t n) noexcept;
  // The low half as the kernel reads it; only futex calls use it, never
  // C++ loads (as shared_mutex's halves).
  const futex::word& count_word() const noexcept { return half(0); }
  const futex::word& half(int offset) const noexcept {
    return *reinterpret_cast<const futex::word*>(reinterpret_cast<const char*>(&word_) + offset);
  }

  std::atomic<std::uint64_t> word_;
};

// One queued waiter of a fair_counting_semaphore (node states above).
struct fair_semaphore_waiter {
  static constexpr std::uint32_t granting = 1, granted = 2, parked = 4;
  futex::word state{0};
  fair_semaphore_waiter* next = nullptr;  // the queue, under the internal lock
  fair_semaphore_waiter* prev = nullptr;
};

// fair_counting_semaphore's word, queue and algorithm (state table above).
class fair_semaphore_word {
 public:
  static constexpr std::uint64_t one_queued = std::uint64_t{1} << 32;

  constexpr explicit fair_semaphore_word(std::uint32_t initial) noexcept : word_(initial) {}

  // Takes a permit only when nobody is queued: no barging, even here.
  bool try_acquire() noexcept {
    std::uint64_t s = word_.load(std::memory_order_relaxed);
    while (semaphore_count(s) != 0 && semaphore_high(s) == 0) {
      if (word_.compare_exchange_weak(s, s - 1, std::memory_order_acquire,
                                      std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  void acquire() noexcept {
    if (!try_acquire()) [[unlikely]]
      acquire_contended(futex::deadline::never());
  }

  bool acquire_until(const futex::deadline& d) noexcept {
    return try_acquire() || acquire_contended(d);
  }

  std::uint64_t release(std::uint32_t n) noexcept {
    const std::uint64_t before = word_.fetch_add(n, std::memory_order_release);
    if (semaphore_high(before) != 0) [[unlikely]]
      hand_off();
    return before;
  }

  std::uint64_t raw() const noexcept { return word_.load(std::memory_order_relaxed); }
  std::uint32_t waiters() const noexcept { return semaphore_high(raw()); }

 private:
  bool acquire_contended(const futex::deadline& d) noexcept;
  void hand_off() noexcept;
  // Whether a timed-out waiter left the queue before a permit reached it.
  bool leave_queue(fair_semaphore_waiter* w) noexcept;

  std::atomic<std::uint64_t> word_;
  mutex_word queue_lock_;
  waiter_list<fair_semaphore_waiter> queue_;  // the longest waiting first
};

// The std API over either word, with the debug checks. `Name` gives the
// public type's name for misuse messages.
template <class Word, std::ptrdiff_t LeastMaxValue, class Name>
class basic_semaphore {
  static_assert(LeastMaxValue >= 0, "a semaphore's LeastMaxValue cannot be negative");
  static_assert(LeastMaxValue <= std::numeric_limits<std::int32_t>::max(),
                "hwsync semaphores count in 32 bits: LeastMaxValue is at most 2^31 - 1");

 public:
  static constexpr std::ptrdiff_t max() noexcept { return LeastMaxValue; }

  constexpr explicit basic_semaphore(std::ptrdiff_t desired) noexcept
      : word_(checked_desired(desired)) {}
  basic_semaphore(const basic_semaphore&) = delete;
  basic_semaphore& operator=(const basic_semaphore&) = delete;
#if HWSYNC_DEBUG_CHECKS
  ~basic_semaphore() {
    if (const std::uint32_t w = word_.waiters(); w != 0)
      semaphore_destroyed_with_waiters(Name::value, this, w);
  }
#endif

  void release(std::ptrdiff_t update = 1) noexcept {
    if constexpr (debug::checks_enabled) {
      if (update < 0) semaphore_negative_update(Name::value, this, update);
      if (update > max())
        semaphore_release_past_max(Name::value, this, update, semaphore_count(word_.raw()), max());
    }
    const std::uint64_t before = word_.release(static_cast<std::uint32_t>(update));
    if constexpr (debug::checks_enabled) {
      // After the add, as std's precondition is about the count it meets;
      // the count and `update` are both below 2^31, so nothing carried.
      if (semaphore_count(before) + static_cast<std::uint64_t>(update) >
          static_cast<std::uint64_t>(max()))
        semaphore_release_past_max(Name::value, this, update, semaphore_count(before), max());
    }
  }

  void acquire() noexcept {
    word_.acquire();
  }
  bool try_acquire() noexcept {
    return word_.try_acquire();
  }

  template <class Rep, class Period>
  bool try_acquire_for(const std::chrono::duration<Rep, Period>& rel) {
    return try_acquire_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& abs) {
    return detail::wait_until_on(abs, [&](const futex::deadline* d) {
      return d == nullptr ? word_.try_acquire() : word_.acquire_until(*d);
    });
  }

 private:
  friend struct semaphore_test_access;

  constexpr std::uint32_t checked_desired(std::ptrdiff_t desired) noexcept {
    if constexpr (debug::checks_enabled) {
      if (desired < 0 || desired > max()) semaphore_bad_desired(Name::value, this, desired, max());
    }
    return static_cast<std::uint32_t>(desired);
  }

  Word word_;
};

struct counting_semaphore_name {
  static constexpr const char* value = "hwsync::counting_semaphore";
};
struct fair_counting_semaphore_name {
  static constexpr const char* value = "hwsync::fair_counting_semaphore";
};

}  // namespace detail

template <std::ptrdiff_t LeastMaxValue = std::numeric_limits<std::int32_t>::max()>
class counting_semaphore : public detail::basic_semaphore<detail::semaphore_word, LeastMaxValue,
                                                          detail::counting_semaphore_name> {
  using base = detail::basic_semaphore<detail::semaphore_word, LeastMaxValue,
                                       detail::counting_semaphore_name>;

 public:
  using base::base;
};

using binary_semaphore = counting_semaphore<1>;

template <std::ptrdiff_t LeastMaxValue = std::numeric_limits<std::int32_t>::max()>
class fair_counting_semaphore
    : public detail::basic_semaphore<detail::fair_semaphore_word, LeastMaxValue,
                                     detail::fair_counting_semaphore_name> {
  using base = detail::basic_semaphore<detail::fair_semaphore_word, LeastMaxValue,
                                       detail::fair_counting_semaphore_name>;

 public:
  using base::base;
};

#if !HWSYNC_DEBUG_CHECKS
static_assert(sizeof(counting_semaphore<>) == 8, "counting_semaphore is one 64-bit word");
#endif

}  // namespace hwsync
