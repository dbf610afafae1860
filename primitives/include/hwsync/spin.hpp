// hwsync/spin.hpp — the one spin-then-park policy of every blocking primitive.
//
// Contract
//   A `spinner` lives for one wait. Each spin() is one backoff step: a batch
//   of `pause` instructions that doubles from 1 up to a cap, so a spinning
//   thread reads the contended line less and less often. The cap (32) is a
//   measured compromise: `pause` is slow on recent cores (about 60 TSC ticks
//   on this Zen 3 host), so at 64 a spinner looked at the lock only every
//   1.6 µs (hand-off p50 1.1 µs); at 8 it polled so often that two threads
//   passing the lock ran at 84M/s instead of 133M/s (hand-off p50 0.2 µs);
//   at 32: 133M/s and 0.34 µs (bench/mutex_bench, handoff and
//   contended_short at 2 threads). spin() returns
//   false — "park now" — when the budget (cycle_clock ticks since the first
//   spin()) is spent, or when spinning cannot help because threads already
//   spinning fill every other core.
//
//   Spinner slots: at most max(online CPUs - 1, 0) threads spin at once,
//   process-wide (one atomic, touched only on contended paths). The core left
//   over is for the lock holder: on this 2-core machine one waiter spins and
//   the rest park at once instead of burning the holder's time slice. A
//   thread that gets no slot yields its CPU once (sched_yield) — the cheap
//   chance for a preempted holder to run — and is then told to park.
//
//   Budget: spin_policy::standard() spins about as long as a futex park and
//   wake-up costs (default 4 µs, from the quick TSC estimate, so the first
//   contended lock never waits for the 100 ms calibration).
//
//   Not a lock and no memory ordering: the caller's own loads decide.
#pragma once

#include <cstdint>

#include "hwsync/cycle_clock.hpp"

namespace hwsync {

struct spin_policy {
  cycle_clock::ticks budget;      // ticks to spin before parking; 0: never spin
  std::uint32_t max_pause_batch;  // cap of the exponential backoff, in pauses

  // About 4 µs of spinning, backoff capped at 32 pauses.
  static spin_policy standard() noexcept;
  static constexpr spin_policy never() noexcept { return {0, 1}; }
};

// Threads allowed to spin at once: online CPUs - 1 (computed once).
unsigned spinner_slots() noexcept;

class spinner {
 public:
  explicit spinner(spin_policy policy = spin_policy::standard()) noexcept : policy_(policy) {}
  ~spinner() { release_slot(); }
  spinner(const spinner&) = delete;
  spinner& operator=(const spinner&) = delete;

  // One backoff step. false: stop spinning and park.
  bool spin() noexcept;

  // Steps taken so far (for statistics and tests).
  std::uint32_t steps() const noexcept { return steps_; }

 private:
  bool first_step() noexcept;
  void release_slot() noexcept;

  spin_policy policy_;
  cycle_clock::ticks until_ = 0;
  std::uint32_t batch_ = 1;
  std::uint32_t steps_ = 0;
  bool has_slot_ = false;
  bool done_ = false;
};

// `pause` (x86) or the nearest relaxation hint elsewhere.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace hwsync
