// Internal to hwsync::stm: the process-wide state behind the descriptors —
// the serial mutex, the retry waiters, the descriptor registry, and the
// explicit abort codes of the hardware path.
#pragma once

#include <cstdint>
#include <vector>

#include "hwsync/futex.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/stm/statistics.hpp"

namespace hwsync::stm {
class transaction;
}

namespace hwsync::stm::detail {

// XABORT codes of the hardware path (0xFF is htm::lock_busy_code).
inline constexpr std::uint8_t code_locked = 0xF1;     // a stripe was locked
inline constexpr std::uint8_t code_serial = 0xF2;     // a serial transaction runs
inline constexpr std::uint8_t code_retry = 0xF3;      // tx.retry(): block in software
inline constexpr std::uint8_t code_exception = 0xF4;  // rerun in software to throw
inline constexpr std::uint8_t code_abort = 0xF5;      // an abort signal inside hardware

// Held by a serial transaction; descriptors register and unregister under it.
hwsync::mutex& serial_mutex() noexcept;

struct waiter {
  futex::word woken{0};
  const std::uint32_t* stripes = nullptr;  // sorted, unique
  std::uint32_t stripe_count = 0;
};
hwsync::mutex& waiters_mutex() noexcept;
std::vector<waiter*>& waiters() noexcept;  // under waiters_mutex()

// Registration waits for a single-thread-mode transaction to end. Returns
// the descriptor's commit tag: 1 to max_commit_tag, unique among live
// descriptors, or 0 when all are taken (its commits are then untagged).
std::uint64_t register_descriptor(transaction* t);

// Gives the tag back: the descriptor's commits have all ended, so a thread
// that takes the tag next may treat them as its own (docs/stm.md).
void unregister_descriptor(transaction* t, std::uint64_t tag, const statistics& final_counts);

// Advances the clock to at least `version` (a version a reader met above
// its rv): one CAS unless another thread got there first. Returns the clock
// value it read or wrote, which is >= version and a valid new rv.
std::uint64_t advance_clock(std::uint64_t version) noexcept;

// Whether threads with a descriptor outnumber the CPUs this process may
// run on: then a thread that meets a locked stripe gives its CPU away (the
// owner may be waiting for one) instead of spinning.
bool oversubscribed() noexcept;

}  // namespace hwsync::stm::detail
