// The slow paths of hwsync's semaphores: parking and waking for
// counting_semaphore, the FIFO queue and its hand-off for
// fair_counting_semaphore, and the misuse messages. The state tables and the
// invariants these functions keep are in hwsync/semaphore.hpp.
#include "hwsync/semaphore.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "hwsync/spin.hpp"

namespace hwsync::detail {

// ---------------------------------------------------------------------------
// Misuse (debug checks)

void semaphore_negative_update(const char* type, const void* self, std::ptrdiff_t update) noexcept {
  char what[160];
  std::snprintf(what, sizeof what, "release(%td): expected an update >= 0", update);
  debug::misuse(type, self, what);
}

void semaphore_release_past_max(const char* type, const void* self, std::ptrdiff_t update,
                                std::uint32_t count_before, std::ptrdiff_t max) noexcept {
  char what[200];
  std::snprintf(what, sizeof what,
                "release(%td) past max(): the count was %" PRIu32
                " and may rise to at most max() = %td",
                update, count_before, max);
  debug::misuse(type, self, what);
}

void semaphore_bad_desired(const char* type, const void* self, std::ptrdiff_t desired,
                           std::ptrdiff_t max) noexcept {
  char what[160];
  std::snprintf(what, sizeof what,
                "constructed with a count of %td: expected 0 <= count <= max() = %td", desired,
                max);
  debug::misuse(type, self, what);
}

void semaphore_destroyed_with_waiters(const char* type, const void* self,
                                      std::uint32_t waiters) noexcept {
  char what[120];
  std::snprintf(what, sizeof what, "destroyed while %" PRIu32 " thread%s wait%s on it", waiters,
                waiters == 1 ? "" : "s", waiters == 1 ? "s" : "");
  debug::misuse(type, self, what);
}

// ---------------------------------------------------------------------------
// counting_semaphore

// A thread arrives here after try_acquire() found no permit. It spins while
// that can help, then registers in WAITERS and parks on the count's futex
// word with the expected value 0; after each wake-up it spins and looks
// again. It stays registered from its first park until it takes a permit or
// gives up, so WAITERS is exact.
bool semaphore_word::acquire_contended(const futex::deadline& d) noexcept {
  bool registered = false;

  // One attempt to take a permit from state s (updated on failure); a
  // registered waiter leaves WAITERS in the same CAS.
  auto take = [&](std::uint64_t& s) {
    return word_.compare_exchange_weak(s, s - 1 - (registered ? one_waiter : 0),
                                       std::memory_order_acquire, std::memory_order_relaxed);
  };
  // Timed out: a permit that is free now is taken (it may be the one a
  // release woke this thread for), else the thread deregisters.
  auto give_up = [&] {
    std::uint64_t s = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (semaphore_count(s) != 0) {
        if (take(s)) return true;
        continue;
      }
      if (!registered) return false;
      if (word_.compare_exchange_weak(s, s - one_waiter, std::memory_order_relaxed)) return false;
    }
  };

  for (;;) {
    {
      // The spinner (and its slot) ends before the thread parks.
      spinner spin;
      std::uint64_t s = word_.load(std::memory_order_relaxed);
      for (;;) {
        if (semaphore_count(s) != 0) {
          if (take(s)) return true;
          continue;
        }
        if (!spin.spin()) break;
        s = word_.load(std::memory_order_relaxed);
      }
    }

    if (!d.is_never() && d.passed()) return give_up();
    // Then yield, still unregistered (see yield_until): in a hand-off such
    // as ping-pong the permit comes back within microseconds, and a waiter
    // that stays runnable needs no futex wake-up for it. Parking at once
    // made every hand-off cost a wake-up (21.6 µs p50, 0.058x
    // std::counting_semaphore's hand-overs per second; full perf/run of
    // 2026-11-21 08:23).
    if (!registered && yield_until(
                           [&] {
                             std::uint64_t s = word_.load(std::memory_order_relaxed);
                             while (semaphore_count(s) != 0)
                               if (take(s)) return true;
                             return false;
                           },
                           yield_window()))
      return true;
    if (!d.is_never() && d.passed()) return give_up();

    if (!registered) {
      // Register only on a count of 0: a release after this CAS sees the
      // waiter and wakes it, one before it left a permit to take instead.
      std::uint64_t s = word_.load(std::memory_order_relaxed);
      while (semaphore_count(s) == 0) {
        if (word_.compare_exchange_weak(s, s + one_waiter, std::memory_order_relaxed)) {
          registered = true;
          break;
        }
      }
      if (!registered) continue;  // a permit arrived: take it
    }
    // A count that is no longer 0 makes the kernel return at once.
    if (futex::wait_until(count_word(), 0, d) == futex::wait_result::timed_out) return give_up();
  }
}

void semaphore_word::wake(std::uint64_t before, std::uint32_t n) noexcept {
  // As many as the permits released, never more than are registered: a
  // woken waiter that finds the permits gone parks again, so waking more
  // would only buy futile context switches. (release(0) wakes nobody.)
  const std::uint32_t k = std::min(n, semaphore_high(before));
  if (k != 0) futex::wake(count_word(), static_cast<int>(k));
}

// ---------------------------------------------------------------------------
// fair_counting_semaphore

