// hwsync/shared_mutex.hpp — hwsync::shared_mutex<Policy>, a reader-writer lock
// with a choice of fairness policy and an upgradeable mode.
//
// Contract
//   Drop-in for std::shared_mutex / std::shared_timed_mutex: SharedTimedMutex
//   (lock, try_lock, try_lock_for/until, unlock and their _shared
//   counterparts), so std::unique_lock, std::shared_lock, std::lock_guard and
//   std::scoped_lock work unchanged. Plus an upgradeable mode, as
//   boost::upgrade_mutex: lock_upgrade() is a shared lock that at most one
//   thread holds at a time, and unlock_upgrade_and_lock() turns it into the
//   exclusive lock atomically (no writer gets in between); since only one
//   thread can be waiting to upgrade, upgrading cannot deadlock.
//   unlock_and_lock_shared() downgrades atomically.
//   Size          8 bytes: one 64-bit lock word whose two 32-bit halves are
//                 the futex words readers and writers park on (16 with
//                 HWSYNC_DEBUG_CHECKS, which adds the writer's and the
//                 upgrader's thread ids). constexpr-constructible.
//   Fast paths    lock_shared(): one inline CAS (readers += 1) when no writer
//                 holds or (with the policy) waits. unlock_shared(): one
//                 fetch_sub; out of line only when it may be the last reader
//                 a writer, parked readers or an upgrader wait for.
//                 lock()/unlock(): a load and one CAS each when nobody
//                 waits (the load keeps PHASE and ADMITTED, below).
//   Ordering      Every acquisition acquires, every release releases: writes
//                 made under the exclusive lock are visible to every later
//                 holder, shared or exclusive; writes made before
//                 unlock_shared() are visible to the next exclusive holder.
//   Blocking      Spin briefly (hwsync/spin.hpp), then park with futex(2):
//                 readers on the low half of the word, writers and threads
//                 waiting for the upgrade right on the high half, so a
//                 release wakes only the group that can proceed (all admitted
//                 readers at once, one writer). A blocked reader yields its
//                 CPU (sched_yield) for up to 50 µs between spinning and
//                 parking: with more threads than cores, the thread it waits
//                 for often needs that CPU, and a yielding thread needs no
//                 wake-up.
//   Fairness      Policy (rw_policy::):
//                 phase_fair (default)  read and write phases alternate
//                     (Brandenburg & Anderson's phase-fair lock) once a
//                     waiting writer's grace window, Policy::writer_grace
//                     (50 µs), has passed. Within the window the writer
//                     holds back new readers only while it spins (then the
//                     readers inside are running and leave within the spin)
//                     and takes the lock whenever they are all gone; parked,
//                     it lets readers in. After the window it holds back
//                     new readers (PENDING) and waits only for the readers
//                     already inside; when a writer releases, every reader
//                     that arrived during its phase enters before the next
//                     writer. No reader waits for more than one write phase
//                     once it has registered (after spinning and yielding);
//                     no writer for more than its grace window plus one read
//                     phase per writer that takes the lock before it (the
//                     window's end is noticed when the writer next runs: a
//                     parked writer sleeps no later than the window's end).
//                     rw_policy::strict_phase_fair (writer_grace 0) holds
//                     readers back the moment a writer waits: the bound
//                     without the window, at a large cost in throughput when
//                     threads outnumber cores (docs/shared_mutex.md).
//                 writer_preferred      a waiting writer holds back new
//                     readers (after its grace window, as phase_fair), and
//                     then writers hand over to waiting writers first.
//                     Readers starve under a continuous stream of writers.
//                 reader_preferred      readers never wait for waiting
//                     writers, only for a writer that holds the lock. A
//                     continuous stream of overlapping readers starves
//                     writers for as long as it lasts — what std::shared_mutex
//                     does on glibc (PTHREAD_RWLOCK_PREFER_READER_NP).
//                 Writers among themselves: barging (a running writer may
//                 take a lock that a woken writer was about to take), and
//                 futex wake order (FIFO) among the parked.
//   Timeouts      The try_*_for/try_*_until members: steady_clock deadlines
//                 wait on CLOCK_MONOTONIC, system_clock ones on
//                 CLOCK_REALTIME, other clocks in steady_clock slices. A
//                 deadline already past behaves as the try_ member.
//   Limits        At most 2^25 - 1 threads hold it shared at once, and at
//                 most 2^15 - 1 readers and 2^15 - 1 writers wait at once
//                 (the counts' fields); exceeding a waiting count aborts
//                 with a message.
//   Misuse        Undefined (as std) in release builds; with
//                 HWSYNC_DEBUG_CHECKS an abort naming the lock and the
//                 thread: unlock() by a non-owner, unlock_shared() by a
//                 thread that holds no shared lock, relocking in any mode
//                 by a thread that holds it in any mode (a writer asking
//                 for a shared lock, a reader for a second one or for the
//                 exclusive one: each can deadlock), upgrade operations by
//                 a thread that does not hold the upgrade right, destroying
//                 a held lock.
//   Tools         ThreadSanitizer sees a reader-writer mutex (read and write
//                 lock events: races between readers that write are
//                 reported); Clang's -Wthread-safety sees a capability with
//                 shared and exclusive modes. hwsync's lock-order checker and
//                 contention profiler see every acquisition in every mode
//                 (hwsync/lock_observer.hpp; one load and one branch while
//                 off), so the lock has a destructor: constexpr-
//                 constructible, not trivially destructible.
//
// The lock word (64 bits; x86-64 is little-endian, so the low half is the
// futex word at the lower address)
//   low half  (readers park here)
//     bit 0       WRITER     a writer holds the lock
//     bit 1       UPGRADING  the upgrade holder waits for the other readers
//                            to leave, to become the writer
//     bit 2       UPGRADER   the upgrade right is held (by a reader, or by a
//                            thread waiting to be admitted as one)
//     bit 3       PHASE      flips each time waiting readers are admitted
//     bit 4       ADMITTED   readers were admitted since READERS was last 0
//                            (meaningless, and cleared lazily, at READERS 0)
//     bit 5       PENDING    (phase_fair, writer_preferred) a waiting writer's
//                            grace window has passed: new readers are held
//                            back. Set by that writer (with WWAIT when the
//                            window is 0), cleared when WWAIT returns to 0
//     bit 6       SPINNING   (phase_fair, writer_preferred) a waiting writer
//                            is spinning and holds back new readers; cleared
//                            when a spinning writer parks, gives up or takes
//                            the lock (another one still spinning sets it
//                            again at its next look)
//     bits 7-31   READERS    threads holding it shared (the upgrade holder
//                            included), and readers admitted but not yet run
//   high half (writers and upgrade-right waiters park here)
//     bit 32      WOKEN      a waiting writer is awake (woken or spinning)
//                            and will look at the word again: no wake needed
//     bit 33      UPARKED    a thread waiting for the upgrade right is parked
//     bits 34-48  WWAIT      writers waiting (spinning or parked)
//     bits 49-63  RWAIT      readers waiting to be admitted (parked)
//
//   "Readers blocked" B(s): reader_preferred: WRITER.
//                           phase_fair, writer_preferred: WRITER | UPGRADING
//                           | PENDING | SPINNING.
//   A writer can take the lock when !WRITER && READERS == 0.
//
//   (PHASE and ADMITTED are left out below: either value of each is at rest.)
//   state                            meaning                   next release
//   0                                free, nobody waiting      (n/a)
//   R*n                              n readers                 fetch_sub only
//   WRITER                           one writer                CAS to 0 (PHASE kept)
//   R*n | WW*k                       readers, k writers wait   last reader wakes
//                                    within their grace          one writer
//                                    windows, parked: new
//                                    readers enter
//   R*n | WW*k | SPINNING | WOKEN    PF/WP: one of them spins: last reader out: the
//                                    new readers wait            spinner sees it
//   R*n | WW*k | PENDING             PF/WP: a writer's window  last reader wakes
//                                    has passed: new readers     one writer
//                                    wait
//   WRITER | RW*m | WW*k (| PENDING) writer, m readers and k   PF/RP: admits the m
//                                    writers wait                readers (READERS=m,
//                                                                 PHASE flips, wake
//                                                                 all); WP: with
//                                                                 PENDING or SPINNING
//                                                                 a writer goes
//                                                                 first, else as PF
//   R*n | UPGRADER                   n readers, one of them    unlock_upgrade:
//                                    holds the upgrade right     fetch_sub + clear
//   R*n | UPGRADER | UPGRADING       the upgrader waits for    reader leaving 2->1
//                                    the other n-1 readers       wakes the readers'
//                                                                 word
//   WRITER | UPGRADER | RW*m         a writer; the upgrade     admitted with the
//                                    right's holder waits to     readers
//                                    be admitted as a reader
//
//   Invariants (each transition keeps them, with one helper, settle(), that
//   every slow path runs on the state it is about to install):
//   I1  RWAIT > 0 implies B(s), or READERS > 0 with ADMITTED. Parked
//       readers are admitted (READERS += RWAIT, RWAIT = 0, PHASE flipped,
//       ADMITTED set, one wake-all on the low half) by the transition that
//       stops B holding — a writer's release or downgrade, a spinning
//       writer parking (it clears SPINNING), or a waiting writer timing out
//       while readers are inside — unless readers were already admitted in
//       this read phase (ADMITTED with READERS > 0); then the last reader
//       to leave admits them, and meanwhile new readers queue behind them
//       (phase_fair, writer_preferred).
//       phase_fair's writer release admits them even while writers wait:
//       that is the read phase between two writers.
//   I2  WWAIT > 0, no WRITER, READERS == 0 and no WOKEN never outlasts the
//       transition that made it: that transition sets WOKEN and wakes a
//       writer (all of the high half when UPARKED is set, since the wake
//       must not land on a thread waiting for the upgrade right).
//   I3  UPARKED is set only while UPGRADER is set; whoever clears UPGRADER
//       clears UPARKED and, if it was set, wakes the whole high half.
//   I4  A thread parks only on the exact half-word value of a state in
//       which it cannot proceed, installed or read after registering, and
//       every transition that lets it proceed changes that half (admission
//       flips PHASE; a writer wake sets WOKEN, which parking writers clear;
//       releasing the upgrade right clears UPARKED; the drain an upgrader
//       waits for changes READERS). So a wake-up is never lost.
//   I5  An admitted reader is counted in READERS until it has seen the flip
//       and run, and a second admission while READERS > 0 needs ADMITTED
//       clear, which needs READERS to reach 0 first: so PHASE flips at most
//       once while a parked reader has not looked, and a reader that sees
//       PHASE unchanged was not admitted.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "hwsync/config.hpp"
#include "hwsync/debug_checks.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/lock_observer.hpp"
#include "hwsync/mutex.hpp"  // detail::wait_until_on
#include "hwsync/sanitizer.hpp"
#include "hwsync/thread_annotations.hpp"

