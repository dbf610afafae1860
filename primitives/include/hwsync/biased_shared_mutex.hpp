// hwsync/biased_shared_mutex.hpp — hwsync::biased_shared_mutex, a
// reader-writer lock biased towards readers for read-mostly data (BRAVO:
// Dice & Kogan, "BRAVO — Biased Locking for Reader-Writer Locks", USENIX ATC
// 2019). Declared with the other reader-writer locks by hwsync/shared_mutex.hpp.
//
// Contract
//   Drop-in for std::shared_mutex / std::shared_timed_mutex (SharedTimedMutex:
//   lock, try_lock, try_lock_for/until, unlock and their _shared
//   counterparts); std::shared_lock, std::unique_lock, std::lock_guard and
//   std::scoped_lock work unchanged. No upgradeable mode.
//   Idea          A shared_mutex<phase_fair> underneath, plus a bias. While
//                 the bias is on, a reader does not touch the lock at all: it
//                 publishes (lock, thread) in a slot of the process-wide
//                 visible-readers table, chosen by hashing the lock's address
//                 and the thread, and re-checks the bias. Readers on
//                 different cores then write different cache lines, where a
//                 plain reader-writer lock has every reader write the one
//                 lock word (the line ping-pongs between cores, which is what
//                 caps std::shared_mutex's read throughput). A writer takes
//                 the underlying lock, turns the bias off ("revocation") and
//                 waits until no slot names the lock. A reader whose slot is
//                 taken (a hash collision) or that finds the bias off takes
//                 the underlying lock shared, as with any rwlock.
//   Re-bias       A reader on the slow path turns the bias back on once the
//                 inhibition the last revocation set has run out: revocation
//                 took r ticks, so the bias stays off for 9r after it (the
//                 paper's N = 9), which bounds what revocations can cost
//                 writers to about 10% of their time however often they come.
//   Size          32 bytes: the 32-bit bias word, the 64-bit underlying lock
//                 word, the inhibition deadline and a pointer to the table
//                 (48 with HWSYNC_DEBUG_CHECKS). Not constexpr-constructible
//                 (the table pointer is filled in by the constructor).
//   Fast paths    lock_shared() with the bias on: a load, a CAS on the slot,
//                 a relaxed store, a load; no write to any line another
//                 reader writes. unlock_shared(): two loads and two plain
//                 stores to the slot, one load of the bias word.
//                 lock()/unlock(): the underlying lock's, plus the
//                 revocation when the bias is on (a scan of the table,
//                 about 32 KiB, and the wait for the published readers).
//   Ordering      As shared_mutex: every acquisition acquires, every release
//                 releases. Reader and writer meet Dekker-style: the reader
//                 stores its slot and then loads the bias word, the writer
//                 stores the bias word and then loads the slots, all
//                 seq_cst, so at least one of them sees the other.
//   Blocking      Readers on the slow path and writers: as shared_mutex
//                 (spin, then park on futex words). A revoking writer spins
//                 briefly, then parks on the bias word; a fast-path reader
//                 leaving during a revocation bumps the word and wakes it.
//                 The writer's park has a time limit (20 µs doubling to
//                 1 ms): the reader's unlock has no fence, so in a window of
//                 a few nanoseconds it can miss that a revocation started,
//                 and the time limit is what catches that rare case.
//   Fairness      Writers against slow-path readers: phase-fair (see
//                 shared_mutex.hpp). Writers against fast-path readers: a
//                 revoking writer holds the underlying lock, so no new
//                 reader enters on either path; it waits only for readers
//                 already published, each for one critical section. So a
//                 writer never waits for more than one read phase plus one
//                 revocation.
//   The table     One per process, however many shared objects link hwsync:
//                 it lives in libhwsync_primitives (default visibility, never
//                 an inline variable in a header, which a shared object built
//                 with hidden visibility would duplicate — folly#1558). And
//                 each lock records the table its constructor found and only
//                 ever uses that one, and a slot records the thread by its
//                 thread pointer (the same in every shared object), so a lock
//                 stays correct even if a static copy of hwsync in some
//                 shared object were to bring a second table.
//   Misuse        Undefined (as std) in release builds; with
//                 HWSYNC_DEBUG_CHECKS an abort naming the lock and the
//                 thread: relocking in any mode by a thread that holds it in
//                 any mode (a reader asking for the exclusive lock would wait
//                 for its own slot for ever), unlock() by a non-owner,
//                 unlock_shared() by a thread that holds no shared lock,
//                 destroying a held lock.
//   Tools         ThreadSanitizer sees one reader-writer mutex at the
//                 object's address; Clang's -Wthread-safety sees a
//                 capability with shared and exclusive modes. hwsync's
//                 lock-order checker and contention profiler see every
//                 acquisition on either path (hwsync/lock_observer.hpp; one
//                 load and one branch while off); the destructor drops the
//                 lock's entries, if they ever held any.
//
// The bias word (32 bits; the revoking writer parks on it)
//   bit 0      BIAS       readers may publish instead of locking
//   bit 1      REVOKING   a writer holds the underlying lock and waits for
//                         published readers to leave
//   bits 2-31  LEFT       bumped by a reader that left during a revocation,
//                         so that the writer's park sees the word change
//
//   state          who changes it                 meaning
//   0              -                              bias off: every reader locks
//   BIAS           a slow-path reader, holding    bias on: readers publish
//                  the lock shared, once the
//                  inhibition has run out
//   REVOKING (+k)  the writer (BIAS -> REVOKING)  revocation in progress;
//                  readers leaving (+LEFT)        no reader publishes
//   0 (+k)         the writer, when no slot       revoked: the writer holds
//                  names the lock any more          the lock
//   BIAS (+k)      a try_lock/timed writer that   readers still published:
//                  gave up (REVOKING -> BIAS)       it releases the lock
//
//   Invariant: BIAS clear (and REVOKING clear) implies no slot names the
//   lock. That is what lets a writer that finds the bias off skip the scan.
//
// A slot of the visible-readers table: {lock address, thread pointer}. A
// reader claims it with a CAS of the lock field from null, then writes the
// thread; it leaves by clearing the thread and then the lock. So a thread
// that took the slow path but hashes to the slot another thread holds for the
// same lock sees a different thread there and unlocks the underlying lock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "hwsync/config.hpp"
#include "hwsync/cycle_clock.hpp"
#include "hwsync/debug_checks.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/lock_observer.hpp"
#include "hwsync/sanitizer.hpp"
#include "hwsync/shared_mutex.hpp"
#include "hwsync/thread_annotations.hpp"

