// The contended paths of hwsync::detail::mutex_word. The state table and the
// invariants these functions keep are in hwsync/mutex.hpp.
#include "hwsync/mutex.hpp"

#include <chrono>

#include "hwsync/cycle_clock.hpp"
#include "hwsync/spin.hpp"

namespace hwsync::detail {
namespace {

constexpr std::uint32_t waiters(std::uint32_t s) noexcept {
  return s / mutex_word::one_waiter;
}

// How long one wait may last before the waiter asks for hand-off: 0.5 ms
// plus a per-wait random 0..1 ms, so that threads that began waiting
// together do not all turn to hand-off at once (WebKit's and parking_lot's
// randomized fairness timeout).
cycle_clock::ticks fairness_bound() noexcept {
  static const cycle_clock::ticks half_ms =
      cycle_clock::estimated_from_duration(std::chrono::microseconds(500));
  thread_local std::uint64_t rng = cycle_clock::now() | 1;
  rng ^= rng << 13;  // xorshift64
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return half_ms + (rng % (2 * half_ms));
}

// How long an unlocker lets parked waiters go without a hand-off before it
// makes one (a fair unlock): three waiter bounds, 1.5 to 4.5 ms. Each fair
// unlock reserves the lock for a sleeper, and on this VM a futex wake-up
// takes about 30 µs, during which the running threads park too. Measured
// with bench/mutex_bench (long_cs: 8 threads, 10 µs critical sections;
// fairness: 8 threads, 1 µs): at one bound the waiters' CPU per acquisition
// was 1.16-1.20x std::mutex, at three 1.08-1.09x, while the slowest/fastest
// thread ratio went from 0.91-0.96 to 0.87-0.88 (std::mutex: 0.82-0.91).
cycle_clock::ticks fair_unlock_interval() noexcept {
  return 3 * fairness_bound();
}

// When a waiter of each mutex was last handed the lock by a fair unlock,
// hashed by the mutex's address into a small process-wide table: the mutex
// itself has no room for a timestamp. Two mutexes that share a slot share a
// timer, which only makes their fair unlocks come a little early or late.
struct alignas(64) fair_slot {
  std::atomic<cycle_clock::ticks> last_fair_unlock{0};
};
fair_slot g_fair_slots[64];

fair_slot& fair_slot_of(const void* m) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(m) >> 2;
  return g_fair_slots[(a * 0x9E3779B97F4A7C15ull) >> 58];  // Fibonacci hashing to 6 bits
}

}  // namespace

