// hwsync/clocks/hybrid_logical_clock.hpp — hwsync::hybrid_logical_clock,
// Kulkarni et al.'s hybrid logical clock (2014), as CockroachDB uses it:
// timestamps that respect causality like a Lamport clock and stay within
// the maximum clock offset of physical time.
//
// Contract
//   hlc_timestamp  64 bits: the high 48 are physical milliseconds since the
//                  Unix epoch (good until the year 10889), the low 16 a
//                  logical counter. Compared as one unsigned integer, so
//                  (physical, logical) order lexicographically.
//   now()          a local or send event: the wall clock's milliseconds if
//                  they are ahead of the last timestamp, else the last
//                  timestamp plus one. Strictly greater than every
//                  timestamp this clock returned before, on every thread,
//                  whatever the wall clock does (steps back included).
//   update(r)      a receive event with remote timestamp r: greater than r
//                  and than every earlier timestamp of this clock, and the
//                  wall clock's milliseconds with logical 0 when those are
//                  ahead of both. A remote whose physical part is more than
//                  max_offset ahead of the local wall clock is rejected
//                  with max_offset_exceeded (naming the remote timestamp,
//                  the local physical time, the offset and the maximum)
//                  and leaves the clock unchanged: a drifting or stepped
//                  clock anywhere in the system becomes an error here
//                  instead of silently dragging every clock forward.
//   Bounds         physical part >= the local wall clock at the event; and
//                  physical part <= the largest wall-clock reading of any
//                  node (this one's, or a remote accepted within
//                  max_offset), so within max_offset of the local wall
//                  clock while no wall clock steps back and the logical
//                  counter does not overflow (below).
//   Overflow       The logical counter borrows into the physical field: the
//                  timestamp after (p, 65535) is (p + 1, 0), one millisecond
//                  ahead of a wall clock that still reads p. Never blocks,
//                  never fails; it takes 65536 events within one wall-clock
//                  millisecond (65 million a second) to lead by a
//                  millisecond, and the lead disappears when the wall clock
//                  catches up.
//   Thread safety  Every member may be called from any thread. One 64-bit
//                  atomic; now() and update() read the physical source,
//                  then CAS the word (acq_rel), retrying only when another
//                  thread moved it. Lock-free, never blocks.
//   Cost           now(): the physical source's read (one virtual call and
//                  clock_gettime(CLOCK_REALTIME) through the vDSO), a
//                  division by a constant, one load and one CAS.
//   Progress       Lock-free, not wait-free: a CAS that loses to another
//                  thread retries with the newer word, so some thread always
//                  makes progress; there is no queue and no fairness order.
//   Size           24 bytes: the word, the source reference and the maximum
//                  offset.
//
// The state word
//   bits 16-63  physical ms  the last timestamp's physical part
//   bits  0-15  logical      the last timestamp's counter within that ms
#pragma once

#include <atomic>
#include <chrono>
#include <compare>
#include <cstdint>
#include <string>

#include "hwsync/clocks/clock_error.hpp"
#include "hwsync/clocks/physical_source.hpp"

namespace hwsync {

class hlc_timestamp {
 public:
  static constexpr unsigned logical_bits = 16;
  static constexpr std::uint64_t max_logical = (std::uint64_t{1} << logical_bits) - 1;
  static constexpr std::uint64_t max_physical_ms = (std::uint64_t{1} << 48) - 1;

  constexpr hlc_timestamp() noexcept = default;
  // Bits of `physical` above the 48 that fit are dropped.
  constexpr hlc_timestamp(std::uint64_t physical, std::uint16_t logical_count) noexcept
      : raw_(((physical & max_physical_ms) << logical_bits) | logical_count) {}
  static constexpr hlc_timestamp from_raw(std::uint64_t raw) noexcept {
    hlc_timestamp t;
    t.raw_ = raw;
    return t;
  }

  constexpr std::uint64_t raw() const noexcept { return raw_; }
  constexpr std::uint64_t physical_ms() const noexcept { return raw_ >> logical_bits; }
  constexpr std::uint16_t logical() const noexcept {
    return static_cast<std::uint16_t>(raw_ & max_logical);
  }
  friend constexpr auto operator<=>(hlc_timestamp, hlc_timestamp) noexcept = default;

  // "1700000000123.7" (physical ms, then logical).
  std::string to_string() const;

 private:
  std::uint64_t raw_ = 0;
};

class hybrid_logical_clock {
 public:
  // CockroachDB's default --max-offset.
  static constexpr std::chrono::milliseconds default_max_offset{500};

  // max_offset must be positive (std::invalid_argument otherwise).
  explicit hybrid_logical_clock(physical_source& source = system_realtime(),
                                std::chrono::milliseconds max_offset = default_max_offset);
  hybrid_logical_clock(const hybrid_logical_clock&) = delete;
  hybrid_logical_clock& operator=(const hybrid_logical_clock&) = delete;

  hlc_timestamp now() noexcept {
    const std::uint64_t pt = physical_ms();
    std::uint64_t cur = state_.load(std::memory_order_relaxed);
    std::uint64_t next;
    do {
      // The carry of +1 out of the logical bits is the documented borrow.
      next =
          (cur >> hlc_timestamp::logical_bits) >= pt ? cur + 1 : pt << hlc_timestamp::logical_bits;
    } while (!state_.compare_exchange_weak(cur, next, std::memory_order_acq_rel,
                                           std::memory_order_relaxed));
    return hlc_timestamp::from_raw(next);
  }

  hlc_timestamp update(hlc_timestamp remote);

  // The last timestamp issued, without an event.
  hlc_timestamp last() const noexcept {
    return hlc_timestamp::from_raw(state_.load(std::memory_order_acquire));
  }
  std::chrono::milliseconds max_offset() const noexcept { return max_offset_; }
  physical_source& source() const noexcept { return source_; }

  // The source's time in whole ms, clamped to [0, max_physical_ms].
  std::uint64_t physical_ms() const noexcept {
    const std::int64_t ns = source_.now_ns();
    if (ns <= 0) [[unlikely]]
      return 0;
    const auto ms = static_cast<std::uint64_t>(ns / 1'000'000);
    return ms < hlc_timestamp::max_physical_ms ? ms : hlc_timestamp::max_physical_ms;
  }

 private:
  std::atomic<std::uint64_t> state_{0};
  physical_source& source_;
  std::chrono::milliseconds max_offset_;
};

}  // namespace hwsync
