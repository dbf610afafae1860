// hwsync/htm/elided.hpp — htm::elided<Lock>: lock elision over an exclusive
// lock (hwsync::mutex, the exclusive side of hwsync::shared_mutex, or any
// lock meeting elidable_lock).
//
// Contract
//   Lockable (lock, try_lock, unlock), so std::lock_guard, std::unique_lock
//   and std::scoped_lock work; when Lock is SharedLockable, lock_shared,
//   try_lock_shared and unlock_shared pass through to it (never elided), so
//   std::shared_lock works too.
//   Guarantees: mutual exclusion exactly as Lock's. An elided critical
//   section either runs as a hardware transaction that read the lock word
//   first (so it aborts the moment anyone takes the lock for real) or holds
//   the lock. Writes are published on commit or unlock, with at least the
//   ordering of Lock's unlock (a committed RTM transaction is a full fence).
//   Blocking: as Lock when it falls back; while retrying it spins briefly
//   and yields (hwsync/htm/elision_policy.hpp), never without bound.
//   Fairness: as Lock for threads that fall back; transactions barge.
//   Size: Lock on a cache line of its own with one byte of holder state,
//   then the policy's counters on lines of their own (256 bytes in all for
//   hwsync::mutex): a counter on the lock word's line would abort every
//   transaction subscribed to it.
//   Cost when the backend is off (every machine without usable RTM, unless
//   HWSYNC_HTM=emulate): lock() is Lock's plus one relaxed load of the
//   process's backend and one predictable branch; unlock() is Lock's plus
//   two loads from the line lock() just wrote (the holder byte, the lock
//   word) and one predictable branch; no CPUID, no counter.
//   Misuse: unlock() of an elided lock this thread does not hold aborts with
//   a message when the backend is rtm or policy_emulation (it is Lock's own
//   misuse when off).
//   What a critical section must not do while eliding on RTM: anything a
//   transaction cannot run (system calls, I/O, PAUSE-heavy waits, most
//   x87/AVX state changes) makes it abort and fall back — correct, but slow
//   if it happens every time; the adaptive policy then stops eliding it.
//   Do not XABORT with lock_busy_code yourself.
//
// The holder byte (next to the lock, written only by a thread holding Lock
// for real; a hardware transaction never writes it)
//   state                 meaning                        unlock() does
//   none, word locked     held by lock() with the        Lock::unlock()
//                         backend off (inline)
//   none, word free       held by a transaction          commit (XEND)
//   fallback              held for real by this policy   Lock::unlock()
//   emulated_transaction  held by an emulated transaction commit: Lock::unlock()
#pragma once

#include <concepts>
#include <utility>

#include "hwsync/htm/elision_policy.hpp"
#include "hwsync/htm/statistics.hpp"

namespace hwsync::htm {

// A lock elision can subscribe to: exclusive lock/try_lock/unlock, and a
// const, noexcept is_locked() that reads the lock word (relaxed) and says
// whether anyone holds it in any mode.
template <class L>
concept elidable_lock = requires(L& l, const L& cl) {
  l.lock();
  { l.try_lock() } -> std::convertible_to<bool>;
  l.unlock();
  { cl.is_locked() }
  noexcept->std::convertible_to<bool>;
};

template <elidable_lock Lock>
class elided {
 public:
  using lock_type = Lock;

  elided() : site_(elision_tuning{}) {}
  explicit elided(const elision_tuning& tuning) : site_(tuning) {}
  elided(const elided&) = delete;
  elided& operator=(const elided&) = delete;

  void lock() {
    const backend b = detail::current_backend.load(std::memory_order_relaxed);
    if (b == backend::off) [[likely]] {
      lock_.lock();
      return;
    }
    detail::elided_lock(site_, holder_, &lock_, ops, b);
  }

  bool try_lock() {
    const backend b = detail::current_backend.load(std::memory_order_relaxed);
    if (b == backend::off) [[likely]]
      return lock_.try_lock();
    return detail::elided_try_lock(site_, holder_, &lock_, ops, b);
  }

  void unlock() {
    // Held for real and not by the policy: what lock() does when the backend
    // is off. A transaction sees the word free (it subscribed to it), and the
    // policy's own holds mark the holder byte; both go out of line. Both
    // loads hit the line lock() just wrote, so unlock() reads no global.
    if (holder_ == detail::holder::none && lock_.is_locked()) [[likely]] {
      lock_.unlock();
      return;
    }
    detail::elided_unlock(site_, holder_, &lock_, ops,
                          detail::current_backend.load(std::memory_order_relaxed));
  }

  void lock_shared() requires requires(Lock& l) { l.lock_shared(); }
  { lock_.lock_shared(); }
  bool try_lock_shared() requires requires(Lock& l) { l.try_lock_shared(); }
  { return lock_.try_lock_shared(); }
  void unlock_shared() requires requires(Lock& l) { l.unlock_shared(); }
  { lock_.unlock_shared(); }

  // This lock's counters and adaptive state (hwsync/htm/statistics.hpp).
  statistics stats() const noexcept { return site_.snapshot(); }
  const elision_tuning& tuning() const noexcept { return site_.tuning; }

  // The lock underneath, for what elision does not cover (its shared side,
  // its own statistics). Taking it exclusively behind elided's back is
  // correct (transactions see the word change and abort) but bypasses the
  // holder byte: release it the same way.
  Lock& underlying() noexcept { return lock_; }
  const Lock& underlying() const noexcept { return lock_; }

 private:
  static constexpr detail::lock_ops ops{
      [](const void* l) noexcept -> bool { return static_cast<const Lock*>(l)->is_locked(); },
      [](void* l) -> bool { return static_cast<Lock*>(l)->try_lock(); },
      [](void* l) { static_cast<Lock*>(l)->lock(); },
      [](void* l) { static_cast<Lock*>(l)->unlock(); },
  };

  alignas(64) Lock lock_;
  detail::holder holder_ = detail::holder::none;
  detail::elision_site site_;
};

}  // namespace hwsync::htm
