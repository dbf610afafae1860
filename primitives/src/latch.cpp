// The waiting side of hwsync::latch. The state table and the invariant these
// functions keep are in hwsync/latch.hpp.
#include "hwsync/latch.hpp"

#include <chrono>
#include <cstdio>

namespace hwsync {

namespace detail {

spin_policy release_wait_policy() noexcept {
  using std::chrono::nanoseconds;
  static const spin_policy policy{spin_policy::standard().budget,
                                  cycle_clock::estimated_from_duration(nanoseconds(100)),
                                  cycle_clock::estimated_from_duration(nanoseconds(400))};
  return policy;
}

void latch_bad_count(const void* self, const char* what, std::ptrdiff_t n,
                     std::ptrdiff_t limit) noexcept {
  char message[160];
  std::snprintf(message, sizeof message, "%s %td (limit %td)", what, n, limit);
  debug::misuse("hwsync::latch", self, message);
}

}  // namespace detail

// Spins and yields while that can help (detail::await_release), then registers PARKED and sleeps on
// the exact word it saw; a count_down() that is not the last changes the word, so the futex wait
// returns value_changed and the loop sleeps again on the new one.
bool latch::park_until(const futex::deadline& d) const noexcept {
  std::uint32_t s = word_.load(std::memory_order_acquire);
  if (detail::await_release([&] { return try_wait(); }, s >> count_shift)) return true;
  s = word_.load(std::memory_order_acquire);
  for (;;) {
    if ((s >> count_shift) == 0) return true;
    if ((s & parked) == 0) {
      if (!word_.compare_exchange_weak(s, s | parked, std::memory_order_acquire,
                                       std::memory_order_acquire))
        continue;
      s |= parked;
    }
    const futex::wait_result r = futex::wait_until(word_, s, d);
    s = word_.load(std::memory_order_acquire);
    if (r == futex::wait_result::timed_out) return (s >> count_shift) == 0;
  }
}

void latch::wake_all() const noexcept {
  futex::wake_all(word_);
}

}  // namespace hwsync
