// hwsync/condition_variable.hpp — hwsync::condition_variable and
// hwsync::condition_variable_any.
//
// Contract
//   condition_variable: std::condition_variable's API over
//   std::unique_lock<hwsync::mutex>: wait, wait(pred), wait_for, wait_until
//   (steady_clock and system_clock deadlines go to the kernel as they are;
//   other clocks are waited in steady_clock slices), notify_one, notify_all.
//   condition_variable_any: the same over any BasicLockable, including
//   std::shared_lock<hwsync::shared_mutex<...>> and std::unique_lock of any
//   mutex.
//
//   Blocking     A waiter spins briefly (hwsync/spin.hpp), then parks on a
//                futex word of its own; notify makes a system call only for
//                a waiter that really parked.
//   Wake-ups     No spurious wake-ups from wait() (a waiter returns only when
//                notified, or on a timeout); callers keep their predicate
//                loops anyway, as std requires.
//   Order        notify_one wakes the longest-waiting thread (FIFO).
//   Lost wake-ups
//                None: a waiter is on the condition variable's list before
//                it releases the mutex, so a notify that follows the
//                release — under the mutex or not — finds it (glibc bug
//                25847 lost exactly such a wake-up).
//   notify_all   Wait morphing: the first waiter is woken; each waiter, once
//                it holds the mutex, moves its successor onto the mutex's
//                futex word (FUTEX_CMP_REQUEUE) and counts it among the
//                mutex's waiters, so the successor wakes when the mutex is
//                released instead of all of them waking at once to fight
//                for it (glibc's broadcast wakes all).
//   Destruction  Safe as soon as every waiter has been notified (std's
//                rule): notified waiters never touch the condition variable
//                again.
//   Ordering     wait() releases and re-acquires the mutex: everything
//                written under the mutex before notify is visible after
//                wait returns.
//   Size         condition_variable: 24 bytes (an internal lock word and a
//                list of waiters whose nodes live on the waiters' stacks).
//                condition_variable_any: 32 bytes (adds an internal mutex).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>  // std::cv_status
#include <cstdint>
#include <mutex>
#include <type_traits>

#include "hwsync/futex.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/waiter_list.hpp"

namespace hwsync {

namespace detail {

// One waiter, on its own stack for the length of one wait, on its own futex
// word so that it can be woken, or moved onto the mutex, alone.
//
//   state      set by                        meaning
//   waiting    the waiter                    on the list
//   signaled   notify_one / notify_all       take the mutex as any thread does
//   chained    notify_all                    off the list; the predecessor in the
//                                            chain will requeue this waiter
//   requeued   the predecessor, holding the  counted in the mutex's WAITERS and
//              mutex                         moved onto its futex word
//   leaving    the waiter (chained, timed    takes the mutex itself and passes
//              out)                          its own successor on
//   | parked   the waiter, before it sleeps  on waiting or chained: the waiter is
//                                            (or is about to be) in futex_wait,
//                                            so a notify must make a system call;
//                                            without it the waiter is spinning and
//                                            sees the new state by itself
struct cv_waiter {
  static constexpr std::uint32_t waiting = 0, signaled = 1, chained = 2, requeued = 3, leaving = 4,
                                 parked = 8;
  futex::word state{waiting};
  cv_waiter* next = nullptr;  // the list, under the condition variable's lock
  cv_waiter* prev = nullptr;
  cv_waiter* successor = nullptr;  // notify_all's chain
  mutex_word* mutex = nullptr;
};

}  // namespace detail

class condition_variable {
 public:
  condition_variable() noexcept = default;
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;

  void notify_one() noexcept;
  void notify_all() noexcept;

  void wait(std::unique_lock<mutex>& lock) { wait_impl(lock, nullptr); }