// A release saw waiters queued. Under the lock it moves permits from COUNT
// to the queue's heads, one each, as many as both allow — including permits
// other releasers added meanwhile: whichever releaser holds the lock hands
// out what is there, and the others find nothing to do. The granted nodes
// leave the queue marked GRANTING; each learns of its permit (GRANTED) only
// after the lock is released, so no release touches the semaphore once a
// waiter it served can return.
void fair_semaphore_word::hand_off() noexcept {
  fair_semaphore_waiter* granted = nullptr;  // dequeued, linked through `next`
  queue_lock_.lock();
  std::uint64_t s = word_.load(std::memory_order_relaxed);
  std::uint32_t k = 0;
  do {
    k = std::min(semaphore_count(s), semaphore_high(s));
    if (k == 0) break;
    // acq_rel: the permits may be another releaser's; their writes travel
    // through this CAS and the GRANTED store below to the waiters.
  } while (!word_.compare_exchange_weak(s, s - k - k * one_queued, std::memory_order_acq_rel,
                                        std::memory_order_relaxed));
  fair_semaphore_waiter** last = &granted;
  for (std::uint32_t i = 0; i < k; ++i) {
    fair_semaphore_waiter* w = queue_.front();
    queue_.erase(w);
    w->state.fetch_or(fair_semaphore_waiter::granting, std::memory_order_relaxed);
    *last = w;
    last = &w->next;
  }
  queue_lock_.unlock();
  while (granted != nullptr) {
    fair_semaphore_waiter* const w = granted;
    granted = w->next;  // read before the waiter may return and reuse its stack
    const bool sleeping =
        (w->state.exchange(fair_semaphore_waiter::granted, std::memory_order_acq_rel) &
         fair_semaphore_waiter::parked) != 0;
    // A wake on a node whose thread has already returned is at worst a
    // spurious wake-up of some other futex waiter at that address.
    if (sleeping) futex::wake_one(w->state);
  }
}

bool fair_semaphore_word::leave_queue(fair_semaphore_waiter* w) noexcept {
  // Releases dequeue (and mark GRANTING) only under the queue lock, so under
  // it the node's state is final for this decision.
  queue_lock_.lock();
  const bool still_waiting =
      (w->state.load(std::memory_order_relaxed) &
       (fair_semaphore_waiter::granting | fair_semaphore_waiter::granted)) == 0;
  if (still_waiting) {
    queue_.erase(w);
    word_.fetch_sub(one_queued, std::memory_order_relaxed);
  }
  queue_lock_.unlock();
  return still_waiting;
}

// try_acquire() failed: no permit, or waiters queued. Under the queue lock
// the thread either takes a permit (one is free and nobody is queued) or
// queues, then waits on its own node for a release to grant it a permit.
bool fair_semaphore_word::acquire_contended(const futex::deadline& d) noexcept {
  fair_semaphore_waiter me;
  queue_lock_.lock();
  std::uint64_t s = word_.load(std::memory_order_relaxed);
  for (;;) {
    if (semaphore_count(s) != 0 && semaphore_high(s) == 0) {
      if (word_.compare_exchange_weak(s, s - 1, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        queue_lock_.unlock();
        return true;
      }
      continue;
    }
    // COUNT == 0, or a release is on its way to hand its permits to the
    // queue (COUNT > 0 with QUEUED > 0): queue behind the others.
    if (word_.compare_exchange_weak(s, s + one_queued, std::memory_order_relaxed)) break;
  }
  // First in line: the next permit released is this thread's.
  const bool first = semaphore_high(s) == 0;
  queue_.push_back(&me);
  queue_lock_.unlock();

  const futex::deadline* deadline = &d;
  std::uint32_t state = me.state.load(std::memory_order_acquire);
  if (first) {
    // Spin on this thread's own node (no shared line is polled); the
    // spinner's slot is released before the thread parks. A waiter behind
    // others parks at once: no permit can reach it before theirs, and on an
    // oversubscribed machine its spinning would take the CPU from the
    // threads it waits for — the granted ones that have yet to run.
    spinner spin;
    while ((state & fair_semaphore_waiter::granted) == 0 && spin.spin())
      state = me.state.load(std::memory_order_acquire);
  }
  while ((state & fair_semaphore_waiter::granted) == 0) {
    if ((state & fair_semaphore_waiter::parked) == 0) {
      if (!me.state.compare_exchange_strong(state, state | fair_semaphore_waiter::parked,
                                            std::memory_order_acq_rel))
        continue;  // a release marked the node meanwhile
      state |= fair_semaphore_waiter::parked;
    }
    const futex::wait_result r = futex::wait_until(me.state, state, *deadline);
    state = me.state.load(std::memory_order_acquire);
    if ((state & fair_semaphore_waiter::granted) != 0) break;
    if (r == futex::wait_result::timed_out || deadline->passed()) {
      if ((state & fair_semaphore_waiter::granting) == 0 && leave_queue(&me)) return false;
      // A release dequeued this node first: the permit is this thread's, and
      // GRANTED follows as soon as that release has left the lock.
      static constexpr futex::deadline never = futex::deadline::never();
      deadline = &never;
      state = me.state.load(std::memory_order_acquire);
    }
  }
  return true;
}

}  // namespace hwsync::detail
