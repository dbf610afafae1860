// hwsync/htm/transaction.hpp — htm::transaction, the RTM wrapper, and
// htm::status, the decoded outcome of a begin().
//
// Contract
//   transaction::begin() starts a hardware transaction (XBEGIN) when the
//   active backend is rtm. It returns status::started(); if the transaction
//   later aborts, every write it made is discarded, registers are restored,
//   and begin() returns a second time with the abort status — exactly as
//   XBEGIN does. commit() (XEND) makes its writes visible atomically;
//   abort(code) (XABORT imm8) aborts it with an explicit code (outside a
//   transaction it does nothing, as XABORT); in_transaction() is XTEST.
//   Nesting is RTM's flat nesting: an inner begin() only counts, an abort
//   anywhere aborts the outermost, and only the outermost commit() publishes.
//   Ordering: a committed transaction is atomic and, on x86, ordered like a
//   locked instruction (a full fence).
//   Blocking: never. Fairness: none (a transaction can abort forever: every
//   user needs a fallback path, as htm::elided<Lock> has).
//
//   Backends (hwsync/htm/capabilities.hpp):
//     rtm               the instructions above, compiled in functions with
//                       __attribute__((target("rtm"))) in htm/src, so the
//                       library builds for any x86-64 and executes them only
//                       when detection said RTM is usable.
//     off               begin() returns status::unavailable() and no
//                       instruction is executed; commit() and abort() do
//                       nothing; in_transaction() is false.
//     policy_emulation  tests the control flow, not the hardware: begin()
//                       draws an injected abort (hwsync/htm/emulation.hpp)
//                       or "starts" by taking one process-wide lock, which
//                       commit() releases. So emulated transactions are
//                       atomic with respect to each other only, and cannot
//                       roll back: an abort can only be injected at begin(),
//                       and abort(code) inside an emulated transaction is a
//                       fatal error with a message.
//
// The status word (RTM's EAX after an abort; bits 22-23 are hwsync's, in a
// range the hardware leaves zero)
//   bit 0      EXPLICIT   XABORT was executed; the code is in bits 24-31
//   bit 1      RETRY      the transaction may succeed if retried
//   bit 2      CONFLICT   another thread touched its read or write set
//   bit 3      CAPACITY   its read or write set overflowed the buffers
//   bit 4      DEBUG      a debug breakpoint was hit
//   bit 5      NESTED     it aborted inside a nested transaction
//   bit 22     EMULATED   produced by the policy emulation, not the CPU
//   bit 23     UNAVAILABLE no transaction was attempted (backend off)
//   bits 24-31 CODE       XABORT's imm8
//   0xFFFFFFFF started    (_XBEGIN_STARTED)
//   0          aborted for a reason the CPU does not report (an interrupt,
//              a system call, an instruction RTM cannot run, ...)
#pragma once

#include <cstdint>
#include <string>

namespace hwsync::htm {

class status {
 public:
  static constexpr std::uint32_t explicit_bit = 1u << 0;
  static constexpr std::uint32_t retry_bit = 1u << 1;
  static constexpr std::uint32_t conflict_bit = 1u << 2;
  static constexpr std::uint32_t capacity_bit = 1u << 3;
  static constexpr std::uint32_t debug_bit = 1u << 4;
  static constexpr std::uint32_t nested_bit = 1u << 5;
  static constexpr std::uint32_t emulated_bit = 1u << 22;
  static constexpr std::uint32_t unavailable_bit = 1u << 23;
  static constexpr std::uint32_t started_value = ~0u;

  constexpr explicit status(std::uint32_t raw) noexcept : raw_(raw) {}
  static constexpr status started() noexcept { return status(started_value); }
  static constexpr status unavailable() noexcept { return status(unavailable_bit); }
  static constexpr status explicit_abort(std::uint8_t code, std::uint32_t extra = 0) noexcept {
    return status(explicit_bit | (std::uint32_t{code} << 24) | extra);
  }

  constexpr std::uint32_t raw() const noexcept { return raw_; }
  constexpr bool is_started() const noexcept { return raw_ == started_value; }
  constexpr bool aborted() const noexcept { return !is_started() && !is_unavailable(); }
  constexpr bool is_unavailable() const noexcept {
    return !is_started() && (raw_ & unavailable_bit) != 0;
  }
  constexpr bool is_explicit() const noexcept { return aborted() && (raw_ & explicit_bit) != 0; }
  constexpr std::uint8_t explicit_code() const noexcept {
    return is_explicit() ? static_cast<std::uint8_t>(raw_ >> 24) : 0;
  }
  constexpr bool retry() const noexcept { return aborted() && (raw_ & retry_bit) != 0; }
  constexpr bool conflict() const noexcept { return aborted() && (raw_ & conflict_bit) != 0; }
  constexpr bool capacity() const noexcept { return aborted() && (raw_ & capacity_bit) != 0; }
  constexpr bool debug() const noexcept { return aborted() && (raw_ & debug_bit) != 0; }
  constexpr bool nested() const noexcept { return aborted() && (raw_ & nested_bit) != 0; }
  constexpr bool emulated() const noexcept { return !is_started() && (raw_ & emulated_bit) != 0; }

  friend constexpr bool operator==(status a, status b) noexcept { return a.raw_ == b.raw_; }

  // "started", "unavailable", or the set bits, e.g. "abort(conflict|retry)",
  // "abort(explicit 0xff)", "abort(unreported)".
  std::string describe() const;

 private:
  std::uint32_t raw_;
};

// The explicit code elided<Lock> aborts with when the subscription finds the
// lock held (glibc's _ABORT_LOCK_BUSY). Reserved: user code inside an elided
// critical section should not abort with it.
inline constexpr std::uint8_t lock_busy_code = 0xFF;

class transaction {
 public:
  static status begin() noexcept;
  static void commit() noexcept;
  static void abort(std::uint8_t code) noexcept;
  static bool in_transaction() noexcept;
};

}  // namespace hwsync::htm