namespace hwsync {

namespace detail {

enum class rw_kind : std::uint8_t { phase_fair, writer_preferred, reader_preferred };

}  // namespace detail

namespace rw_policy {

// writer_grace: how long a waiting writer lets new readers keep entering
// before it holds them back (see Fairness in the contract above). 0 makes a
// writer hold them back the moment it waits: Brandenburg and Anderson's
// lock exactly (strict_phase_fair).
struct phase_fair {
  static constexpr detail::rw_kind kind = detail::rw_kind::phase_fair;
  static constexpr const char* name = "phase_fair";
  static constexpr std::chrono::microseconds writer_grace{50};
};
struct writer_preferred {
  static constexpr detail::rw_kind kind = detail::rw_kind::writer_preferred;
  static constexpr const char* name = "writer_preferred";
  static constexpr std::chrono::microseconds writer_grace{50};
};
struct reader_preferred {
  static constexpr detail::rw_kind kind = detail::rw_kind::reader_preferred;
  static constexpr const char* name = "reader_preferred";
  // Readers never wait for a waiting writer: there is nothing to delay.
  static constexpr std::chrono::microseconds writer_grace{0};
};

// Base (phase_fair or writer_preferred) with another grace window.
template <class Base, long long GraceMicros>
struct with_writer_grace : Base {
  static_assert(GraceMicros >= 0, "a grace window is a duration >= 0");
  static_assert(Base::kind != detail::rw_kind::reader_preferred,
                "reader_preferred writers never hold readers back: no grace window to set");
  static constexpr std::chrono::microseconds writer_grace{GraceMicros};
};

// Phase-fair with no grace window: a waiting writer holds back new readers
// at once (the bound is one read phase, the throughput with more threads
// than cores and frequent writes far lower; see docs/shared_mutex.md).
using strict_phase_fair = with_writer_grace<phase_fair, 0>;

}  // namespace rw_policy

namespace detail {

static_assert(std::endian::native == std::endian::little,
              "the futex halves of the shared_mutex word assume little-endian layout");

// The lock word and its algorithm (the table at the top of this header). No
// checks, no annotations; the slow paths are in src/shared_mutex.cpp,
// instantiated for the three policies.
template <rw_kind K>
class rw_word {
 public:
  using state_t = std::uint64_t;

