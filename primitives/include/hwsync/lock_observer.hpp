// hwsync/lock_observer.hpp — the hooks every hwsync lock calls on acquisition,
// release and destruction, for the lock-order checker (hwsync/lock_order.hpp)
// and the contention profiler (hwsync/lock_profile.hpp); and the lock names
// both of them print.
//
// Contract
//   Cost when off  One relaxed load of one process-wide flag word and one
//                  [[unlikely]] branch per acquisition attempt, per release
//                  and per destruction; nothing else is inlined. All the work
//                  is out of line in libhwsync_primitives.
//   Where          Each primitive calls the hooks outside its ThreadSanitizer
//                  pre/post regions (the observers' own locks are std::mutex,
//                  which TSan must see), and after its debug checks.
//   What counts    Every acquisition in any mode (exclusive, shared,
//                  upgrade): reader-writer deadlocks are real (a reader
//                  waits for a writer that waits for the reader's other
//                  lock). A recursive lock is observed on its first
//                  acquisition and its last release only.
//   blocking       lock(), lock_shared(), lock_upgrade() and the timed
//                  members with a deadline still ahead may wait, so they add
//                  lock-order edges; try_ members (and timed ones whose
//                  deadline has passed) make one attempt and cannot deadlock,
//                  so they add none, but a success is a held lock like any
//                  other. This is what keeps std::scoped_lock silent.
//   Ordering       The hooks add no ordering to the locks: the flag word is
//                  read relaxed, so switching an observer on or off takes
//                  effect at each thread's next acquisition.
//   Blocking       The hooks never wait for a hwsync lock; the out-of-line
//                  work takes std::mutex briefly (the graph's, on an edge
//                  the thread's cache does not know; the thread's own
//                  profile table's, on a sample).
//   Thread safety  Every function may be called from any thread at any time.
//   Names          set_lock_name(&m, "accounts") names a lock in every report
//                  until the lock is destroyed (its destructor drops the name,
//                  so an address reused by a new lock starts unnamed).
//
// The flag word (32 bits, one per process: defined in libhwsync_primitives)
//   bit 0  ORDER     the lock-order checker is on
//   bit 1  PROFILE   the contention profiler is on
//   bit 2  ENTRIES   the graph, the name registry or the profile holds
//                    entries keyed by lock address: destructors must remove
//                    theirs (never cleared, so a program that never used the
//                    observers pays one branch per destruction)
//
//   state            acquisition / release            destruction
//   0                one load, one branch             one load, one branch
//   ORDER|PROFILE    out of line: the held-lock       (as below)
//   (either)           stack, edges, samples
//   ENTRIES          (as its other bits say)          out of line: drop the
//                                                       lock's node, edges,
//                                                       name; retire its profile
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace hwsync {

// Names the lock at `lock` (any hwsync lock; the address of the object) in
// lock-order reports and contention profiles. An empty name removes it.
void set_lock_name(const void* lock, std::string_view name);
// The name given to `lock`, or an empty string.
std::string lock_name(const void* lock);

namespace detail::observe {

inline constexpr std::uint32_t order_bit = 1u << 0;
inline constexpr std::uint32_t profile_bit = 1u << 1;
inline constexpr std::uint32_t entries_bit = 1u << 2;
inline constexpr std::uint32_t active_bits = order_bit | profile_bit;

// The process's flag word (src/lock_order.cpp).
extern std::atomic<std::uint32_t> flag_word;

enum class mode : std::uint8_t { exclusive, shared };

// Marks an acquisition that waits until it succeeds (lock(), lock_shared()):
// it cannot fail, so the checker alone records the held lock before the
// attempt, and the acquisition costs one call instead of two.
struct until_acquired_t {
  explicit until_acquired_t() = default;
};
inline constexpr until_acquired_t until_acquired{};

// Out of line (src/lock_order.cpp). before_acquire returns the sampled start
// (cycle_clock ticks), 0, or already_recorded: the lock is on the thread's
// held stack already (an until_acquired attempt with the checker on alone),
// and after_acquire must not run.
inline constexpr std::uint64_t already_recorded = ~std::uint64_t{0};
std::uint64_t before_acquire(const void* lock, std::uint32_t flags, bool blocking,
                             bool certain) noexcept;
void after_acquire(const void* lock, std::uint32_t flags, std::uint64_t start, mode m) noexcept;
void on_release(const void* lock) noexcept;
void on_destroy(const void* lock) noexcept;
// Sets an observer's bit; when it was clear, threads restart their held-lock
// stacks (they may have missed acquisitions and releases meanwhile).
void switch_on(std::uint32_t bit) noexcept;

// One acquisition attempt: construct it just before the attempt, call
// acquired() after a success. The flag word is read once, here.
class attempt {
 public:
  // `blocking`: the attempt may wait (a lock-order edge) but may also fail
  // (try_ members, a deadline).
  attempt(const void* lock, bool blocking) noexcept
      : lock_(lock), flags_(flag_word.load(std::memory_order_relaxed) & active_bits) {
    if (flags_ != 0) [[unlikely]]
      start_ = before_acquire(lock, flags_, blocking, false);
  }
  // The attempt waits until it succeeds.
  attempt(const void* lock, until_acquired_t) noexcept
      : lock_(lock), flags_(flag_word.load(std::memory_order_relaxed) & active_bits) {
    if (flags_ != 0) [[unlikely]]
      start_ = before_acquire(lock, flags_, true, true);
  }
  attempt(const attempt&) = delete;
  attempt& operator=(const attempt&) = delete;

  void acquired(mode m = mode::exclusive) const noexcept {
    if (flags_ != 0) [[unlikely]] {
      // Profiling alone tracks only the sampled acquisitions.
      if (start_ == already_recorded) return;
      if ((flags_ & order_bit) != 0 || start_ != 0) after_acquire(lock_, flags_, start_, m);
    }
  }

 private:
  const void* lock_;
  std::uint32_t flags_;
  std::uint64_t start_ = 0;
};

// Before the release itself (the hold ends when the release starts).
inline void released(const void* lock) noexcept {
  if ((flag_word.load(std::memory_order_relaxed) & active_bits) != 0) [[unlikely]]
    on_release(lock);
}

// In the destructor: the address may be reused by a new lock.
inline void destroyed(const void* lock) noexcept {
  if ((flag_word.load(std::memory_order_relaxed) & entries_bit) != 0) [[unlikely]]
    on_destroy(lock);
}

}  // namespace detail::observe

}  // namespace hwsync
