// The readers' wait of hwsync::seqlock: what a reader does when it finds a
// write in progress. The sequence word's table is in hwsync/seqlock.hpp.
#include "hwsync/seqlock.hpp"

#include "hwsync/spin.hpp"

namespace hwsync::detail {
namespace {

// Rounds of the first, slot-free spin: 1, 2, 4, 8, 16 pauses with a look at
// the word after each, 31 pauses in all (about 0.75 µs on this Zen 3 host,
// at about 60 TSC ticks a pause). A write is a few stores, so nearly every
// wait ends here, and no reader touches the process-wide spinner slots (an
// atomic every spinning thread writes) or, on 2 cores, gets told to park at
// once because another reader holds the one slot.
constexpr int quick_rounds = 5;

}  // namespace

std::uint32_t seqlock_sequence::wait_stable(std::uint32_t seen) const noexcept {
  for (;;) {
    bool changed = false;
    for (int round = 0, pauses = 1; round < quick_rounds && !changed; ++round, pauses *= 2) {
      for (int i = 0; i < pauses; ++i) cpu_relax();
      changed = word_.load(std::memory_order_relaxed) != seen;
    }
    // Still writing: the writer is slow (a page fault, an interrupt) or
    // preempted. The runtime's policy spins a while longer if a core is
    // spare, else yields once.
    if (!changed) {
      spinner spin;
      while (!changed && spin.spin()) changed = word_.load(std::memory_order_relaxed) != seen;
    }
    // Park. PARKED is set only while WRITING is, by a CAS from the exact word
    // seen, so a write that has ended in the meantime fails the CAS, and the
    // writer's end, an exchange, cannot miss the flag: either the CAS comes
    // first and write_end wakes, or it comes after and fails. The futex
    // compares the word that carries the flag, so a write_end between the CAS
    // and the sleep returns at once.
    if (!changed) {
      const std::uint32_t want = seen | parked;
      if (seen == want || word_.compare_exchange_strong(seen, want, std::memory_order_relaxed,
                                                        std::memory_order_relaxed))
        futex::wait(word_, want);
    }
    // Woken, changed, or the CAS failed: look again, with acquire, so a
    // stable word returned here orders the copy like read_begin's load.
    seen = word_.load(std::memory_order_acquire);
    if ((seen & writing) == 0) return seen;
  }
}

}  // namespace hwsync::detail