namespace hwsync {

namespace detail {

// The calling thread, as the same number in every shared object: the thread
// pointer (the TCB address %fs points at, which pthread_self() also
// returns). Never 0.
inline std::uintptr_t reader_identity() noexcept {
  return reinterpret_cast<std::uintptr_t>(__builtin_thread_pointer());
}

struct visible_reader_slot {
  std::atomic<const void*> lock{nullptr};
  std::atomic<std::uintptr_t> thread{0};
};

class visible_readers_table {
 public:
  // 2048 slots of 16 bytes: 32 KiB, as BRAVO's 4096 pointers. With few
  // threads per lock a collision is rare, and one costs only the slow path.
  static constexpr std::size_t slot_count = 2048;

  visible_reader_slot& slot_for(const void* lock, std::uintptr_t thread) noexcept {
    return slots_[index(lock, thread)];
  }
  static std::size_t index(const void* lock, std::uintptr_t thread) noexcept {
    // splitmix64's finaliser over both addresses. Both multiplications
    // matter: with one, two threads whose pointers differ in a few bits land
    // in different slots for every lock or the same slot for most locks.
    std::uint64_t h = reinterpret_cast<std::uintptr_t>(lock) * 0x9E3779B97F4A7C15ull ^ thread;
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    return static_cast<std::size_t>((h ^ (h >> 31)) >> (64 - 11));
  }
  visible_reader_slot* begin() noexcept { return slots_; }
  visible_reader_slot* end() noexcept { return slots_ + slot_count; }
  const visible_reader_slot* begin() const noexcept { return slots_; }
  const visible_reader_slot* end() const noexcept { return slots_ + slot_count; }