// A thread arrives here after its fast-path CAS failed. It spins while that
// can help, then registers as a waiter and parks; after each wake-up it spins
// and tries again. `registered`: counted in WAITERS. `spinner_woken`: this
// thread set WOKEN while spinning and must clear it when it stops spinning.
// `registered`: the caller is already counted in WAITERS (a thread that a
// condition variable requeued onto this word).
bool mutex_word::lock_contended(const futex::deadline& d, bool registered) noexcept {
  // The fast path's CAS fails whenever any bit is set, including a free lock
  // with registered waiters: barge for it before paying for the clock read
  // and the spinner below.
  for (std::uint32_t s = word_.load(std::memory_order_relaxed);
       !registered && (s & (locked | handoff)) == 0;) {
    if (word_.compare_exchange_weak(s, s | locked, std::memory_order_acquire,
                                    std::memory_order_relaxed))
      return true;
  }
  const cycle_clock::ticks arrived = cycle_clock::now();
  const cycle_clock::ticks bound = fairness_bound();
  bool spinner_woken = false;

  // Whether this thread may take the lock in state s.
  auto can_take = [&](std::uint32_t s) {
    return (s & locked) == 0 && ((s & handoff) == 0 || registered);
  };
  // The state after this thread takes the lock from state s.
  auto taken = [&](std::uint32_t s) {
    std::uint32_t n = s | locked;
    if (registered) n -= one_waiter;
    if (registered || spinner_woken) n &= ~woken;
    // HANDOFF is a one-shot reservation: the waiter that claims it consumes
    // it. Keeping it on for a chain of claimants would leave the lock idle
    // for one futex wake-up (tens of µs) per link; a waiter still starving
    // asks again when it re-parks, and the unlocker's timer asks anyway.
    return n & ~handoff;
  };
  // One attempt to take the lock from state s (which it updates on failure).
  auto take = [&](std::uint32_t& s) {
    return word_.compare_exchange_weak(s, taken(s), std::memory_order_acquire,
                                       std::memory_order_relaxed);
  };
  // Timed out: take the lock if that is possible now, else deregister.
  auto give_up = [&]() {
    std::uint32_t s = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (can_take(s)) {
        if (take(s)) return true;
        continue;
      }
      if (!registered && !spinner_woken) return false;
      std::uint32_t n = s & ~woken;
      if (registered) n -= one_waiter;
      if (waiters(n) == 0) n &= ~handoff;
      if (word_.compare_exchange_weak(s, n, std::memory_order_relaxed)) return false;
    }
  };

  for (;;) {
    // Spin: take the lock the moment it is free, or give up when the spin
    // policy says parking is cheaper. The spinner (and its slot) ends with
    // this block, before the thread parks.
    {
      spinner spin;
      std::uint32_t s = word_.load(std::memory_order_relaxed);
      for (;;) {
        if (can_take(s)) {
          if (take(s)) return true;
          continue;
        }
        if (s & handoff) break;  // the lock goes to a parked waiter: spinning cannot win it
        if (!spinner_woken && (s & woken) == 0 && waiters(s) != 0) {
          // Tell unlock() a waiter is awake, so it skips a futex wake.
          if (!word_.compare_exchange_weak(s, s | woken, std::memory_order_relaxed)) continue;
          spinner_woken = true;
          s |= woken;
        }
        if (!spin.spin()) break;
        s = word_.load(std::memory_order_relaxed);
      }
    }

    if (!d.is_never() && d.passed()) return give_up();

    // Park: register (once), clear WOKEN (this thread stops looking), and ask
    // for hand-off if this wait has outlasted its bound.
    std::uint32_t s = word_.load(std::memory_order_relaxed);
    std::uint32_t parked_state = 0;
    for (;;) {
      if (can_take(s)) break;
      parked_state = s & ~woken;
      if (!registered) parked_state += one_waiter;
      if (registered && cycle_clock::now() - arrived >= bound) parked_state |= handoff;
      if (word_.compare_exchange_weak(s, parked_state, std::memory_order_relaxed)) break;
    }
    if (can_take(s)) continue;
    registered = true;
    spinner_woken = false;
    if (futex::wait_until(word_, parked_state, d) == futex::wait_result::timed_out)
      return give_up();
  }
}

// unlock() released the lock and saw other bits set; `state` is the word as
// read just after. It may already be later than the release — another
// thread took the lock, or registered — and acting on a later state is
// safe: a new holder wakes a waiter at its own unlock().
void mutex_word::unlock_contended(std::uint32_t state) noexcept {
  if (state & locked) return;
  if (state & handoff) {
    // The free lock is reserved for waiters: wake one to take it.
    futex::wake_one(word_);
    return;
  }
  // Fair unlock: a parked waiter cannot ask for hand-off while it sleeps,
  // and while spinners keep WOKEN set nobody wakes it. So the unlocker checks
  // the clock too: once fair_unlock_interval() has passed since this mutex's
  // last fair unlock, it reserves the free lock for the parked waiters.
  fair_slot& slot = fair_slot_of(this);
  const cycle_clock::ticks now = cycle_clock::now();
  const bool fair_due =
      now - slot.last_fair_unlock.load(std::memory_order_relaxed) >= fair_unlock_interval();
  for (;;) {
    if (waiters(state) == 0 || (state & locked) != 0) return;
    if (fair_due) {
      if (!word_.compare_exchange_weak(state, state | handoff, std::memory_order_relaxed)) continue;
      slot.last_fair_unlock.store(now, std::memory_order_relaxed);
      futex::wake_one(word_);
      return;
    }
    if (state & woken) return;
    if (word_.compare_exchange_weak(state, state | woken, std::memory_order_relaxed)) {
      futex::wake_one(word_);
      return;
    }
  }
}

}  // namespace hwsync::detail
