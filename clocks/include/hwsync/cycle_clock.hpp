// hwsync::cycle_clock — the time-stamp counter as a std::chrono-style clock.
//
// Contract
//   now()            One `rdtsc` (about 20-40 cycles, no fence): ticks of the
//                    invariant TSC. Cheap enough for spin budgets and hot-path
//                    timestamps. Not ordered against surrounding loads/stores.
//   start()/stop()   Serialized reads for measuring a region: start() is
//                    lfence;rdtsc;lfence (earlier instructions retire first,
//                    later ones do not start early); stop() is rdtscp;lfence
//                    (the measured region has retired; later code waits).
//   ticks_per_second()
//                    Calibrated once per process against CLOCK_MONOTONIC_RAW
//                    over at least 100 ms, taking at each end the
//                    (tsc, clock) pair read with the smallest tsc gap out of
//                    several. CPUID leaves 0x15/0x16 are not trusted: they are
//                    empty on AMD and in many VMs. The first call blocks for
//                    the calibration; later calls are one load.
//   estimated_ticks_per_second()
//                    A 0.5 ms estimate (good to about 1%), for budgets that
//                    must not stall a thread for 100 ms: spin limits, fairness
//                    bounds. Becomes the calibrated value once that exists.
//   Fallback         Without an invariant TSC (CPUID 0x80000007 EDX bit 8)
//                    or off x86-64, ticks are nanoseconds of
//                    CLOCK_MONOTONIC_RAW and ticks_per_second() is 1e9.
//   Override     HWSYNC_CYCLE_CLOCK=monotonic forces the fallback (for tests
//                    and for machines whose TSC is known to be bad).
//   Cost rule        cpuid runs once, at the first use, never on a hot path:
//                    in a VM it traps to the hypervisor (several µs).
//   Thread safety    Every member is safe to call from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace hwsync {

class cycle_clock {
 public:
  using rep = std::uint64_t;
  using ticks = std::uint64_t;

  // Ticks since an unspecified origin (reset, for the TSC).
  static ticks now() noexcept {
#if defined(__x86_64__)
    if (mode_.load(std::memory_order_relaxed) == mode_tsc) [[likely]]
      return __rdtsc();
#endif
    return now_slow();
  }

  // Serialized read marking the start of a measured region.
  static ticks start() noexcept {
#if defined(__x86_64__)
    if (mode_.load(std::memory_order_relaxed) == mode_tsc) [[likely]] {
      _mm_lfence();
      ticks t = __rdtsc();
      _mm_lfence();
      return t;
    }
#endif
    return now_slow();
  }

  // Serialized read marking the end of a measured region.
  static ticks stop() noexcept {
#if defined(__x86_64__)
    if (mode_.load(std::memory_order_relaxed) == mode_tsc) [[likely]] {
      unsigned aux;
      ticks t = __rdtscp(&aux);
      _mm_lfence();
      return t;
    }
#endif
    return now_slow();
  }

  static double ticks_per_second();
  static double estimated_ticks_per_second() noexcept;

  // True when ticks come from an invariant TSC; false in the fallback.
  static bool is_invariant_tsc() noexcept;

  template <class Duration = std::chrono::nanoseconds>
  static Duration to_duration(ticks t) {
    const double seconds = static_cast<double>(t) / ticks_per_second();
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds));
  }

  template <class Rep, class Period>
  static ticks from_duration(std::chrono::duration<Rep, Period> d) {
    const double seconds = std::chrono::duration<double>(d).count();
    return seconds <= 0 ? 0 : static_cast<ticks>(seconds * ticks_per_second());
  }

  // As from_duration, with the quick estimate: never blocks for calibration.
  template <class Rep, class Period>
  static ticks estimated_from_duration(std::chrono::duration<Rep, Period> d) noexcept {
    const double seconds = std::chrono::duration<double>(d).count();
    return seconds <= 0 ? 0 : static_cast<ticks>(seconds * estimated_ticks_per_second());
  }

 private:
  enum : int { mode_unknown = 0, mode_tsc = 1, mode_fallback = 2 };
  // Decided once, at the first now_slow(); read relaxed on every now().
  static std::atomic<int> mode_;
  static ticks now_slow() noexcept;
};

}  // namespace hwsync
