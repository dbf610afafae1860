// interval_clock: the cached kernel error estimate, the interval, commit wait.
#include "hwsync/clocks/interval_clock.hpp"

#include <limits>
#include <stdexcept>
#include <string>

namespace hwsync {

interval_clock::interval_clock(physical_source& source, options o) : source_(source), options_(o) {
  if (o.unsynchronized_bound.count() < 0 || o.refresh_interval.count() < 0) {
    throw std::invalid_argument(
        "interval_clock: expected non-negative options, got unsynchronized_bound " +
        std::to_string(o.unsynchronized_bound.count()) + " ns and refresh_interval " +
        std::to_string(o.refresh_interval.count()) + " ns");
  }
}

namespace {

std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    return b > 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  return r;
}

// t - at for t >= at, without overflow (capped at the int64 maximum).
std::int64_t distance(std::int64_t t, std::int64_t at) noexcept {
  const std::uint64_t d = static_cast<std::uint64_t>(t) - static_cast<std::uint64_t>(at);
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(d < max ? d : max);
}

}  // namespace

time_interval interval_clock::make(std::int64_t t, const sample& s) const noexcept {
  const std::int64_t elapsed = t > s.at_ns ? distance(t, s.at_ns) : 0;
  // 500 ppm of the elapsed time, rounded up so the bound never shrinks.
  const std::int64_t growth =
      elapsed / 1'000'000 * growth_ppm + (elapsed % 1'000'000 * growth_ppm + 999'999) / 1'000'000;
  std::int64_t w = saturating_add(s.max_error_ns > 0 ? s.max_error_ns : 0, growth);
  if (!s.synchronized) w = saturating_add(w, options_.unsynchronized_bound.count());
  return {saturating_add(t, -w), saturating_add(t, w), s.synchronized, s.est_error_ns};
}

time_interval interval_clock::now() noexcept {
  const std::int64_t t = source_.now_ns();
  if (have_sample_.load(std::memory_order_acquire)) {
    const std::uint64_t s1 = seq_.load(std::memory_order_acquire);
    if ((s1 & 1) == 0) {
      const sample s{
          sample_at_.load(std::memory_order_relaxed), max_error_.load(std::memory_order_relaxed),
          est_error_.load(std::memory_order_relaxed), synced_.load(std::memory_order_relaxed) != 0};
      std::atomic_thread_fence(std::memory_order_acquire);
      if (seq_.load(std::memory_order_relaxed) == s1 && t >= s.at_ns &&
          distance(t, s.at_ns) <= options_.refresh_interval.count()) {
        return make(t, s);
      }
    }
  }
  return refresh_and_read();
}

time_interval interval_clock::refresh_and_read() noexcept {
  // The wall clock is read before the estimate, so the growth term counts
  // from no later than the moment the estimate describes.
  const std::int64_t at = source_.now_ns();
  const clock_error_estimate e = source_.error_estimate();
  const sample s{at, e.max_error.count(), e.estimated_error.count(), e.synchronized};
  std::uint64_t seq = seq_.load(std::memory_order_relaxed);
  if ((seq & 1) == 0 && seq_.compare_exchange_strong(seq, seq + 1, std::memory_order_acquire,
                                                     std::memory_order_relaxed)) {
    // Seqlock writer: the odd value is visible before the fields change.
    std::atomic_thread_fence(std::memory_order_release);
    sample_at_.store(s.at_ns, std::memory_order_relaxed);
    max_error_.store(s.max_error_ns, std::memory_order_relaxed);
    est_error_.store(s.est_error_ns, std::memory_order_relaxed);
    synced_.store(s.synchronized ? 1 : 0, std::memory_order_relaxed);
    seq_.store(seq + 2, std::memory_order_release);
    have_sample_.store(true, std::memory_order_release);
  }
  // Another thread's refresh in progress: this thread's own sample is as
  // good, and it does not wait for the other.
  return make(source_.now_ns(), s);
}

time_interval interval_clock::wait_until_after(std::int64_t t_ns) noexcept {
  for (;;) {
    const time_interval now_iv = now();
    if (now_iv.earliest_ns > t_ns) return now_iv;
    // earliest advances a little slower than the wall clock (the growth
    // term), so this sleep can fall short by 500 ppm; the loop takes the rest.
    source_.sleep_for(
        std::chrono::nanoseconds(saturating_add(distance(t_ns, now_iv.earliest_ns), 1)));
  }
}

}  // namespace hwsync
