// hwsync/htm/statistics.hpp — what lock elision did: per elided lock
// (elided<Lock>::stats()) and per process (process_statistics()).
//
// Contract
//   Counts are exact once the threads that update them have stopped, and
//   monotonic meanwhile (each counter is read with a relaxed load, so a
//   snapshot taken while threads run mixes moments). Nothing is counted
//   inside a hardware transaction: an abort is counted where begin()
//   returns with it, a commit after XEND, so counting never aborts a
//   transaction. Per-lock counters are relaxed atomic increments on their
//   own cache line; per-process counters are per-thread (a thread's own
//   line, plain load + store), summed when read, and kept when a thread
//   exits.
//
//   Each abort counts once, under its first cause in this order (a status
//   may carry several bits; CONFLICT usually comes with RETRY):
//     lock_busy   explicit abort with lock_busy_code: the subscription found
//                 the lock held
//     explicit    any other explicit abort (XABORT in the critical section)
//     capacity    CAPACITY
//     conflict    CONFLICT
//     retry       RETRY alone
//     debug       DEBUG
//     unreported  none of these (status 0: interrupt, system call,
//                 unsupported instruction, ...)
//   so aborts == the sum of aborts_by_cause, and
//   attempts == commits + aborts.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "hwsync/htm/transaction.hpp"

namespace hwsync::htm {

enum class abort_cause : std::uint8_t {
  lock_busy,
  explicit_abort,
  capacity,
  conflict,
  retry,
  debug,
  unreported,
};
inline constexpr std::size_t abort_cause_count = 7;

// The first cause of an aborted status in the order above.
abort_cause classify(status s) noexcept;
std::string_view to_string(abort_cause c) noexcept;

struct statistics {
  std::uint64_t attempts = 0;  // transactions begun: commits + aborts
  std::uint64_t commits = 0;
  std::uint64_t aborts = 0;
  std::array<std::uint64_t, abort_cause_count> aborts_by_cause{};
  std::uint64_t fallbacks = 0;     // acquisitions that tried to elide, then took the lock
  std::uint64_t skipped = 0;       // acquisitions that took the lock without trying (elision off)
  std::uint64_t switched_off = 0;  // times the adaptive policy turned elision off
  // Per lock only (0 in process_statistics()): the current off interval in
  // acquisitions (0: eliding) and how many of them are left.
  std::uint32_t skip_interval = 0;
  std::uint32_t skip_remaining = 0;

  std::uint64_t aborts_of(abort_cause c) const noexcept {
    return aborts_by_cause[static_cast<std::size_t>(c)];
  }
  // Acquisitions that went through the elision policy: commits + fallbacks + skipped.
  std::uint64_t acquisitions() const noexcept { return commits + fallbacks + skipped; }
  // "attempts 10 commits 7 aborts 3 (conflict 2, capacity 1) fallbacks 1 skipped 4 ..."
  std::string describe() const;
};

// Every elided lock of this process together, including threads that have
// exited.
statistics process_statistics();

}  // namespace hwsync::htm
