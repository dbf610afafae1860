// Mode detection and TSC calibration for hwsync::cycle_clock.
#include "hwsync/cycle_clock.hpp"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace hwsync {

std::atomic<int> cycle_clock::mode_{cycle_clock::mode_unknown};

namespace {

std::uint64_t raw_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

bool cpu_has_invariant_tsc() noexcept {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u) return false;
  __cpuid(0x80000007u, a, b, c, d);
  return (d & (1u << 8)) != 0;
#else
  return false;
#endif
}

bool fallback_forced() noexcept {
  const char* v = std::getenv("HWSYNC_CYCLE_CLOCK");
  return v != nullptr && std::strcmp(v, "monotonic") == 0;
}

// One (tsc, CLOCK_MONOTONIC_RAW) pair: of `tries` reads, the one whose two
// tsc reads bracket the clock read most tightly, with the tsc at its middle.
struct clock_pair {
  double tsc;
  double ns;
};

clock_pair tightest_pair(int tries) noexcept {
  clock_pair best{0, 0};
  std::uint64_t best_gap = ~std::uint64_t{0};
  for (int i = 0; i < tries; ++i) {
    const std::uint64_t t0 = cycle_clock::start();
    const std::uint64_t ns = raw_ns();
    const std::uint64_t t1 = cycle_clock::stop();
    if (t1 - t0 < best_gap) {
      best_gap = t1 - t0;
      best = {static_cast<double>(t0) + static_cast<double>(t1 - t0) / 2, static_cast<double>(ns)};
    }
  }
  return best;
}

double measure_ticks_per_second(std::uint64_t window_ns) noexcept {
  const clock_pair a = tightest_pair(16);
  const std::uint64_t until = raw_ns() + window_ns;
  if (window_ns >= 10'000'000) {
    timespec sleep_for{static_cast<time_t>(window_ns / 1'000'000'000),
                       static_cast<long>(window_ns % 1'000'000'000)};
    while (nanosleep(&sleep_for, &sleep_for) != 0) {
    }
  }
  while (raw_ns() < until) {
  }
  const clock_pair b = tightest_pair(16);
  return (b.tsc - a.tsc) * 1e9 / (b.ns - a.ns);
}

std::atomic<double> g_estimate{0.0};

}  // namespace

cycle_clock::ticks cycle_clock::now_slow() noexcept {
  int mode = mode_.load(std::memory_order_acquire);
  if (mode == mode_unknown) {
    const int decided = (!fallback_forced() && cpu_has_invariant_tsc()) ? mode_tsc : mode_fallback;
    mode_.compare_exchange_strong(mode, decided, std::memory_order_acq_rel);
    mode = mode_.load(std::memory_order_acquire);
  }
#if defined(__x86_64__)
  if (mode == mode_tsc) return __rdtsc();
#endif
  return raw_ns();
}

bool cycle_clock::is_invariant_tsc() noexcept {
  (void)now();
  return mode_.load(std::memory_order_acquire) == mode_tsc;
}

double cycle_clock::ticks_per_second() {
  static const double calibrated = [] {
    if (!is_invariant_tsc()) return 1e9;
    // Best of three 100 ms windows: a window in which this thread was
    // preempted at an end is not more wrong than the pair-gap bound, so the
    // windows agree closely; the median guards against one outlier.
    double w[3];
    for (double& x : w) x = measure_ticks_per_second(100'000'000);
    std::sort(w, w + 3);
    g_estimate.store(w[1], std::memory_order_release);
    return w[1];
  }();
  return calibrated;
}

double cycle_clock::estimated_ticks_per_second() noexcept {
  double e = g_estimate.load(std::memory_order_acquire);
  if (e > 0) return e;
  if (!is_invariant_tsc()) {
    e = 1e9;
  } else {
    e = measure_ticks_per_second(500'000);
  }
  double expected = 0.0;
  g_estimate.compare_exchange_strong(expected, e, std::memory_order_acq_rel);
  return g_estimate.load(std::memory_order_acquire);
}

}  // namespace hwsync
