// hwsync/clocks/interval_clock.hpp — hwsync::interval_clock, a TrueTime-like
// clock: now() is an interval [earliest, latest] that contains true time,
// using the kernel's own NTP error bound (adjtimex(2)).
//
// Contract
//   now()         reads the wall clock t (physical_source::now_ns) and
//                 returns [t - w, t + w]. The half-width w is
//                   synchronized:   maxerror + growth
//                   unsynchronized: maxerror + growth + unsynchronized_bound
//                 where maxerror is the kernel's bound on the wall clock's
//                 error (adjtimex maxerror, which the kernel itself raises by
//                 500 ppm of elapsed time between NTP updates), growth is
//                 500 ppm of the time since that value was sampled (the
//                 kernel's own rate, so a cached sample never claims less
//                 than the kernel would), and the clock counts as
//                 unsynchronized when the kernel reports STA_UNSYNC or
//                 TIME_ERROR (no NTP daemon, or one that lost its servers).
//                 The kernel then caps maxerror at 16 s (NTP_PHASE_LIMIT),
//                 which bounds nothing: an undisciplined clock can be off by
//                 any amount, so the interval widens by a further
//                 unsynchronized_bound (options; 1 s by default — set it to
//                 what is known about the host) instead of pretending.
//   Sampling      The error estimate costs a system call (ntp_adjtime), the
//                 wall clock does not (vDSO). The estimate is cached and
//                 re-read when it is older than refresh_interval (10 ms by
//                 default) or when the wall clock reads earlier than the
//                 sample (a step back); between samples, the growth term
//                 keeps the bound as wide as the kernel's. A forward step
//                 smaller than refresh_interval is seen at the next
//                 refresh.
//   after(t)      true when t is certainly past: earliest > t.
//   before(t)     true when t is certainly in the future: latest < t.
//   wait_until_after(t)
//                 commit wait: sleeps (physical_source::sleep_for, no busy
//                 loop) until now().earliest > t, and returns that interval.
//                 Each sleep is for the remaining distance, so it takes one
//                 or two sleeps unless the clock is stepped meanwhile. With
//                 the default unsynchronized bound on an unsynchronized
//                 host, a commit wait lasts about 2 x 17 s: the honest
//                 price of an unknown clock.
//   Thread safety Every member may be called from any thread. The cached
//                 sample is published under a sequence counter (readers
//                 retry when a refresh overlaps their read; a reader that
//                 finds a refresh in progress samples for itself). now()
//                 never blocks; wait_until_after() sleeps.
//   Units         nanoseconds since the Unix epoch (int64).
//
// The cache (a seqlock of atomics)
//   seq_          even: the sample below is stable; odd: a refresh is
//                 writing it (the refreshing thread made it odd by CAS)
//   sample_at_    wall-clock ns when the sample was taken (read before it)
//   max_error_    maxerror in ns
//   est_error_    esterror in ns
//   synced_       1 when synchronized
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "hwsync/clocks/physical_source.hpp"

namespace hwsync {

struct time_interval {
  std::int64_t earliest_ns = 0;
  std::int64_t latest_ns = 0;
  // The kernel's view when the bound was taken (see interval_clock).
  bool synchronized = false;
  std::int64_t estimated_error_ns = 0;

  std::int64_t half_width_ns() const noexcept { return (latest_ns - earliest_ns) / 2; }
};

class interval_clock {
 public:
  struct options {
    // Added to the half-width while the kernel reports the clock
    // unsynchronized.
    std::chrono::nanoseconds unsynchronized_bound = std::chrono::seconds(1);
    // How long a sampled error estimate is used before it is read again.
    std::chrono::nanoseconds refresh_interval = std::chrono::milliseconds(10);
  };
  // The kernel's maxerror growth rate (MAXFREQ): 500 ppm.
  static constexpr std::int64_t growth_ppm = 500;

  interval_clock() : interval_clock(system_realtime(), options{}) {}
  explicit interval_clock(physical_source& source) : interval_clock(source, options{}) {}
  // Negative durations in o are std::invalid_argument.
  interval_clock(physical_source& source, options o);
  interval_clock(const interval_clock&) = delete;
  interval_clock& operator=(const interval_clock&) = delete;

  time_interval now() noexcept;
  bool after(std::int64_t t_ns) noexcept { return now().earliest_ns > t_ns; }
  bool before(std::int64_t t_ns) noexcept { return now().latest_ns < t_ns; }
  time_interval wait_until_after(std::int64_t t_ns) noexcept;

  const options& config() const noexcept { return options_; }
  physical_source& source() const noexcept { return source_; }

 private:
  struct sample {
    std::int64_t at_ns;
    std::int64_t max_error_ns;
    std::int64_t est_error_ns;
    bool synchronized;
  };
  time_interval make(std::int64_t t, const sample& s) const noexcept;
  time_interval refresh_and_read() noexcept;

  physical_source& source_;
  options options_;
  std::atomic<std::uint64_t> seq_{0};
  std::atomic<std::int64_t> sample_at_{0};
  std::atomic<std::int64_t> max_error_{0};
  std::atomic<std::int64_t> est_error_{0};
  std::atomic<int> synced_{0};
  // No sample yet: the first now() samples.
  std::atomic<bool> have_sample_{false};
};

}  // namespace hwsync
