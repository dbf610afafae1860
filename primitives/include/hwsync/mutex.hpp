// hwsync/mutex.hpp — hwsync::mutex, timed_mutex, recursive_mutex and
// recursive_timed_mutex.
//
// Contract
//   Drop-in for std::mutex / std::timed_mutex: Lockable and TimedLockable,
//   so std::lock_guard, std::unique_lock and std::scoped_lock (deadlock-
//   avoiding over several) work unchanged.
//   Size          4 bytes: one futex word (8 with HWSYNC_DEBUG_CHECKS, which
//                 adds the owner's thread id). constexpr-constructible,
//                 so a namespace-scope mutex needs no dynamic initialization.
//   Fast paths    lock(): one inline CAS 0 -> LOCKED. unlock(): one atomic
//                 fetch_sub; the kernel is entered only if a waiter parked.
//   Ordering      lock() acquires, unlock() releases: everything written
//                 before an unlock() is visible after the next lock().
//   Blocking      Contended threads spin briefly (hwsync/spin.hpp: a bounded
//                 budget, one spinner per spare core), then park on the word
//                 with futex(2). Waiters never busy-wait without bound.
//   Fairness      Barging: a running thread may take a lock that a woken
//                 waiter was about to take (throughput). Eventual fairness:
//                 the lock is handed to a parked waiter — reserved for the
//                 waiters, so no newcomer, spinner or try_lock() can take it
//                 — when (a) a waiter re-parks after waiting longer than its
//                 bound (0.5 ms plus a random 0..1 ms per wait), or (b) an
//                 unlock() finds waiters parked and no fair unlock on this
//                 mutex for three bounds, 1.5-4.5 ms (as WebKit's Lock does:
//                 a sleeping waiter cannot ask for itself). Each hand-off is
//                 one-shot: the claiming waiter consumes it. No thread starves.
//   Timeouts      try_lock_for/try_lock_until: steady_clock deadlines wait on
//                 CLOCK_MONOTONIC, system_clock ones on CLOCK_REALTIME (a
//                 clock step moves the wake-up), any other clock is waited in
//                 steady_clock slices re-reading that clock.
//   Misuse        Unlock by a non-owner, relock by the holder, destroying a
//                 held mutex: undefined (as std) in release builds; an abort
//                 naming the mutex and the threads with HWSYNC_DEBUG_CHECKS.
//   Tools         ThreadSanitizer sees a mutex (lock-order inversions and
//                 races naming it); Clang's -Wthread-safety sees a capability.
//                 hwsync's lock-order checker and contention profiler see
//                 every acquisition (hwsync/lock_observer.hpp): one load and
//                 one branch each while they are off. So every lock here has
//                 a destructor (it drops the lock's entries, if the observers
//                 ever held any): constexpr-constructible, not trivially
//                 destructible.
//
// The lock word (32 bits)
//   bit 0      LOCKED    a thread holds the mutex
//   bit 1      WOKEN     a waiter is awake (woken, or spinning) and will look
//                        at the word again: unlock() need not wake another
//   bit 2      HANDOFF   hand-off mode: a free mutex is reserved for waiters
//   bits 3-31  WAITERS   threads registered to park (asleep or about to be)
//
//   state                         meaning                     next unlock()
//   0                             free, nobody waiting        (n/a)
//   LOCKED                        held, uncontended           fetch_sub only
//   LOCKED | W*n                  held, n parked              wakes one, sets WOKEN
//   LOCKED | WOKEN | W*n          held, a waiter is awake     no wake-up
//   W*n (+WOKEN)                  free, waiters about to run  (anyone may take)
//   LOCKED | HANDOFF | W*n        held, hand-off requested    reserves, wakes one
//   HANDOFF | W*n                 free, reserved for waiters  (only a waiter may take;
//                                                              taking clears HANDOFF)
//
//   Invariants: WOKEN set implies some waiter will re-read the word; HANDOFF
//   set implies WAITERS > 0; a thread parks only while LOCKED or HANDOFF is
//   set, so a free, unreserved mutex never has a sleeper nobody will wake.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>
#include <type_traits>

#include "hwsync/config.hpp"
#include "hwsync/debug_checks.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/lock_observer.hpp"
#include "hwsync/sanitizer.hpp"
#include "hwsync/thread_annotations.hpp"