 private:
  alignas(64) visible_reader_slot slots_[slot_count];
};
static_assert(std::size_t{1} << 11 == visible_readers_table::slot_count);

// The process's table (defined in src/biased_shared_mutex.cpp).
visible_readers_table& process_visible_readers() noexcept;

struct biased_shared_mutex_access;

}  // namespace detail

class HWSYNC_CAPABILITY("shared_mutex") biased_shared_mutex {
 public:
  biased_shared_mutex() noexcept : table_(&detail::process_visible_readers()) {}
  biased_shared_mutex(const biased_shared_mutex&) = delete;
  biased_shared_mutex& operator=(const biased_shared_mutex&) = delete;
  ~biased_shared_mutex() {
#if HWSYNC_DEBUG_CHECKS || HWSYNC_TSAN
    check_.on_destroy(type_name, this, word_.raw());
    if constexpr (debug::checks_enabled) check_no_published_reader();
    tsan::mutex_destroy(this, 0);
#endif
    detail::observe::destroyed(this);
  }

  // Exclusive ---------------------------------------------------------------

  void lock() HWSYNC_ACQUIRE() {
    check_.before_acquire(type_name, this, "lock()");
    const detail::observe::attempt seen(this, detail::observe::until_acquired);
    tsan::pre_lock(this, 0);
    word_.lock();
    if ((bias_.load(std::memory_order_relaxed) & bias) != 0) {
      const auto never = futex::deadline::never();
      revoke(&never);
    }
    tsan::post_lock(this, 0, 0);
    check_.writer_is_me();
    seen.acquired();
  }

  // Fails while readers published through the bias are inside (it does not
  // wait for them). The timed members wait for them until the deadline; one
  // that gives up leaves the bias on, as it found it.
  bool try_lock() HWSYNC_TRY_ACQUIRE(true) {
    return observed_try_exclusive(nullptr);
  }

  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) HWSYNC_TRY_ACQUIRE(true) {
    return try_lock_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs)
      HWSYNC_TRY_ACQUIRE(true) {
    return detail::wait_until_on(
        abs, [this](const futex::deadline* d) { return observed_try_exclusive(d); });
  }

  void unlock() HWSYNC_RELEASE() {
    check_.before_unlock(type_name, this);
    detail::observe::released(this);
    tsan::pre_unlock(this, 0);
    word_.unlock();
    tsan::post_unlock(this, 0);
  }

  // Shared ------------------------------------------------------------------

  void lock_shared() HWSYNC_ACQUIRE_SHARED() {
    check_.before_acquire(type_name, this, "lock_shared()");
    const detail::observe::attempt seen(this, detail::observe::until_acquired);
    tsan::pre_lock(this, tsan::flag::read_lock);
    if (!try_publish()) {
      const auto never = futex::deadline::never();
      lock_shared_slow(&never);
    }
    tsan::post_lock(this, tsan::flag::read_lock, 0);
    check_.reader_is_me(this);
    seen.acquired(detail::observe::mode::shared);
  }

