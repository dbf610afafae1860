// hwsync/stm/stripe_table.hpp — the STM's shared metadata: the global
// version clock, the striped table of versioned locks, and the serial gate.
// Internal to hwsync::stm (namespace detail); documented here because the
// hybrid protocol (docs/stm.md) is a contract on these words.
//
// Contract
//   Every tvar maps, by its address, to one of stripe_count versioned locks
//   (a tvar of any size is versioned as one unit: one stripe per tvar, two
//   tvars may share a stripe, which costs a false conflict, never a wrong
//   answer). Size: stripe_count * 8 bytes = 8 MiB of zero-initialized memory
//   (touched lazily, page by page).
//   Ordering      A committer's write-back happens-before the release store
//                 that unlocks the stripe with its new version; a reader's
//                 acquire load of that version makes the write-back visible.
//                 The value words are atomics themselves (relaxed/acquire),
//                 so ThreadSanitizer sees every hand-off without annotations
//                 and no standalone fence is used anywhere.
//   Blocking      Never here. Fairness: none (see contention management in
//                 hwsync/stm/transaction.hpp).
//
// Stripe word (64 bits)
//   | bit 0 | bits 1..8 | bits 9..63  | meaning                                |
//   |-------|-----------|-------------|----------------------------------------|
//   | 0     | tag t     | version v   | unlocked; the last commit to it loaded |
//   |       |           |             | clock v - 1 after locking; t is its    |
//   |       |           |             | committer's tag (1..255, unique among  |
//   |       |           |             | live descriptors) or 0 (untagged: a    |
//   |       |           |             | hardware commit, a descriptor beyond   |
//   |       |           |             | the 255th live one)                    |
//   | 1     | owner id (bits 1..63)   | locked by that committer for           |
//   |       |                         | write-back; the word it replaced is    |
//   |       |                         | held aside                             |
//   A thread whose snapshot is rv takes the word (rv + 1, its own tag) as
//   if its version were <= rv: only its own finished commits wrote it, and
//   nothing that must serialize after them has a version <= rv + 1 that
//   could hide (docs/stm.md, "The clock", own commits). So disjoint writers
//   never extend past each other's versions, and never write the clock.
//
// Global clock (64 bits), advanced lazily (TL2's GV5): an update commit
//   loads it after locking its stripes and writes version clock + 1 without
//   incrementing it, so concurrent commits may share a version and a
//   version may be one above the clock. A transaction that meets a version
//   above its rv advances the clock to that version (one CAS, only if
//   nobody did) before extending, and an update commit that read 8 tvars or
//   more advances it to its own version after write-back (its readers are
//   likely long traversals). The clock only grows, every access to it
//   is seq_cst, and rv is always a value read or written on it: the
//   opacity argument in docs/stm.md ("The clock") rests on these three.
//   Single-thread transactions never touch it.
//
// Serial gate (32 bits, a futex word)
//   | bit 0 SERIAL  | an irrevocable (serial) transaction runs: software      |
//   |               | committers back off, hardware transactions abort        |
//   | bit 1 WAITERS | committers are parked until SERIAL clears               |
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace hwsync::stm::detail {

inline constexpr unsigned stripe_bits = 20;
inline constexpr std::size_t stripe_count = std::size_t{1} << stripe_bits;
inline constexpr std::uint64_t stripe_locked = 1;

inline constexpr std::uint32_t gate_serial = 1u << 0;
inline constexpr std::uint32_t gate_waiters = 1u << 1;

struct alignas(64) runtime_words {
  alignas(64) std::atomic<std::uint64_t> clock{0};
  alignas(64) std::atomic<std::uint32_t> serial_gate{0};
  // Threads parked in retry; committers read it after unlocking (Dekker with
  // the waiter's registration, both seq_cst).
  alignas(64) std::atomic<std::uint32_t> retry_waiters{0};
  // Threads with a transaction descriptor; 1 enables the single-thread mode.
  alignas(64) std::atomic<std::uint32_t> live_threads{0};
  // 1 while the single-thread mode runs a transaction; a thread registering
  // a descriptor waits for 0 (an asymmetric Dekker pair with live_threads:
  // the rare side issues membarrier(2), the hot side only a compiler fence).
  alignas(64) std::atomic<std::uint32_t> single_active{0};
  // membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) is available; otherwise
  // both sides of the pair use seq_cst read-modify-writes.
  std::atomic<bool> asymmetric_fence{false};
  // Bumped by set_tuning(): descriptors re-read the tuning when it moves.
  alignas(64) std::atomic<std::uint64_t> tuning_epoch{1};
};

extern runtime_words runtime;
extern std::atomic<std::uint64_t> stripes[stripe_count];

// Neighbouring 8-byte tvars (an array of accounts) land on neighbouring
// stripes; the high bits are folded in so that equal offsets in different
// 8 MiB regions do not collide systematically.
inline std::uint32_t stripe_index(const void* tvar) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(tvar);
  return static_cast<std::uint32_t>(((a >> 3) ^ (a >> (3 + stripe_bits))) & (stripe_count - 1));
}

// The single-thread mode's half of the asymmetric Dekker pair (the other
// half is the registration of a descriptor, in stm/src/runtime.cpp).
[[gnu::always_inline]] inline bool try_enter_single_thread_mode() noexcept {
  if (runtime.live_threads.load(std::memory_order_relaxed) != 1) return false;
  if (runtime.asymmetric_fence.load(std::memory_order_relaxed)) {
    runtime.single_active.store(1, std::memory_order_relaxed);
    std::atomic_signal_fence(
        std::memory_order_seq_cst);  // a compiler fence: membarrier does the rest
  } else {
    runtime.single_active.exchange(1, std::memory_order_seq_cst);
  }
  // seq_cst: the other half of the pair (a plain load on x86). It also
  // acquires: a thread that unregistered (count back to 1) made its commits
  // visible with its release decrement.
  if (runtime.live_threads.load(std::memory_order_seq_cst) == 1) return true;
  runtime.single_active.store(0, std::memory_order_release);
  return false;
}

inline void leave_single_thread_mode() noexcept {
  runtime.single_active.store(0, std::memory_order_release);
}

inline constexpr bool is_locked(std::uint64_t w) noexcept {
  return (w & stripe_locked) != 0;
}
inline constexpr unsigned version_shift = 9;  // bit 0 the lock, bits 1..8 the tag
inline constexpr std::uint64_t max_commit_tag = 255;
inline constexpr std::uint64_t version_of(std::uint64_t w) noexcept {
  return w >> version_shift;
}
inline constexpr std::uint64_t unlocked_word(std::uint64_t version, std::uint64_t tag) noexcept {
  return version << version_shift | tag << 1;
}
inline constexpr std::uint64_t locked_word(std::uint64_t owner) noexcept {
  return (owner << 1) | stripe_locked;
}

}  // namespace hwsync::stm::detail