namespace hwsync {

namespace detail {

// The lock word and its algorithm, shared by mutex and timed_mutex (and by
// later primitives that need a plain futex lock). No checks, no annotations.
class mutex_word {
 public:
  static constexpr std::uint32_t locked = 1u << 0;
  static constexpr std::uint32_t woken = 1u << 1;
  static constexpr std::uint32_t handoff = 1u << 2;
  static constexpr std::uint32_t one_waiter = 1u << 3;

  constexpr mutex_word() noexcept = default;

  void lock() noexcept {
    std::uint32_t expected = 0;
    if (!word_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                       std::memory_order_relaxed)) [[unlikely]]
      lock_contended(futex::deadline::never());
  }

  bool try_lock() noexcept {
    std::uint32_t s = word_.load(std::memory_order_relaxed);
    while ((s & (locked | handoff)) == 0) {
      if (word_.compare_exchange_weak(s, s | locked, std::memory_order_acquire,
                                      std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  bool lock_until(const futex::deadline& d) noexcept {
    std::uint32_t expected = 0;
    if (word_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                      std::memory_order_relaxed))
      return true;
    return lock_contended(d);
  }

  void unlock() noexcept {
    // Written as "new value != 0" so that GCC emits `lock sub` and branches
    // on its flags, instead of `lock xadd` and a compare of the returned
    // value (2.5 cycles of the 13.6 an uncontended pair costs on Zen 3).
    if (word_.fetch_sub(locked, std::memory_order_release) - locked != 0) [[unlikely]]
      unlock_contended(word_.load(std::memory_order_relaxed));
  }

  bool is_locked() const noexcept { return (word_.load(std::memory_order_relaxed) & locked) != 0; }
  std::uint32_t raw() const noexcept { return word_.load(std::memory_order_relaxed); }

  // Wait morphing (hwsync::condition_variable). The thread holding the lock
  // counts one more waiter on behalf of a thread it is about to requeue
  // onto this word with futex::cmp_requeue; the requeued thread, once it
  // runs, takes the lock as the registered waiter it now is. Together they
  // keep WAITERS exact, and the requeued thread sleeps here only while the
  // lock is held, as every waiter does.
  void add_requeued_waiter() noexcept { word_.fetch_add(one_waiter, std::memory_order_relaxed); }
  void lock_requeued() noexcept { lock_contended(futex::deadline::never(), true); }
  const futex::word& futex_word() const noexcept { return word_; }

 private:
  bool lock_contended(const futex::deadline& d, bool registered = false) noexcept;
  void unlock_contended(std::uint32_t state) noexcept;

  futex::word word_{0};
};

// Owner tracking for HWSYNC_DEBUG_CHECKS builds; empty otherwise.
class owner_check {
 public:
  void before_lock(const char* type, const void* m) const noexcept {
    if constexpr (debug::checks_enabled) {
      if (owner_.load(std::memory_order_relaxed) == debug::this_thread_id())
        debug::misuse(type, m, "lock() by the thread that already holds it (would deadlock)");
    }
  }
  void locked_by_me() noexcept {
    if constexpr (debug::checks_enabled)
      owner_.store(debug::this_thread_id(), std::memory_order_relaxed);
  }
  void before_unlock(const char* type, const void* m) noexcept {
    if constexpr (debug::checks_enabled) {
      const pid_t holder = owner_.load(std::memory_order_relaxed);
      if (holder != debug::this_thread_id()) {
        if (holder == 0) debug::misuse(type, m, "unlock() of a mutex that is not locked");
        debug::misuse(type, m, "unlock() by a thread that does not hold it; held by", holder);
      }
      owner_.store(0, std::memory_order_relaxed);
    }
  }
  void on_destroy(const char* type, const void* m, const mutex_word& w) const noexcept {
    if constexpr (debug::checks_enabled) {
      if (w.is_locked())
        debug::misuse(type, m, "destroyed while locked; held by",
                      owner_.load(std::memory_order_relaxed));
    }
  }

 private:
  struct none {
    constexpr none() noexcept = default;
    pid_t load(std::memory_order) const noexcept { return 0; }
    void store(pid_t, std::memory_order) noexcept {}
  };
  [[no_unique_address]] std::conditional_t<debug::checks_enabled, std::atomic<pid_t>, none>
      owner_{};
};

// The steady_clock deadline a relative timeout means (rounded up, so that a
// wait for d never returns before d has passed): what every _for member
// hands to its _until counterpart.
template <class Rep, class Period>
std::chrono::steady_clock::time_point steady_deadline(
    const std::chrono::duration<Rep, Period>& rel) {
  return std::chrono::steady_clock::now() +
         std::chrono::ceil<std::chrono::steady_clock::duration>(rel);
}

// Runs attempt(deadline*) until `abs` on any clock: steady_clock and
// system_clock deadlines go to the kernel as they are (CLOCK_MONOTONIC /
// CLOCK_REALTIME); a clock the kernel cannot wait on is waited in
// steady_clock slices, re-reading that clock, which may run at another rate
// or jump. A deadline already past makes one attempt (attempt(nullptr)),
// without spinning.
template <class Clock, class Duration, class Attempt>
bool wait_until_on(const std::chrono::time_point<Clock, Duration>& abs, Attempt attempt) {
  using namespace std::chrono;
  if constexpr (std::is_same_v<Clock, steady_clock> || std::is_same_v<Clock, system_clock>) {
    const auto d = futex::deadline::at(time_point_cast<typename Clock::duration>(abs));
    return attempt(d.passed() ? nullptr : &d);
  } else {
    for (;;) {
      const auto now = Clock::now();
      if (now >= abs) return attempt(nullptr);
      const auto d =
          futex::deadline::at(steady_clock::now() + ceil<steady_clock::duration>(abs - now));
      if (attempt(&d)) return true;
    }
  }
}

// The lock word with the tools around it — owner tracking for debug checks
// and the ThreadSanitizer annotations — shared by mutex and timed_mutex,
// which are thin wrappers carrying the capability attributes. `type` names
// the public type in misuse messages; `self` is the public object, the
// address TSan and the messages show.
class checked_mutex_word {
 public:
  void lock(const char* type, void* self) noexcept {
    owner_.before_lock(type, self);
    const observe::attempt seen(self, observe::until_acquired);
    tsan::pre_lock(self, 0);
    word_.lock();
    tsan::post_lock(self, 0, 0);
    owner_.locked_by_me();
    seen.acquired();
  }

  // One attempt when `d` is null (try_lock, or an expired deadline), else
  // waits until *d.
  bool try_lock(const futex::deadline* d, const char* type, void* self) noexcept {
    owner_.before_lock(type, self);
    const observe::attempt seen(self, d != nullptr);
    tsan::pre_lock(self, tsan::flag::try_lock);
    const bool ok = d == nullptr ? word_.try_lock() : word_.lock_until(*d);
    tsan::post_lock(
        self, ok ? tsan::flag::try_lock : tsan::flag::try_lock | tsan::flag::try_lock_failed, 0);
    if (ok) owner_.locked_by_me();
    if (ok) seen.acquired();
    return ok;
  }

  void unlock(const char* type, void* self) noexcept {
    owner_.before_unlock(type, self);
    observe::released(self);
    tsan::pre_unlock(self, 0);
    word_.unlock();
    tsan::post_unlock(self, 0);
  }

  void destroy(const char* type, void* self) noexcept {
    owner_.on_destroy(type, self, word_);
    tsan::mutex_destroy(self, 0);
  }

  // For condition_variable's wait morphing (see mutex_word).
  void lock_requeued(const char* type, void* self) noexcept {
    owner_.before_lock(type, self);
    const observe::attempt seen(self, observe::until_acquired);
    tsan::pre_lock(self, 0);
    word_.lock_requeued();
    tsan::post_lock(self, 0, 0);
    owner_.locked_by_me();
    seen.acquired();
  }
  mutex_word& word() noexcept { return word_; }
  bool is_locked() const noexcept { return word_.is_locked(); }

 private:
  mutex_word word_;
  [[no_unique_address]] owner_check owner_;
};

}  // namespace detail

class HWSYNC_CAPABILITY("mutex") mutex {
 public:
  constexpr mutex() noexcept = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;
  ~mutex() {
#if HWSYNC_DEBUG_CHECKS || HWSYNC_TSAN
    impl_.destroy(type_name, this);
#endif
    detail::observe::destroyed(this);
  }

  void lock() HWSYNC_ACQUIRE() {
    impl_.lock(type_name, this);
  }
  bool try_lock() HWSYNC_TRY_ACQUIRE(true) {
    return impl_.try_lock(nullptr, type_name, this);
  }
  void unlock() HWSYNC_RELEASE() {
    impl_.unlock(type_name, this);
  }
  // Relaxed read of LOCKED, no ordering: lock elision (htm::elided) subscribes to the word with it.
  bool is_locked() const noexcept {
    return impl_.is_locked();
  }

 private:
  friend class condition_variable;
  static constexpr const char* type_name = "hwsync::mutex";
  detail::checked_mutex_word impl_;
};

class HWSYNC_CAPABILITY("mutex") timed_mutex {
 public:
  constexpr timed_mutex() noexcept = default;
  timed_mutex(const timed_mutex&) = delete;
  timed_mutex& operator=(const timed_mutex&) = delete;
  ~timed_mutex() {
#if HWSYNC_DEBUG_CHECKS || HWSYNC_TSAN
    impl_.destroy(type_name, this);
#endif
    detail::observe::destroyed(this);
  }

  void lock() HWSYNC_ACQUIRE() {
    impl_.lock(type_name, this);
  }
  bool try_lock() HWSYNC_TRY_ACQUIRE(true) {
    return impl_.try_lock(nullptr, type_name, this);
  }
  void unlock() HWSYNC_RELEASE() {
    impl_.unlock(type_name, this);
  }

  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) HWSYNC_TRY_ACQUIRE(true) {
    return try_lock_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs)
      HWSYNC_TRY_ACQUIRE(true) {
    return detail::wait_until_on(
        abs, [&](const futex::deadline* d) { return impl_.try_lock(d, type_name, this); });
  }

 private:
  static constexpr const char* type_name = "hwsync::timed_mutex";
  detail::checked_mutex_word impl_;
};

namespace detail {

// Owner and depth over the same lock word. The owner is pthread_self(),
// compared only by the thread that may equal it, so a relaxed atomic is
// enough. Depth is a template parameter so that tests can reach the
// overflow without 2^32 locks.
template <class Depth>
class basic_recursive_mutex {
 public:
  static constexpr Depth max_depth = static_cast<Depth>(~Depth{0});