  bool try_lock_shared() HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return observed_try_shared(nullptr);
  }

  template <class Rep, class Period>
  bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& rel)
      HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return try_lock_shared_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& abs)
      HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return detail::wait_until_on(
        abs, [this](const futex::deadline* d) { return observed_try_shared(d); });
  }

  void unlock_shared() HWSYNC_RELEASE_SHARED() {
    check_.before_unlock_shared(type_name, this);
    detail::observe::released(this);
    tsan::pre_unlock(this, tsan::flag::read_lock);
    detail::visible_reader_slot& slot = table_->slot_for(this, detail::reader_identity());
    if (slot.lock.load(std::memory_order_relaxed) == this &&
        slot.thread.load(std::memory_order_relaxed) == detail::reader_identity()) {
      slot.thread.store(0, std::memory_order_relaxed);
      slot.lock.store(nullptr, std::memory_order_release);
      if ((bias_.load(std::memory_order_relaxed) & revoking) != 0) [[unlikely]]
        reader_left_during_revocation();
    } else {
      word_.unlock_shared();
    }
    tsan::post_unlock(this, tsan::flag::read_lock);
  }

  // Whether readers publish instead of locking right now: a snapshot, for
  // statistics and tests.
  bool reader_bias() const noexcept {
    return (bias_.load(std::memory_order_relaxed) & bias) != 0;
  }

 private:
  friend struct detail::biased_shared_mutex_access;
  using word_type = detail::rw_word<detail::rw_kind::phase_fair>;

  static constexpr const char* type_name = "hwsync::biased_shared_mutex";
  static constexpr std::uint32_t bias = 1u << 0;
  static constexpr std::uint32_t revoking = 1u << 1;
  static constexpr std::uint32_t one_left = 1u << 2;
  // BRAVO's N: the bias stays off for this many times the revocation's cost.
  static constexpr std::uint64_t inhibit_multiplier = 9;

  // The fast path: publish in the slot if the bias is on and the slot free.
  bool try_publish() noexcept {
    if ((bias_.load(std::memory_order_relaxed) & bias) == 0) return false;
    const std::uintptr_t self = detail::reader_identity();
    detail::visible_reader_slot& slot = table_->slot_for(this, self);
    const void* expected = nullptr;
    if (!slot.lock.compare_exchange_strong(expected, this, std::memory_order_seq_cst,
                                           std::memory_order_relaxed))
      return false;
    slot.thread.store(self, std::memory_order_relaxed);
    // Pairs with revoke()'s store of the bias word and its loads of the
    // slots: one of the two sides sees the other.
    if ((bias_.load(std::memory_order_seq_cst) & bias) != 0) [[likely]]
      return true;
    slot.thread.store(0, std::memory_order_relaxed);
    slot.lock.store(nullptr, std::memory_order_release);
    if ((bias_.load(std::memory_order_relaxed) & revoking) != 0) reader_left_during_revocation();
    return false;
  }

  // Takes the underlying lock shared (until *d; once when d is null), then
  // turns the bias back on if its inhibition has run out.
  bool lock_shared_slow(const futex::deadline* d) noexcept;
  // With the underlying lock held exclusively and the bias on: turns it off
  // and waits (until *d; not at all when d is null) for published readers.
  // false: some are still inside; the bias is back on.
  bool revoke(const futex::deadline* d) noexcept;
  void reader_left_during_revocation() noexcept;
  // Debug checks: a reader published through the bias when the lock dies.
  void check_no_published_reader() const noexcept;

  bool try_exclusive(const futex::deadline* d) HWSYNC_NO_THREAD_SAFETY_ANALYSIS;
  bool try_shared(const futex::deadline* d) HWSYNC_NO_THREAD_SAFETY_ANALYSIS;
  // The two above with the lock observers' hooks (a deadline ahead may wait).
  bool observed_try_exclusive(const futex::deadline* d) HWSYNC_NO_THREAD_SAFETY_ANALYSIS {
    const detail::observe::attempt seen(this, d != nullptr);
    const bool ok = try_exclusive(d);
    if (ok) seen.acquired();
    return ok;
  }
  bool observed_try_shared(const futex::deadline* d) HWSYNC_NO_THREAD_SAFETY_ANALYSIS {
    const detail::observe::attempt seen(this, d != nullptr);
    const bool ok = try_shared(d);
    if (ok) seen.acquired(detail::observe::mode::shared);
    return ok;
  }

  // The bias word first: TSan's mutex is the object's address, and the
  // underlying word must not share it.
  std::atomic<std::uint32_t> bias_{0};
  word_type word_;
  // cycle_clock time before which slow-path readers leave the bias off.
  // Written by writers (holding the lock), read by readers (holding it
  // shared).
  cycle_clock::ticks inhibit_until_ = 0;
  detail::visible_readers_table* table_;
  [[no_unique_address]] detail::rw_owner_check check_;
};

#if !HWSYNC_DEBUG_CHECKS
static_assert(sizeof(biased_shared_mutex) == 32);
#endif

namespace detail {

// For tests: whether the calling thread's shared lock on m went through the
// bias (is published in the table). Not part of the API.
struct biased_shared_mutex_access {
  static bool published_by_me(const biased_shared_mutex& m) noexcept {
    const visible_reader_slot& s = m.table_->slot_for(&m, reader_identity());
    return s.lock.load(std::memory_order_relaxed) == &m &&
           s.thread.load(std::memory_order_relaxed) == reader_identity();
  }
  static const visible_readers_table* table(const biased_shared_mutex& m) noexcept {
    return m.table_;
  }
};

}  // namespace detail

}  // namespace hwsync
