// hwsync/htm/emulation.hpp — the policy emulation backend: RTM's control
// flow in software, with injected aborts. It tests the retry, fallback and
// adaptive policy of htm::elided<Lock>, its subscription and its statistics
// on machines without TSX. It does not test the hardware: nothing here says
// anything about how real transactions abort, what their capacity is, or
// whether a hardware path is correct.
//
// Contract
//   An emulated begin draws one outcome from the configured probabilities:
//     conflict  status CONFLICT | RETRY   (what a data conflict reports)
//     capacity  status CAPACITY           (no RETRY: the same set overflows again)
//     retry     status RETRY              (a transient abort, e.g. an interrupt)
//     explicit  status EXPLICIT | code    (as if the section executed XABORT(code))
//     otherwise the transaction starts.
//   Every injected status carries status::emulated_bit. Aborts are drawn at
//   begin only, before the critical section runs: an emulated transaction
//   cannot roll back writes, so "started" must mean "will commit".
//   Mutual exclusion is real: an emulated elided section runs while holding
//   the elided lock itself (taken with try_lock() at begin; a lock found
//   held is the subscription's lock-busy abort), and an emulated bare
//   transaction holds one process-wide lock. Statistics, the retry policy
//   and in_transaction() see a transaction.
//   Flat nesting is not emulated: an injected abort of an inner elided lock
//   aborts only that acquisition (hardware would abort the outermost too).
//
//   Draws are deterministic for a seed: draw i uses
//   splitmix64(splitmix64(seed) + i), i from one process-wide counter (so
//   nearby seeds do not give shifted copies of one sequence); a single-threaded test
//   sees the same sequence every run; threads share the sequence in the
//   order they reach it.
//
//   Selected by HWSYNC_HTM=emulate for the whole process (with
//   emulation_config{} defaults), or by a test with policy_emulation_scope.
#pragma once

#include <cstdint>

#include "hwsync/htm/capabilities.hpp"

namespace hwsync::htm {

struct emulation_config {
  // Probability of each injected outcome per begin, each in [0, 1], their
  // sum at most 1. The defaults (HWSYNC_HTM=emulate) exercise every path.
  double conflict = 0.10;
  double capacity = 0.02;
  double retry = 0.05;
  double explicit_abort = 0.02;
  std::uint8_t explicit_code = 0x01;  // lock_busy_code is reserved
  std::uint64_t seed = 1;

  // Always start: the emulated transactions never abort (but still find a
  // held lock busy).
  static constexpr emulation_config never_abort() noexcept { return {0, 0, 0, 0, 0x01, 1}; }

  // Throws std::invalid_argument saying which value was out of range.
  void validate() const;
};

// While alive, the active backend is policy_emulation with `config`,
// whatever capabilities() chose; the destructor restores the previous
// backend and configuration. For tests. Switch only while no elided lock
// is held and no thread is inside an htm call: a lock taken under one
// backend must be released under the same one.
class policy_emulation_scope {
 public:
  explicit policy_emulation_scope(const emulation_config& config = {});
  ~policy_emulation_scope();
  policy_emulation_scope(const policy_emulation_scope&) = delete;
  policy_emulation_scope& operator=(const policy_emulation_scope&) = delete;

  // New probabilities from the next draw on (safe while threads run); the
  // draw counter restarts at 0 for the new seed.
  void reconfigure(const emulation_config& config);

 private:
  backend previous_backend_;
  emulation_config previous_config_;
};

// The configuration in force (defaults until a scope or HWSYNC_HTM=emulate
// selects one).
emulation_config current_emulation_config() noexcept;

}  // namespace hwsync::htm
