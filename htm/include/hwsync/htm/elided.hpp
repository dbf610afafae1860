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
//   Size: Lock on a cache line of its own, the holder byte on the next one,
//   then the policy's counters on lines of their own (320 bytes in all for
//   hwsync::mutex): a counter on the lock word's line would abort every
//   transaction subscribed to it, and the holder byte on it would be read
//   from a line the waiters keep pulling away.
//   Cost when the backend is off (every machine without usable RTM, unless
//   HWSYNC_HTM=emulate): lock() is Lock's plus one relaxed load of the
//   process's backend and one predictable branch; unlock() is Lock's plus
//   two loads of lines nobody writes while the backend stays off (the
//   process's backend, the holder byte) and one predictable branch; no
//   CPUID, no counter, and nothing read from the lock word's line, which the
//   waiters keep pulling away.
//   Contended cost: unlock() must tell a plain hold from a transaction
//   before releasing, a branch on a load ahead of the release's locked
//   instruction: 1.11-1.13x the plain lock with 2 threads contending on the
//   2-core guest. scoped_lock keeps lock()'s decision for its release and
//   costs about 1.04x there (1.03-1.09 over five paired runs): prefer it
//   where the lock is contended.
//   Misuse: unlock() of an elided lock this thread does not hold aborts with
//   a message when the backend is rtm or policy_emulation (it is Lock's own
//   misuse when off).
//   What a critical section must not do while eliding on RTM: anything a
//   transaction cannot run (system calls, I/O, PAUSE-heavy waits, most
//   x87/AVX state changes) makes it abort and fall back — correct, but slow
//   if it happens every time; the adaptive policy then stops eliding it.
//   Do not XABORT with lock_busy_code yourself.
//
// The holder byte (on its own line, written only by a thread holding Lock
// for real; a hardware transaction never writes it) and the backend unlock()
// reads. A hardware transaction reads the backend right after XBEGIN, so a
// change of backend aborts it: a transaction that reaches unlock() saw the
// backend it began with.
//   holder, backend at unlock()   meaning                         unlock() does
//   none, off                     held by lock() with the backend Lock::unlock()
//                                 off (inline)
//   none, rtm, in a transaction   held by a transaction           commit (XEND)
//   none, not off, word locked    taken with the backend off,     Lock::unlock()
//                                 backend changed since           (out of line)
//   fallback                      held for real by this policy    Lock::unlock()
//   emulated_transaction          held by an emulated transaction commit: Lock::unlock()
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
    detail::elided_lock(site_, holder_.value, &lock_, ops, b);
  }

  bool try_lock() {
    const backend b = detail::current_backend.load(std::memory_order_relaxed);
    if (b == backend::off) [[likely]]
      return lock_.try_lock();
    return detail::elided_try_lock(site_, holder_.value, &lock_, ops, b);
  }

  void unlock() {
    // Backend off and no policy hold: what lock() does when the backend is
    // off (a transaction cannot be running: it would have aborted when the
    // backend changed). Neither load touches the lock word's line, so
    // Lock::unlock()'s read-modify-write is the only access to it. The
    // holder byte first: the other order measured 11.4 against 9.87 cycles
    // per uncontended pair on Zen 3 with identical instructions.
    if (holder_.value == detail::holder::none &&
        detail::current_backend.load(std::memory_order_relaxed) == backend::off) [[likely]] {
      lock_.unlock();
      return;
    }
    detail::elided_unlock(site_, holder_.value, &lock_, ops,
                          detail::current_backend.load(std::memory_order_relaxed));
  }

  // A scoped exclusive hold (like std::lock_guard) that remembers how it
  // took the lock, so its release tests a value already in a register
  // instead of branching on a load. Why it matters: a locked instruction
  // waits for the branches before it, so unlock()'s check puts a load's
  // latency between the critical section and the release, which is what a
  // contended hand-off waits for (2 threads contended: unlock() 1.11-1.13x
  // the plain lock, scoped_lock about 1.04x; docs/htm.md). Same guarantees
  // as lock()/unlock(); not movable.
  class scoped_lock {
   public:
    explicit scoped_lock(elided& l) : l_(l) {
      const backend b = detail::current_backend.load(std::memory_order_relaxed);
      plain_ = b == backend::off;
      if (plain_) [[likely]] {
        l_.lock_.lock();
      } else {
        detail::elided_lock(l_.site_, l_.holder_.value, &l_.lock_, ops, b);
      }
    }
    ~scoped_lock() {
      if (plain_) [[likely]] {
        l_.lock_.unlock();
      } else {
        detail::elided_unlock(l_.site_, l_.holder_.value, &l_.lock_, ops,
                              detail::current_backend.load(std::memory_order_relaxed));
      }
    }
    scoped_lock(const scoped_lock&) = delete;
    scoped_lock& operator=(const scoped_lock&) = delete;

   private:
    elided& l_;
    bool plain_;  // taken by Lock::lock() with the backend off
  };

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

  struct alignas(64) holder_line {
    detail::holder value = detail::holder::none;
  };

  alignas(64) Lock lock_;
  holder_line holder_;
  detail::elision_site site_;
};

}  // namespace hwsync::htm
