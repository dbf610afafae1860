// hwsync::condition_variable: the wait list, notify, and wait morphing. The
// waiter states are tabled in hwsync/condition_variable.hpp.
#include "hwsync/condition_variable.hpp"

#include "hwsync/debug_checks.hpp"
#include "hwsync/spin.hpp"

namespace hwsync {

using detail::cv_waiter;

void condition_variable::notify_one() noexcept {
  list_lock_.lock();
  cv_waiter* w = waiters_.front();
  bool sleeping = false;
  if (w) {
    waiters_.erase(w);
    sleeping = (w->state.exchange(cv_waiter::signaled, std::memory_order_acq_rel) &
                cv_waiter::parked) != 0;
  }
  list_lock_.unlock();
  // The waiter may already have seen `signaled`, returned and reused its
  // stack: a wake on that address is at worst a spurious wake-up of some
  // other futex waiter there, which every futex user tolerates.
  if (sleeping) futex::wake_one(w->state);
}

void condition_variable::notify_all() noexcept {
  list_lock_.lock();
  cv_waiter* first = waiters_.take_all();
  bool first_sleeping = false;
  // Each waiter learns its successor before its new state is published, and
  // the loop reads nothing of a node after publishing it: the first waiter
  // may run, finish and free its node at once.
  for (cv_waiter* w = first; w != nullptr;) {
    cv_waiter* const next = w->next;
    w->successor = next;
    if (w == first) {
      first_sleeping = (w->state.exchange(cv_waiter::signaled, std::memory_order_acq_rel) &
                        cv_waiter::parked) != 0;
    } else {
      // Keep `parked`: the predecessor must know whether to requeue.
      std::uint32_t s = w->state.load(std::memory_order_relaxed);
      while (!w->state.compare_exchange_weak(s, cv_waiter::chained | (s & cv_waiter::parked),
                                             std::memory_order_acq_rel)) {
      }
    }
    w = next;
  }
  list_lock_.unlock();
  if (first_sleeping) futex::wake_one(first->state);
}

bool condition_variable::leave_list(cv_waiter* w) noexcept {
  // notify moves a waiter off `waiting` only under the list lock, so under
  // it the state read here is final for this decision.
  list_lock_.lock();
  const bool still_waiting =
      (w->state.load(std::memory_order_relaxed) & ~cv_waiter::parked) == cv_waiter::waiting;
  if (still_waiting) waiters_.erase(w);
  list_lock_.unlock();
  return still_waiting;
}

namespace {

// The holder of `successor`'s mutex moves the successor onto the mutex: it
// counts it among the mutex's waiters, then requeues it from its own futex
// word. The successor cannot take the mutex before this thread releases it,
// so the count is in place before the successor can consume it. A successor
// that timed out first (`leaving`) takes the mutex by itself and carries the
// chain on.
void pass_chain(cv_waiter* successor) noexcept {
  std::uint32_t s = successor->state.load(std::memory_order_acquire);
  do {
    if ((s & ~cv_waiter::parked) != cv_waiter::chained) return;  // leaving
  } while (
      !successor->state.compare_exchange_weak(s, cv_waiter::requeued, std::memory_order_acq_rel));
  detail::mutex_word& m = *successor->mutex;
  m.add_requeued_waiter();
  // A successor that never parked sees `requeued` by itself.
  if (s & cv_waiter::parked)
    futex::cmp_requeue(successor->state, m.futex_word(), cv_waiter::requeued, 0, 1);
}

}  // namespace

bool condition_variable::wait_impl(std::unique_lock<mutex>& lock, const futex::deadline* d) {
  mutex* m = lock.mutex();
  if constexpr (debug::checks_enabled) {
    if (m == nullptr || !lock.owns_lock())
      debug::misuse("hwsync::condition_variable", this,
                    "wait() with a unique_lock that does not own its mutex");
  }
  cv_waiter me;
  me.mutex = &m->impl_.word();
  list_lock_.lock();
  waiters_.push_back(&me);
  list_lock_.unlock();
  m->unlock();

  bool timed_out = false;
  std::uint32_t state = me.state.load(std::memory_order_acquire);
  auto still_waiting = [](std::uint32_t st) {
    const std::uint32_t base = st & ~cv_waiter::parked;
    return base == cv_waiter::waiting || base == cv_waiter::chained;
  };
  {
    // Spin first; the spinner (and its slot) ends before the mutex is taken
    // again, which may want to spin too.
    spinner spin;
    while (still_waiting(state)) {
      if ((state & cv_waiter::parked) == 0) {
        if (spin.spin()) {
          state = me.state.load(std::memory_order_acquire);
          continue;
        }
        if (!me.state.compare_exchange_strong(state, state | cv_waiter::parked,
                                              std::memory_order_acq_rel))
          continue;
        state |= cv_waiter::parked;
      }
      const futex::wait_result r =
          d ? futex::wait_until(me.state, state, *d) : futex::wait(me.state, state);
      state = me.state.load(std::memory_order_acquire);
      if (r != futex::wait_result::timed_out) continue;
      d = nullptr;  // from here on, wait only for what a notify already started
      const std::uint32_t base = state & ~cv_waiter::parked;
      if (base == cv_waiter::waiting && leave_list(&me)) {
        timed_out = true;
        break;
      }
      if (base == cv_waiter::chained &&
          me.state.compare_exchange_strong(state, cv_waiter::leaving, std::memory_order_acq_rel)) {
        timed_out = true;
        break;
      }
      state = me.state.load(std::memory_order_acquire);
    }
  }

  if (state == cv_waiter::requeued) {
    m->impl_.lock_requeued(mutex::type_name, m);
  } else {
    m->lock();
  }
  if (me.successor) pass_chain(me.successor);
  return !timed_out;
}

}  // namespace hwsync
