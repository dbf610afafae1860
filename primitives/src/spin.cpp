#include "hwsync/spin.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>

namespace hwsync {
namespace {

// Threads currently holding a spinner slot, process-wide.
std::atomic<unsigned> g_spinning{0};

unsigned online_cpus() noexcept {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<unsigned>(CPU_COUNT(&set));
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1u;
}

}  // namespace

unsigned spinner_slots() noexcept {
  static const unsigned slots = [] {
    unsigned cpus = online_cpus();
    return cpus > 1 ? cpus - 1 : 0u;
  }();
  return slots;
}

spin_policy spin_policy::standard() noexcept {
  using std::chrono::nanoseconds;
  static const spin_policy standard{cycle_clock::estimated_from_duration(nanoseconds(4000)),
                                    cycle_clock::estimated_from_duration(nanoseconds(750)),
                                    cycle_clock::estimated_from_duration(nanoseconds(1500))};
  return standard;
}

cycle_clock::ticks yield_window() noexcept {
  static const cycle_clock::ticks window =
      cycle_clock::estimated_from_duration(std::chrono::microseconds(50));
  return window;
}

void yield_cpu() noexcept {
  sched_yield();
}

bool spinner::first_step() noexcept {
  if (policy_.budget == 0) return false;
  unsigned seen = g_spinning.load(std::memory_order_relaxed);
  const unsigned slots = spinner_slots();
  while (seen < slots) {
    if (g_spinning.compare_exchange_weak(seen, seen + 1, std::memory_order_relaxed)) {
      has_slot_ = true;
      until_ = cycle_clock::now() + policy_.budget;
      interval_ = policy_.first_interval;
      return true;
    }
  }
  // Every other core already has a spinner: give this CPU to whoever holds
  // the lock, then park.
  sched_yield();
  return false;
}

bool spinner::spin() noexcept {
  if (done_) return false;
  if (steps_ == 0 && !first_step()) {
    done_ = true;
    return false;
  }
  const cycle_clock::ticks now = cycle_clock::now();
  if (now >= until_) {
    release_slot();
    done_ = true;
    return false;
  }
  const cycle_clock::ticks wake = now + interval_ < until_ ? now + interval_ : until_;
  do cpu_relax();
  while (cycle_clock::now() < wake);
  if (interval_ < policy_.max_interval) interval_ = std::min(2 * interval_, policy_.max_interval);
  ++steps_;
  return true;
}

void spinner::release_slot() noexcept {
  if (has_slot_) {
    g_spinning.fetch_sub(1, std::memory_order_relaxed);
    has_slot_ = false;
  }
}

}  // namespace hwsync