  void lock(const char* type, void* self) {
    if (held_by_me()) {
      if (depth_ == max_depth) throw_depth_overflow(type);
      relock(self);
      return;
    }
    const observe::attempt seen(self, observe::until_acquired);
    tsan::pre_lock(self, tsan::flag::write_reentrant);
    word_.lock();
    owner_.store(pthread_self(), std::memory_order_relaxed);
    depth_ = 1;
    tsan::post_lock(self, tsan::flag::write_reentrant, 0);
    seen.acquired();
  }

  // d null: one attempt. A depth overflow fails the attempt, as std allows.
  bool try_lock(const futex::deadline* d, void* self) noexcept {
    if (held_by_me()) {
      if (depth_ == max_depth) return false;
      relock(self);
      return true;
    }
    constexpr unsigned f = tsan::flag::write_reentrant | tsan::flag::try_lock;
    const observe::attempt seen(self, d != nullptr);
    tsan::pre_lock(self, f);
    const bool ok = d == nullptr ? word_.try_lock() : word_.lock_until(*d);
    if (ok) {
      owner_.store(pthread_self(), std::memory_order_relaxed);
      depth_ = 1;
    }
    tsan::post_lock(self, ok ? f : f | tsan::flag::try_lock_failed, 0);
    if (ok) seen.acquired();
    return ok;
  }