  static constexpr state_t writer = 1ull << 0;
  static constexpr state_t upgrading = 1ull << 1;
  static constexpr state_t upgrader = 1ull << 2;
  static constexpr state_t phase = 1ull << 3;
  static constexpr state_t admitted = 1ull << 4;
  static constexpr state_t pending = 1ull << 5;
  static constexpr state_t spinning = 1ull << 6;
  static constexpr state_t one_reader = 1ull << 7;
  static constexpr state_t readers_mask = 0xFFFF'FF80ull;
  // Bits that may be set in a free lock nobody waits for.
  static constexpr state_t at_rest = phase | admitted;
  static constexpr state_t woken = 1ull << 32;
  static constexpr state_t uparked = 1ull << 33;
  static constexpr unsigned wwait_shift = 34;
  static constexpr unsigned rwait_shift = 49;
  static constexpr state_t wait_field = (1ull << 15) - 1;
  static constexpr state_t one_wwait = 1ull << wwait_shift;
  static constexpr state_t wwait_mask = wait_field << wwait_shift;
  static constexpr state_t one_rwait = 1ull << rwait_shift;
  static constexpr state_t rwait_mask = wait_field << rwait_shift;

  // B(s) in the table: what keeps readers out under this policy.
  static constexpr state_t entry_block =
      K == rw_kind::reader_preferred ? writer : writer | upgrading | pending | spinning;
  // What keeps a new reader out: B(s), and under phase_fair and
  // writer_preferred also readers parked before it (they are admitted
  // together once the readers inside have left; see I1).
  static constexpr state_t read_block =
      K == rw_kind::reader_preferred ? writer : entry_block | rwait_mask;

