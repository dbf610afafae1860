// hwsync/lock_profile.hpp — the contention profiler: per-lock wait and hold
// times of sampled acquisitions, in log-linear histograms, ranked by total
// wait.
//
// Contract
//   Switch        Off by default. HWSYNC_LOCKPROF=1 in the environment turns
//                 it on when libhwsync_primitives loads and prints the text
//                 report to stderr at exit; HWSYNC_LOCKPROF_PERIOD=N samples
//                 one acquisition in N (default 16). Bad values: a message
//                 on stderr saying what was expected, and off (or the
//                 default period). enable_lock_profiling(N) and
//                 disable_lock_profiling() at any time.
//   Covers        Every hwsync lock the lock-order checker covers (see
//                 hwsync/lock_order.hpp), in every mode.
//   Sampling      Each thread counts its acquisition attempts down and
//                 samples one when the count runs out, then draws the next
//                 count uniformly from 1..2N-1 (N on average; every one when
//                 N is 1): a fixed stride would alias with code that takes
//                 locks in a repeating cycle. A sample reads
//                 cycle_clock::now() before the attempt and after
//                 its success (the wait) and at the start of the matching
//                 release (the hold). An unsampled acquisition costs a call
//                 that counts down, and its release a call that finds the
//                 thread's held-lock stack without it (the stack holds only
//                 sampled locks unless the order checker is on too). A
//                 sampled acquisition whose wait is at
//                 least 1 µs counts as contended.
//   Aggregation   Each thread records into its own table (per-lock
//                 histograms under the thread's own std::mutex, which only a
//                 snapshot, a lock's destruction or the thread's exit
//                 contends for), so sampling threads never share a cache
//                 line. A snapshot merges every thread's table and those of
//                 exited threads. A destroyed lock's entries are merged and
//                 retired (kept, marked destroyed), so a reused address
//                 starts a new entry.
//   Units         Every time in a snapshot is in cycle_clock ticks;
//                 ticks_per_second converts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hwsync {

struct lock_time_summary {
  std::uint64_t count = 0;
  std::uint64_t total = 0;
  std::uint64_t p50 = 0;  // percentiles: bucket upper bounds (within 12.5%, never below)
  std::uint64_t p99 = 0;
  std::uint64_t p999 = 0;
  std::uint64_t max = 0;
};

struct lock_profile_entry {
  const void* lock = nullptr;
  std::string name;        // set_lock_name's, or empty
  bool destroyed = false;  // retired: the address may now be another lock's
  std::uint64_t sampled_acquisitions = 0;
  std::uint64_t contended = 0;  // sampled acquisitions that waited >= 1 µs
  lock_time_summary wait;
  lock_time_summary hold;
};

struct lock_profile_snapshot {
  double ticks_per_second = 0;
  std::uint32_t sample_period = 0;
  std::vector<lock_profile_entry> locks;  // by total wait, largest first

  // A table, one line per lock, times in µs.
  std::string text() const;
  // {"ticks_per_second":..,"sample_period":..,"locks":[{"lock":"0x..","name":..,
  //  "destroyed":..,"sampled_acquisitions":..,"contended":..,"wait":{count,
  //  total,p50,p99,p999,max (ticks)},"hold":{...}}]}
  std::string json() const;
};

// sample_period: sample one acquisition in that many (1: all of them). While
// the profiler is already on, a new period applies from each thread's next
// sample.
void enable_lock_profiling(std::uint32_t sample_period = 16) noexcept;
void disable_lock_profiling() noexcept;
bool lock_profiling_enabled() noexcept;

lock_profile_snapshot snapshot_lock_profile();
// Forgets every entry (live and retired).
void reset_lock_profile();

}  // namespace hwsync

namespace hwsync::detail::profile {

// Between the hooks (src/lock_order.cpp) and the profiler (src/lock_profile.cpp);
// not part of the API.
std::uint32_t period() noexcept;
// One sampled acquisition, recorded at its release.
void record(const void* lock, std::uint64_t wait_ticks, std::uint64_t hold_ticks);
// The lock is being destroyed: keep its entry as a retired one.
void retire(const void* lock);

}  // namespace hwsync::detail::profile