  void unlock(const char* type, void* self) noexcept {
    if constexpr (debug::checks_enabled) {
      if (!held_by_me()) debug::misuse(type, self, "unlock() by a thread that does not hold it");
    }
    if (depth_ == 1) observe::released(self);
    tsan::pre_unlock(self, tsan::flag::write_reentrant);
    if (--depth_ == 0) {
      owner_.store(pthread_t{}, std::memory_order_relaxed);
      word_.unlock();
    }
    tsan::post_unlock(self, tsan::flag::write_reentrant);
  }

  void destroy(const char* type, void* self) noexcept {
    if constexpr (debug::checks_enabled) {
      if (word_.is_locked()) debug::misuse(type, self, "destroyed while locked");
    }
    tsan::mutex_destroy(self, tsan::flag::write_reentrant);
  }

  Depth depth() const noexcept { return depth_; }

 private:
  bool held_by_me() const noexcept {
    return pthread_equal(owner_.load(std::memory_order_relaxed), pthread_self()) != 0;
  }
  void relock(void* self) noexcept {
    tsan::pre_lock(self, tsan::flag::write_reentrant);
    ++depth_;
    tsan::post_lock(self, tsan::flag::write_reentrant, 0);
  }
  [[noreturn]] static void throw_depth_overflow(const char* type) {
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                            std::string(type) + ": lock() by the holder at the maximum depth " +
                                std::to_string(static_cast<unsigned long long>(max_depth)));
  }