  constexpr rw_word() noexcept = default;

  void lock_shared() noexcept {
    state_t s = state_.load(std::memory_order_relaxed);
    if ((s & read_block) != 0 ||
        !state_.compare_exchange_strong(s, s + one_reader, std::memory_order_acquire,
                                        std::memory_order_relaxed)) [[unlikely]]
      lock_shared_contended(futex::deadline::never());
  }

  bool try_lock_shared() noexcept {
    state_t s = state_.load(std::memory_order_relaxed);
    while ((s & read_block) == 0) {
      if (state_.compare_exchange_weak(s, s + one_reader, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  bool lock_shared_until(const futex::deadline& d) noexcept {
    return try_lock_shared() || lock_shared_contended(d);
  }

  void unlock_shared() noexcept {
    const state_t before = state_.fetch_sub(one_reader, std::memory_order_release);
    // Out of line only when this may be the last reader that a writer or
    // parked readers wait for (2 -> 1 matters to an upgrader, who is a
    // reader itself).
    if ((before & (wwait_mask | rwait_mask | upgrading)) != 0 &&
        (before & readers_mask) <= 2 * one_reader) [[unlikely]]
      unlock_shared_contended(before - one_reader);
  }

  // PHASE is a toggle and ADMITTED means nothing while READERS == 0: a free
  // lock nobody waits for may carry either, and the fast paths accept them.
  // A writer clears ADMITTED (no reader is inside).
  // `grace`: the policy's writer_grace (the default is phase_fair's, for
  // callers that use the word directly).
  void lock(std::chrono::nanoseconds grace = rw_policy::phase_fair::writer_grace) noexcept {
    state_t s = state_.load(std::memory_order_relaxed);
    if ((s & ~at_rest) != 0 ||
        !state_.compare_exchange_strong(s, (s & phase) | writer, std::memory_order_acquire,
                                        std::memory_order_relaxed)) [[unlikely]]
      lock_contended(futex::deadline::never(), grace);
  }

  bool try_lock() noexcept {
    state_t s = state_.load(std::memory_order_relaxed);
    while (writer_can_take(s)) {
      if (state_.compare_exchange_weak(s, (s | writer) & ~admitted, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  bool lock_until(const futex::deadline& d,
                  std::chrono::nanoseconds grace = rw_policy::phase_fair::writer_grace) noexcept {
    return try_lock() || lock_contended(d, grace);
  }

  void unlock() noexcept {
    state_t s = state_.load(std::memory_order_relaxed);
    if ((s & ~at_rest) != writer ||
        !state_.compare_exchange_strong(s, s & phase, std::memory_order_release,
                                        std::memory_order_relaxed)) [[unlikely]]
      unlock_contended(s);
  }

  void lock_upgrade() noexcept {
    state_t s = state_.load(std::memory_order_relaxed);
    if ((s & (read_block | upgrader)) != 0 ||
        !state_.compare_exchange_strong(s, s + one_reader + upgrader, std::memory_order_acquire,
                                        std::memory_order_relaxed)) [[unlikely]]
      lock_upgrade_contended(futex::deadline::never());
  }

  bool try_lock_upgrade() noexcept {
    state_t s = state_.load(std::memory_order_relaxed);
    while ((s & (read_block | upgrader)) == 0) {
      if (state_.compare_exchange_weak(s, s + one_reader + upgrader, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
    }
    return false;
  }

  bool lock_upgrade_until(const futex::deadline& d) noexcept {
    return try_lock_upgrade() || lock_upgrade_contended(d);
  }

  // Releases the upgrade right and the shared lock.
  void unlock_upgrade() noexcept;
  // Upgrade right + shared -> exclusive, with no writer in between.
  void unlock_upgrade_and_lock() noexcept;
  // Upgrade right + shared -> shared.
  void unlock_upgrade_and_lock_shared() noexcept;
  // Exclusive -> shared, with no writer in between.
  void unlock_and_lock_shared() noexcept;

  static constexpr bool writer_can_take(state_t s) noexcept {
    return (s & (writer | readers_mask)) == 0;
  }

  state_t raw() const noexcept { return state_.load(std::memory_order_relaxed); }

 private:
  bool lock_shared_contended(const futex::deadline& d) noexcept;
  void unlock_shared_contended(state_t after) noexcept;
  bool lock_contended(const futex::deadline& d, std::chrono::nanoseconds grace) noexcept;
  void unlock_contended(state_t state) noexcept;
  bool lock_upgrade_contended(const futex::deadline& d) noexcept;

  // Parked readers wait for PHASE to flip (admission); waits on the low half.
  bool await_admission(state_t registered, const futex::deadline& d, bool holds_upgrader) noexcept;

  // A state about to be installed and the wake-ups that must follow it.
  struct transition {
    state_t next;
    bool wake_readers = false;    // admitted: wake the whole low half
    bool wake_writer = false;     // set WOKEN: wake one writer
    bool wake_upgraders = false;  // cleared UPARKED: wake the whole high half
  };
  // Completes `next` so that I1 and I2 hold (see the .cpp).
  static transition settle(state_t next) noexcept;
  static transition end_write_phase(state_t next) noexcept;
  void wake(const transition& t) const noexcept;

  // The futex words are the halves of state_. Only the kernel reads them as
  // such (futex(2) compares the u32 at the address); user space touches the
  // word only as a whole, so no access here mixes sizes.
  const futex::word& low() const noexcept { return half(0); }
  const futex::word& high() const noexcept { return half(4); }
  const futex::word& half(int offset) const noexcept {
    return *reinterpret_cast<const futex::word*>(reinterpret_cast<const char*>(&state_) + offset);
  }

  std::atomic<state_t> state_{0};
};

static_assert(sizeof(std::atomic<std::uint64_t>) == 8 &&
                  std::atomic<std::uint64_t>::is_always_lock_free,
              "the shared_mutex word is one lock-free 64-bit atomic");

extern template class rw_word<rw_kind::phase_fair>;
extern template class rw_word<rw_kind::writer_preferred>;
extern template class rw_word<rw_kind::reader_preferred>;

// Debug checks: the shared locks the calling thread holds (a thread-local
// list of lock addresses; a lock word has no room for a reader set). If a
// thread holds more shared locks than the list tracks, the surplus is
// counted, and the checks that need to know a lock is NOT held are skipped
// while it is non-zero.
namespace shared_holds {
bool contains(const void* m) noexcept;
void add(const void* m) noexcept;
// false: m was not held shared by this thread (as far as the list can tell).
bool remove(const void* m) noexcept;
}  // namespace shared_holds

// Thread ids of the exclusive holder and of the upgrade right's holder, in
// HWSYNC_DEBUG_CHECKS builds; empty otherwise, and every check compiles to
// nothing.
class rw_owner_check {
 public:
  // Any acquisition by a thread that holds the lock in any mode can deadlock
  // (a writer asking to read, a reader asking again once a writer waits).
  void before_acquire(const char* type, const void* m, const char* op) const noexcept {
    if constexpr (debug::checks_enabled) check_acquire(type, m, op);
  }
  void before_unlock(const char* type, const void* m) noexcept {
    if constexpr (debug::checks_enabled) check_unlock(type, m);
  }
  void before_unlock_shared(const char* type, const void* m) const noexcept {
    if constexpr (debug::checks_enabled) check_unlock_shared(type, m);
  }
  // unlock_upgrade(), unlock_upgrade_and_lock(), unlock_upgrade_and_lock_shared().
  void before_upgrade_op(const char* type, const void* m, const char* op) noexcept {
    if constexpr (debug::checks_enabled) check_upgrade_op(type, m, op);
  }
  void before_downgrade(const char* type, const void* m) noexcept {
    if constexpr (debug::checks_enabled) check_downgrade(type, m);
  }
  void on_destroy(const char* type, const void* m, std::uint64_t state) const noexcept {
    if constexpr (debug::checks_enabled) check_destroy(type, m, state);
  }

  void writer_is_me() noexcept {
    if constexpr (debug::checks_enabled)
      writer_.store(debug::this_thread_id(), std::memory_order_relaxed);
  }
  void upgrader_is_me() noexcept {
    if constexpr (debug::checks_enabled)
      upgrader_.store(debug::this_thread_id(), std::memory_order_relaxed);
  }
  void reader_is_me(const void* m) noexcept {
    if constexpr (debug::checks_enabled) shared_holds::add(m);
  }

 private:
  void check_acquire(const char* type, const void* m, const char* op) const noexcept;
  void check_unlock(const char* type, const void* m) noexcept;
  void check_unlock_shared(const char* type, const void* m) const noexcept;
  void check_upgrade_op(const char* type, const void* m, const char* op) noexcept;
  void check_downgrade(const char* type, const void* m) noexcept;
  void check_destroy(const char* type, const void* m, std::uint64_t state) const noexcept;

  // Two distinct empty types: two members of one empty type would need two
  // addresses, and the lock would grow past its 8 bytes.
  template <int>
  struct none {
    constexpr none() noexcept = default;
    pid_t load(std::memory_order) const noexcept { return 0; }
    void store(pid_t, std::memory_order) noexcept {}
  };
  template <int I>
  using field = std::conditional_t<debug::checks_enabled, std::atomic<pid_t>, none<I>>;
  [[no_unique_address]] field<0> writer_{};
  [[no_unique_address]] field<1> upgrader_{};
};

struct shared_mutex_access;

}  // namespace detail

template <class Policy = rw_policy::phase_fair>
class HWSYNC_CAPABILITY("shared_mutex") shared_mutex {
  static_assert(std::is_base_of_v<rw_policy::phase_fair, Policy> ||
                    std::is_base_of_v<rw_policy::writer_preferred, Policy> ||
                    std::is_same_v<Policy, rw_policy::reader_preferred>,
                "Policy is one of rw_policy::phase_fair, writer_preferred, reader_preferred, "
                "or rw_policy::with_writer_grace<phase_fair or writer_preferred, µs>");
  using word = detail::rw_word<Policy::kind>;

 public:
  using policy = Policy;

  constexpr shared_mutex() noexcept = default;
  shared_mutex(const shared_mutex&) = delete;
  shared_mutex& operator=(const shared_mutex&) = delete;
  ~shared_mutex() {
#if HWSYNC_DEBUG_CHECKS || HWSYNC_TSAN
    check_.on_destroy(type_name(), this, word_.raw());
    tsan::mutex_destroy(this, 0);
#endif
    detail::observe::destroyed(this);
  }

  // Exclusive ---------------------------------------------------------------

  void lock() HWSYNC_ACQUIRE() {
    check_.before_acquire(type_name(), this, "lock()");
    const detail::observe::attempt seen(this, detail::observe::until_acquired);
    tsan::pre_lock(this, 0);
    word_.lock(Policy::writer_grace);
    tsan::post_lock(this, 0, 0);
    check_.writer_is_me();
    seen.acquired();
  }

  bool try_lock() HWSYNC_TRY_ACQUIRE(true) {
    return try_exclusive(nullptr);
  }

  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) HWSYNC_TRY_ACQUIRE(true) {
    return try_lock_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs)
      HWSYNC_TRY_ACQUIRE(true) {
    return detail::wait_until_on(abs,
                                 [this](const futex::deadline* d) { return try_exclusive(d); });
  }

  void unlock() HWSYNC_RELEASE() {
    check_.before_unlock(type_name(), this);
    detail::observe::released(this);
    tsan::pre_unlock(this, 0);
    word_.unlock();
    tsan::post_unlock(this, 0);
  }
  // Held in any mode (relaxed read, no ordering): lock elision (htm::elided) subscribes with it.
  bool is_locked() const noexcept {
    return !word::writer_can_take(word_.raw());
  }

  // Shared ------------------------------------------------------------------

  void lock_shared() HWSYNC_ACQUIRE_SHARED() {
    check_.before_acquire(type_name(), this, "lock_shared()");
    const detail::observe::attempt seen(this, detail::observe::until_acquired);
    tsan::pre_lock(this, tsan::flag::read_lock);
    word_.lock_shared();
    tsan::post_lock(this, tsan::flag::read_lock, 0);
    check_.reader_is_me(this);
    seen.acquired(detail::observe::mode::shared);
  }

  bool try_lock_shared() HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return try_shared(nullptr);
  }

  template <class Rep, class Period>
  bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& rel)
      HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return try_lock_shared_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& abs)
      HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return detail::wait_until_on(abs, [this](const futex::deadline* d) { return try_shared(d); });
  }

  void unlock_shared() HWSYNC_RELEASE_SHARED() {
    check_.before_unlock_shared(type_name(), this);
    detail::observe::released(this);
    tsan::pre_unlock(this, tsan::flag::read_lock);
    word_.unlock_shared();
    tsan::post_unlock(this, tsan::flag::read_lock);
  }

  // Upgradeable -------------------------------------------------------------
  // A shared lock plus the upgrade right, which one thread holds at a time.
  // New readers may still enter while it is held; writers may not.

  void lock_upgrade() HWSYNC_ACQUIRE_SHARED() {
    check_.before_acquire(type_name(), this, "lock_upgrade()");
    const detail::observe::attempt seen(this, detail::observe::until_acquired);
    tsan::pre_lock(this, tsan::flag::read_lock);
    word_.lock_upgrade();
    tsan::post_lock(this, tsan::flag::read_lock, 0);
    check_.upgrader_is_me();
    seen.acquired(detail::observe::mode::shared);
  }

  bool try_lock_upgrade() HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return try_upgrade(nullptr);
  }

  template <class Rep, class Period>
  bool try_lock_upgrade_for(const std::chrono::duration<Rep, Period>& rel)
      HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return try_lock_upgrade_until(detail::steady_deadline(rel));
  }

  template <class Clock, class Duration>
  bool try_lock_upgrade_until(const std::chrono::time_point<Clock, Duration>& abs)
      HWSYNC_TRY_ACQUIRE_SHARED(true) {
    return detail::wait_until_on(abs, [this](const futex::deadline* d) { return try_upgrade(d); });
  }

  void unlock_upgrade() HWSYNC_RELEASE_SHARED() {
    check_.before_upgrade_op(type_name(), this, "unlock_upgrade()");
    detail::observe::released(this);
    tsan::pre_unlock(this, tsan::flag::read_lock);
    word_.unlock_upgrade();
    tsan::post_unlock(this, tsan::flag::read_lock);
  }

  // Waits until the other readers have left (new readers are held back
  // except under reader_preferred), then holds the lock exclusively. No
  // writer runs in between: what was read under the upgrade lock is still
  // true.
  void unlock_upgrade_and_lock() HWSYNC_RELEASE_SHARED() HWSYNC_ACQUIRE() {
    check_.before_upgrade_op(type_name(), this, "unlock_upgrade_and_lock()");
    tsan::pre_unlock(this, tsan::flag::read_lock);
    tsan::post_unlock(this, tsan::flag::read_lock);
    tsan::pre_lock(this, 0);
    word_.unlock_upgrade_and_lock();
    tsan::post_lock(this, 0, 0);
    check_.writer_is_me();
  }

  // Keeps the shared lock, gives up the upgrade right. Does not block.
  void unlock_upgrade_and_lock_shared() HWSYNC_REQUIRES_SHARED(this) {
    check_.before_upgrade_op(type_name(), this, "unlock_upgrade_and_lock_shared()");
    word_.unlock_upgrade_and_lock_shared();
    check_.reader_is_me(this);
  }

  // Exclusive -> shared, atomically. Does not block. Readers parked behind
  // this writer are admitted with it (under writer_preferred, only if no
  // writer waits).
  void unlock_and_lock_shared() HWSYNC_RELEASE() HWSYNC_ACQUIRE_SHARED() {
    check_.before_downgrade(type_name(), this);
    tsan::pre_unlock(this, 0);
    tsan::post_unlock(this, 0);
    tsan::pre_lock(this, tsan::flag::read_lock);
    word_.unlock_and_lock_shared();
    tsan::post_lock(this, tsan::flag::read_lock, 0);
    check_.reader_is_me(this);
  }

 private:
  friend struct detail::shared_mutex_access;

  static const char* type_name() noexcept {
    if constexpr (std::is_same_v<Policy, rw_policy::phase_fair>) {
      return "hwsync::shared_mutex<phase_fair>";
    } else if constexpr (std::is_same_v<Policy, rw_policy::writer_preferred>) {
      return "hwsync::shared_mutex<writer_preferred>";
    } else if constexpr (std::is_same_v<Policy, rw_policy::reader_preferred>) {
      return "hwsync::shared_mutex<reader_preferred>";
    } else if constexpr (Policy::kind == detail::rw_kind::phase_fair) {
      return "hwsync::shared_mutex<with_writer_grace<phase_fair, ...>>";
    } else {
      return "hwsync::shared_mutex<with_writer_grace<writer_preferred, ...>>";
    }
  }

  // One attempt when d is null (try_, or an expired deadline), else waits
  // until *d.
  bool try_exclusive(const futex::deadline* d) HWSYNC_NO_THREAD_SAFETY_ANALYSIS {
    check_.before_acquire(type_name(), this, "try_lock()");
    const detail::observe::attempt seen(this, d != nullptr);
    tsan::pre_lock(this, tsan::flag::try_lock);
    const bool ok = d == nullptr ? word_.try_lock() : word_.lock_until(*d, Policy::writer_grace);
    tsan::post_lock(this, tsan_try_flags(ok), 0);
    if (ok) check_.writer_is_me();
    if (ok) seen.acquired();
    return ok;
  }
  bool try_shared(const futex::deadline* d) HWSYNC_NO_THREAD_SAFETY_ANALYSIS {
    check_.before_acquire(type_name(), this, "try_lock_shared()");
    const detail::observe::attempt seen(this, d != nullptr);
    tsan::pre_lock(this, tsan::flag::read_lock | tsan::flag::try_lock);
    const bool ok = d == nullptr ? word_.try_lock_shared() : word_.lock_shared_until(*d);
    tsan::post_lock(this, tsan::flag::read_lock | tsan_try_flags(ok), 0);
    if (ok) check_.reader_is_me(this);
    if (ok) seen.acquired(detail::observe::mode::shared);
    return ok;
  }
  bool try_upgrade(const futex::deadline* d) HWSYNC_NO_THREAD_SAFETY_ANALYSIS {
    check_.before_acquire(type_name(), this, "try_lock_upgrade()");
    const detail::observe::attempt seen(this, d != nullptr);
    tsan::pre_lock(this, tsan::flag::read_lock | tsan::flag::try_lock);
    const bool ok = d == nullptr ? word_.try_lock_upgrade() : word_.lock_upgrade_until(*d);
    tsan::post_lock(this, tsan::flag::read_lock | tsan_try_flags(ok), 0);
    if (ok) check_.upgrader_is_me();
    if (ok) seen.acquired(detail::observe::mode::shared);
    return ok;
  }
  static constexpr unsigned tsan_try_flags(bool ok) noexcept {
    return ok ? tsan::flag::try_lock : tsan::flag::try_lock | tsan::flag::try_lock_failed;
  }

  word word_;
  [[no_unique_address]] detail::rw_owner_check check_;
};

#if !HWSYNC_DEBUG_CHECKS
static_assert(sizeof(shared_mutex<>) == 8, "hwsync::shared_mutex is one 64-bit word");
static_assert(sizeof(shared_mutex<rw_policy::reader_preferred>) == 8);
#endif

namespace detail {

// For tests and tools: the raw lock word (the table at the top of this
// header). Not part of the API.
struct shared_mutex_access {
  template <class P>
  static std::uint64_t state(const shared_mutex<P>& m) noexcept {
    return m.word_.raw();
  }
};

}  // namespace detail

}  // namespace hwsync

// hwsync::biased_shared_mutex, the reader-biased lock built on the word above,
// is declared with the other reader-writer locks.
#include "hwsync/biased_shared_mutex.hpp"
