// hwsync::futex — the one place hwsync issues futex(2) and futex_waitv(2).
//
// Contract
//   Every futex word is a std::atomic<std::uint32_t> (4 bytes, 4-aligned; the
//   kernel reads it as a plain u32). All operations use FUTEX_PRIVATE_FLAG:
//   words are never shared between processes.
//
//   wait*(word, expected, ...) sleeps while `word == expected` and returns
//     woken          a wake-up: FUTEX_WAKE, a requeue target woken, a signal
//                    (EINTR), or a spurious return. The caller re-checks its
//                    condition: that is the only correct use of a futex.
//     value_changed  `word != expected` when the kernel looked (EAGAIN).
//     timed_out      the deadline passed (ETIMEDOUT).
//   Every other errno is a bug in the caller (EFAULT, EINVAL, ENOSYS) and
//   aborts with a message naming the call, the word and the errno: nothing is
//   swallowed and no caller has to write an errno switch.
//
//   Deadlines are absolute: steady_clock (CLOCK_MONOTONIC, through
//   FUTEX_WAIT_BITSET) or system_clock (CLOCK_REALTIME via
//   FUTEX_CLOCK_REALTIME, so a wall-clock step moves the wake-up as POSIX
//   requires). wait_for takes a relative timeout on CLOCK_MONOTONIC. An
//   expired deadline still makes the call once, so a changed word reports
//   value_changed rather than timed_out.
//
//   Memory ordering: a futex call is not a fence. The caller publishes its
//   state with its own atomics before wake(), and re-reads with acquire after
//   wait() returns.
#pragma once

#include <linux/futex.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>

namespace hwsync::futex {

using word = std::atomic<std::uint32_t>;
static_assert(sizeof(word) == 4 && alignof(word) == 4, "the kernel reads futex words as u32");

enum class wait_result { woken, value_changed, timed_out };

// A point in time the kernel can wait until, or never.
class deadline {
 public:
  static constexpr deadline never() noexcept { return deadline{}; }
  static deadline at(std::chrono::steady_clock::time_point tp) noexcept;
  static deadline at(std::chrono::system_clock::time_point tp) noexcept;
  // now + d on CLOCK_MONOTONIC.
  static deadline after(std::chrono::nanoseconds d) noexcept;

  bool is_never() const noexcept { return kind_ == kind::never; }
  bool is_realtime() const noexcept { return kind_ == kind::realtime; }
  // Whether the deadline has passed, read on its own clock.
  bool passed() const noexcept;
  std::int64_t nanoseconds_since_epoch() const noexcept { return ns_; }

 private:
  enum class kind : std::uint8_t { never, monotonic, realtime };
  constexpr deadline() noexcept = default;
  constexpr deadline(kind k, std::int64_t ns) noexcept : kind_(k), ns_(ns) {}
  kind kind_ = kind::never;
  std::int64_t ns_ = 0;
};

// Sleeps while word == expected, with no time limit.
wait_result wait(const word& w, std::uint32_t expected) noexcept;
// Sleeps while word == expected, at most `timeout` (CLOCK_MONOTONIC).
wait_result wait_for(const word& w, std::uint32_t expected,
                     std::chrono::nanoseconds timeout) noexcept;
// Sleeps while word == expected, until the absolute deadline.
wait_result wait_until(const word& w, std::uint32_t expected, const deadline& d) noexcept;

// Wakes at most `count` waiters on w; returns how many were woken.
int wake(const word& w, int count) noexcept;
inline int wake_one(const word& w) noexcept {
  return wake(w, 1);
}
int wake_all(const word& w) noexcept;

// If from == expected: wakes up to wake_count waiters of `from` and moves up
// to requeue_count of the rest onto `to`; returns woken + requeued.
// If from != expected: does nothing and returns -1 (the caller re-reads).
int cmp_requeue(const word& from, const word& to, std::uint32_t expected, int wake_count,
                int requeue_count) noexcept;

// futex_waitv (Linux 5.16+): sleeps until any of the words differs from its
// expected value or is woken. Returns the index of the word that woke the
// caller, or -1 with `result` telling value_changed / timed_out / woken
// (signal). At most 128 entries (the kernel's FUTEX_WAITV_MAX).
struct waitv_entry {
  const word* w;
  std::uint32_t expected;
};
struct waitv_result {
  int index;           // the woken word, or -1
  wait_result result;  // woken (index >= 0 or a signal), value_changed, timed_out
};
waitv_result waitv(std::span<const waitv_entry> entries, const deadline& d) noexcept;

// Whether this kernel has futex_waitv (checked once).
bool has_waitv() noexcept;

}  // namespace hwsync::futex