  template <class Predicate>
  void wait(std::unique_lock<mutex>& lock, Predicate pred) {
    while (!pred()) wait(lock);
  }

  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<mutex>& lock,
                            const std::chrono::time_point<Clock, Duration>& abs) {
    using namespace std::chrono;
    if constexpr (std::is_same_v<Clock, steady_clock> || std::is_same_v<Clock, system_clock>) {
      const auto d = futex::deadline::at(time_point_cast<typename Clock::duration>(abs));
      return wait_impl(lock, &d) ? std::cv_status::no_timeout : std::cv_status::timeout;
    } else {
      // A clock the kernel cannot wait on: steady_clock slices, re-reading it.
      for (auto now = Clock::now(); now < abs; now = Clock::now()) {
        const auto d =
            futex::deadline::at(steady_clock::now() + ceil<steady_clock::duration>(abs - now));
        if (wait_impl(lock, &d)) return std::cv_status::no_timeout;
      }
      return std::cv_status::timeout;
    }
  }

  template <class Clock, class Duration, class Predicate>
  bool wait_until(std::unique_lock<mutex>& lock,
                  const std::chrono::time_point<Clock, Duration>& abs, Predicate pred) {
    while (!pred()) {
      if (wait_until(lock, abs) == std::cv_status::timeout) return pred();
    }
    return true;
  }

  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lock,
                          const std::chrono::duration<Rep, Period>& rel) {
    return wait_until(lock, detail::steady_deadline(rel));
  }

  template <class Rep, class Period, class Predicate>
  bool wait_for(std::unique_lock<mutex>& lock, const std::chrono::duration<Rep, Period>& rel,
                Predicate pred) {
    return wait_until(lock, detail::steady_deadline(rel), std::move(pred));
  }

 private:
  // Returns false on a timeout. d null: no deadline.
  bool wait_impl(std::unique_lock<mutex>& lock, const futex::deadline* d);
  // Whether a timed-out waiter left the list before any notify reached it.
  bool leave_list(detail::cv_waiter* w) noexcept;

  detail::mutex_word list_lock_;
  detail::waiter_list<detail::cv_waiter> waiters_;
};

// condition_variable for any BasicLockable. An internal mutex closes the
// window between releasing the user's lock and joining the wait list; the
// user's lock is re-acquired after the internal one is released (never while
// holding it, so no lock-order cycle with a notifier holding the user's
// lock), also when the wait exits by an exception.
class condition_variable_any {
 public:
  condition_variable_any() noexcept = default;
  condition_variable_any(const condition_variable_any&) = delete;
  condition_variable_any& operator=(const condition_variable_any&) = delete;

  void notify_one() noexcept {
    std::lock_guard<mutex> g(internal_);
    cv_.notify_one();
  }
  void notify_all() noexcept {
    std::lock_guard<mutex> g(internal_);
    cv_.notify_all();
  }

  template <class Lock>
  void wait(Lock& lock) {
    wait_until(lock, std::chrono::steady_clock::time_point::max());
  }

  template <class Lock, class Predicate>
  void wait(Lock& lock, Predicate pred) {
    while (!pred()) wait(lock);
  }

  template <class Lock, class Clock, class Duration>
  std::cv_status wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& abs) {
    std::unique_lock<mutex> internal(internal_);
    struct relock {
      Lock& user;
      ~relock() noexcept(false) { user.lock(); }
    } relock_on_exit{lock};
    lock.unlock();
    std::unique_lock<mutex> waiting(std::move(internal));  // released before relock_on_exit
    if (abs == Clock::time_point::max()) {
      cv_.wait(waiting);
      return std::cv_status::no_timeout;
    }
    return cv_.wait_until(waiting, abs);
  }

  template <class Lock, class Clock, class Duration, class Predicate>
  bool wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& abs, Predicate pred) {
    while (!pred()) {
      if (wait_until(lock, abs) == std::cv_status::timeout) return pred();
    }
    return true;
  }

  template <class Lock, class Rep, class Period>
  std::cv_status wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& rel) {
    return wait_until(lock, detail::steady_deadline(rel));
  }

  template <class Lock, class Rep, class Period, class Predicate>
  bool wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& rel, Predicate pred) {
    return wait_until(lock, detail::steady_deadline(rel), std::move(pred));
  }

 private:
  mutex internal_;
  condition_variable cv_;
};

}  // namespace hwsync