  mutex_word word_;
  Depth depth_ = 0;  // written only by the owner
  std::atomic<pthread_t> owner_{};
};

}  // namespace detail

// std::recursive_mutex's API: the holder may lock again, and must unlock as
// many times. 16 bytes (lock word, depth, owner). lock() at the maximum
// depth (2^32 - 1) throws std::system_error(resource_unavailable_try_again),
// like glibc's EAGAIN; try_lock() returns false there. Otherwise as mutex:
// the same lock word, spinning, parking and fairness.
class HWSYNC_CAPABILITY("mutex") recursive_mutex {
 public:
  recursive_mutex() noexcept = default;
  recursive_mutex(const recursive_mutex&) = delete;
  recursive_mutex& operator=(const recursive_mutex&) = delete;
  ~recursive_mutex() {
#if HWSYNC_DEBUG_CHECKS || HWSYNC_TSAN
    impl_.destroy(type_name, this);
#endif
    detail::observe::destroyed(this);
  }

  void lock() HWSYNC_ACQUIRE() {
    impl_.lock(type_name, this);
  }
  bool try_lock() noexcept HWSYNC_TRY_ACQUIRE(true) {
    return impl_.try_lock(nullptr, this);
  }
  void unlock() HWSYNC_RELEASE() {
    impl_.unlock(type_name, this);
  }

 private:
  static constexpr const char* type_name = "hwsync::recursive_mutex";
  detail::basic_recursive_mutex<std::uint32_t> impl_;
};

// recursive_mutex with try_lock_for / try_lock_until (clocks as timed_mutex).
class HWSYNC_CAPABILITY("mutex") recursive_timed_mutex {
 public:
  recursive_timed_mutex() noexcept = default;
  recursive_timed_mutex(const recursive_timed_mutex&) = delete;
  recursive_timed_mutex& operator=(const recursive_timed_mutex&) = delete;
  ~recursive_timed_mutex() {
#if HWSYNC_DEBUG_CHECKS || HWSYNC_TSAN
    impl_.destroy(type_name, this);
#endif
    detail::observe::destroyed(this);
  }

  void lock() HWSYNC_ACQUIRE() {
    impl_.lock(type_name, this);
  }
  bool try_lock() noexcept HWSYNC_TRY_ACQUIRE(true) {
    return impl_.try_lock(nullptr, this);
  }
  void unlock() HWSYNC_RELEASE() {
    impl_.unlock(type_name, this);
  }

  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) HWSYNC_TRY_ACQUIRE(true) {
    return try_lock_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs)
      HWSYNC_TRY_ACQUIRE(true) {
    return detail::wait_until_on(abs,
                                 [&](const futex::deadline* d) { return impl_.try_lock(d, this); });
  }

 private:
  static constexpr const char* type_name = "hwsync::recursive_timed_mutex";
  detail::basic_recursive_mutex<std::uint32_t> impl_;
};

#if !HWSYNC_DEBUG_CHECKS
static_assert(sizeof(mutex) == 4, "hwsync::mutex is one futex word");
static_assert(sizeof(timed_mutex) == 4, "hwsync::timed_mutex is one futex word");
#endif

}  // namespace hwsync
