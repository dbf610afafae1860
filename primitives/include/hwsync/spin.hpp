// hwsync/spin.hpp — the one spin-then-park policy of every blocking primitive.
//
// Contract
//   A `spinner` lives for one wait. Each spin() is one backoff step: it
//   executes `pause` until an interval of cycle_clock ticks has passed, and
//   the interval doubles from `first_interval` up to `max_interval`. The
//   caller looks at the lock word between steps, so a spinning thread reads
//   the contended line about once per interval. spin() returns false — "park
//   now" — when the budget (ticks since the first spin()) is spent, or when
//   spinning cannot help because threads already spinning fill every other
//   core.
//
//   Why intervals in ticks, not a count of pauses: `pause` costs about 60
//   TSC ticks on this Zen 3 host, about 140 cycles on Skylake-class Intel
//   and about 10 on older cores, so a pause count means a different polling
//   rate on each. The rate is what matters, measured with
//   bench/mutex_bench's contended_short (2 to 32 threads) and handoff:
//   polling from 1 pause doubling to 32 let freshly arrived spinners catch
//   the holder's unlock-to-relock window so often that at 32 threads the
//   lock changed hands ~930k times/s and throughput fell to 0.65x
//   std::mutex; polling every ~0.75 µs rising to ~1.5 µs keeps the lock with
//   its holder (1.3-1.5x std at 8-32 threads) and still notices a release
//   within about half an interval, far below a futex wake-up (~30 µs here).
//
//   Spinner slots: at most max(online CPUs - 1, 0) threads spin at once,
//   process-wide (one atomic, touched only on contended paths). The core left
//   over is for the lock holder: on this 2-core machine one waiter spins and
//   the rest park at once instead of burning the holder's time slice. A
//   thread that gets no slot yields its CPU once (sched_yield) — the cheap
//   chance for a preempted holder to run — and is then told to park.
//
//   Budget: spin_policy::standard() spins about as long as a futex park and
//   wake-up costs (default 4 µs). All durations come from the quick TSC
//   estimate, so the first contended lock never waits for the 100 ms
//   calibration.
//
//   Not a lock and no memory ordering: the caller's own loads decide.
#pragma once

#include <cstdint>

#include "hwsync/cycle_clock.hpp"

namespace hwsync {

struct spin_policy {
  cycle_clock::ticks budget;          // ticks to spin before parking; 0: never spin
  cycle_clock::ticks first_interval;  // ticks between the first looks at the lock
  cycle_clock::ticks max_interval;    // the backoff doubles up to this

  // 4 µs budget; look after 0.75 µs, then every 1.5 µs.
  static spin_policy standard() noexcept;
  static constexpr spin_policy never() noexcept { return {0, 0, 0}; }
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
  // The wait the next spin() will make, in ticks (0 before the first).
  cycle_clock::ticks next_interval() const noexcept { return interval_; }

 private:
  bool first_step() noexcept;
  void release_slot() noexcept;

  spin_policy policy_;
  cycle_clock::ticks until_ = 0;
  cycle_clock::ticks interval_ = 0;
  std::uint32_t steps_ = 0;
  bool has_slot_ = false;
  bool done_ = false;
};

// `pause` (x86) or the nearest relaxation hint elsewhere.
// The phase between spinning and parking, for waits that end when another
// thread acts (a release, a hand-off). The waiter yields its CPU until
// `ready()` returns true (ready() makes the attempt: take the permit, enter
// the lock) or `window` ticks have passed, then returns ready()'s last answer.
//   Why: when threads outnumber cores, the thread being waited for is often
//   waiting for this CPU, and yielding hands it over; and a waiter that yields
//   stays runnable, so its waker needs no futex wake-up (about 30 µs on a KVM
//   guest, where waking a halted vCPU takes an inter-processor interrupt).
//   With nothing else runnable, a yield returns at once, so the phase is a
//   bounded, polite spin: at most `window` of CPU per wait, never a busy loop.
// yield_window() is the default, 50 µs: longer than that wake-up, so two
// threads handing a permit back and forth stay awake instead of each parking
// because the other's wake-up outlasted its spin budget.
cycle_clock::ticks yield_window() noexcept;
void yield_cpu() noexcept;  // sched_yield(2)

template <class Ready>
bool yield_until(Ready&& ready, cycle_clock::ticks window) {
  const cycle_clock::ticks end = cycle_clock::now() + window;
  for (;;) {
    if (ready()) return true;
    if (cycle_clock::now() >= end) return false;
    yield_cpu();
  }
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace hwsync
