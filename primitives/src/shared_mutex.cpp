// The contended paths of hwsync::detail::rw_word and the debug checks of
// hwsync::shared_mutex. The state table and the invariants I1-I5 these
// functions keep are at the top of hwsync/shared_mutex.hpp.
#include "hwsync/shared_mutex.hpp"

#include <sched.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "hwsync/spin.hpp"

namespace hwsync::detail {
namespace {

using pf_word = rw_word<rw_kind::phase_fair>;  // the layout is the same for every policy

constexpr std::uint32_t low_half(std::uint64_t s) noexcept {
  return static_cast<std::uint32_t>(s);
}
constexpr std::uint32_t high_half(std::uint64_t s) noexcept {
  return static_cast<std::uint32_t>(s >> 32);
}

// Admission: the parked readers become holders in one step (READERS +=
// RWAIT, RWAIT = 0) and PHASE flips, which is how each of them, woken or
// not, learns that it holds the lock. Counting them in before they run is
// what makes the phase-fair bound hold: a writer that arrives next waits for
// them too, so they cannot be overtaken.
constexpr std::uint64_t admit(std::uint64_t s) noexcept {
  const std::uint64_t waiting = (s & pf_word::rwait_mask) >> pf_word::rwait_shift;
  return (((s & ~pf_word::rwait_mask) + waiting * pf_word::one_reader) ^ pf_word::phase) |
         pf_word::admitted;
}

[[noreturn]] void too_many_waiters(const char* who) noexcept {
  std::fprintf(stderr,
               "hwsync::shared_mutex: more than %llu %s waiting on one lock; expected at most "
               "that many (the width of the lock word's count)\n",
               static_cast<unsigned long long>(pf_word::wait_field), who);
  std::abort();
}

bool expired(const futex::deadline& d) noexcept {
  return !d.is_never() && d.passed();
}

// The earlier of a caller's deadline and the end of a writer's grace window.
futex::deadline earlier(const futex::deadline& d,
                        std::chrono::steady_clock::time_point t) noexcept {
  const futex::deadline grace = futex::deadline::at(t);
  if (d.is_never()) return grace;
  if (!d.is_realtime())
    return d.nanoseconds_since_epoch() < grace.nanoseconds_since_epoch() ? d : grace;
  // CLOCK_REALTIME: compare the time left on each clock.
  const auto left_d = std::chrono::nanoseconds(d.nanoseconds_since_epoch()) -
                      std::chrono::system_clock::now().time_since_epoch();
  return left_d < t - std::chrono::steady_clock::now() ? d : grace;
}

}  // namespace

// I1: readers parked while the state kept them out are admitted once it no
// longer does, unless readers admitted earlier in this read phase may not
// have looked yet (a second flip could hide the first from them, I5): then
// the last reader out admits them. I2: if the transition leaves a lock a
// waiting writer could take and no writer is awake, it sets WOKEN and wakes
// one. Applying this to every state a slow path installs is what makes the
// invariants hold everywhere; the fast paths run only when it would change
// nothing (no waiters, or only readers added, or a reader leaving that
// leaves others inside).
template <rw_kind K>
typename rw_word<K>::transition rw_word<K>::settle(state_t next) noexcept {
  transition t{next};
  if ((t.next & readers_mask) == 0) t.next &= ~admitted;
  if ((t.next & rwait_mask) != 0 && (t.next & (entry_block | admitted)) == 0) {
    t.next = admit(t.next);
    t.wake_readers = true;
  }
  if ((t.next & wwait_mask) != 0 && (t.next & woken) == 0 && writer_can_take(t.next)) {
    t.next |= woken;
    t.wake_writer = true;
  }
  return t;
}

template <rw_kind K>
void rw_word<K>::wake(const transition& t) const noexcept {
  if (t.wake_readers) futex::wake_all(low());
  // The high half is shared by writers and by threads waiting for the
  // upgrade right: while one of those is parked (UPARKED), a wake-one might
  // land on it instead of a writer, so everyone is woken (I2, I3).
  if (t.wake_upgraders || (t.wake_writer && (t.next & uparked) != 0)) {
    futex::wake_all(high());
  } else if (t.wake_writer) {
    futex::wake_one(high());
  }
}

// ---------------------------------------------------------------------------
// Readers

template <rw_kind K>
bool rw_word<K>::lock_shared_contended(const futex::deadline& d) noexcept {
  // A write phase is often shorter than a park and wake-up: spin first,
  // unregistered, and enter the moment the state lets readers in. (Parking
  // at once when held back by a waiting writer, to leave the spinner slot to
  // the writer, was tried: the writer's median wait under a read load went
  // from 27 to 15-27 µs with 4 readers, but mixed throughput with 1-10%
  // writes fell from 12-30M to 0.2-2M operations/s at 2 threads.)
  {
    spinner spin;
    state_t s = state_.load(std::memory_order_relaxed);
    for (;;) {
      if ((s & read_block) == 0) {
        if (state_.compare_exchange_weak(s, s + one_reader, std::memory_order_acquire,
                                         std::memory_order_relaxed))
          return true;
        continue;
      }
      if (!spin.spin()) break;
      s = state_.load(std::memory_order_relaxed);
    }
  }
  // Then yield, still unregistered: with more threads than cores, the
  // thread this reader waits for — a preempted reader inside, or the writer
  // — often needs this CPU, and a thread that yields stays runnable, so
  // nobody has to wake it (~30 µs here) when the block ends. Parking every
  // blocked reader instead made each write phase end in a wake-all of
  // readers that the next writer then had to wait for, one scheduling round
  // each: with 32 threads at 90% reads, 0.3-10M operations/s and 10-260
  // context switches per 1000 operations, against 34-56M and under 0.2
  // with the yield window (quick runs, docs/shared_mutex.md). A reader
  // still blocked after the window parks. The window (yield_window(), 50 µs)
  // matches a writer's default grace window, which is what a reader blocked
  // by a writer that waits for preempted readers may have to wait before that
  // writer holds everyone back; a deadline that passes meanwhile is noticed
  // at the window's end.
  const bool entered = yield_until(
      [&] {
        state_t s = state_.load(std::memory_order_relaxed);
        while ((s & read_block) == 0)
          if (state_.compare_exchange_weak(s, s + one_reader, std::memory_order_acquire,
                                           std::memory_order_relaxed))
            return true;
        return false;
      },
      expired(d) ? 0 : yield_window());
  if (entered) return true;
  // Register in RWAIT and park until admitted. From here on this thread never
  // takes the lock itself: by I1 it cannot be let in without being admitted.
  state_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if ((s & read_block) == 0) {
      if (state_.compare_exchange_weak(s, s + one_reader, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
      continue;
    }
    if (expired(d)) return false;
    if ((s & rwait_mask) == rwait_mask) too_many_waiters("readers");
    if (state_.compare_exchange_weak(s, s + one_rwait, std::memory_order_relaxed,
                                     std::memory_order_relaxed))
      return await_admission(s + one_rwait, d, false);
  }
}

// `registered` is the state this thread installed when it joined RWAIT.
// `holds_upgrader`: the thread took the upgrade right with it and gives it
// back if it times out.
template <rw_kind K>
bool rw_word<K>::await_admission(state_t registered, const futex::deadline& d,
                                 bool holds_upgrader) noexcept {
  const state_t my_phase = registered & phase;
  state_t s = registered;
  for (;;) {
    // Admission flips PHASE in the low half, so a wait on any low-half value
    // from before it returns at once (I4); by I5 a flipped PHASE means this
    // thread was admitted. The acquire load pairs with the admitting
    // writer's release.
    const futex::wait_result r = futex::wait_until(low(), low_half(s), d);
    s = state_.load(std::memory_order_acquire);
    if ((s & phase) != my_phase) return true;
    if (r == futex::wait_result::timed_out) break;
  }
  // Timed out: deregister, unless the admission came first.
  for (;;) {
    if ((s & phase) != my_phase) return true;
    state_t n = s - one_rwait;
    if (holds_upgrader) n &= ~(upgrader | uparked);
    transition t = settle(n);
    t.wake_upgraders = holds_upgrader && (s & uparked) != 0;
    if (state_.compare_exchange_weak(s, t.next, std::memory_order_relaxed,
                                     std::memory_order_acquire)) {
      wake(t);
      return false;
    }
  }
}

// unlock_shared() left `after` with at most one reader inside, and saw
// writers or readers waiting, or an upgrader. `after` may already be stale;
// acting on the current state is safe, because whoever changed it since
// took over the duty.
template <rw_kind K>
void rw_word<K>::unlock_shared_contended(state_t after) noexcept {
  // The upgrader waits on the low half for the other readers to leave; the
  // 2 -> 1 change itself guarantees it cannot sleep through this (I4).
  if ((after & upgrading) != 0 && (after & readers_mask) == one_reader) futex::wake_all(low());
  // The last reader out admits the parked readers (I1) or wakes a writer (I2).
  state_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    const transition t = settle(s);
    if (t.next == s) return;
    if (state_.compare_exchange_weak(s, t.next, std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
      wake(t);
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// Writers

template <rw_kind K>
bool rw_word<K>::lock_contended(const futex::deadline& d, std::chrono::nanoseconds grace) noexcept {
  using steady = std::chrono::steady_clock;
  // Under phase_fair and writer_preferred a writer holds back new readers
  // while it spins (SPINNING: the readers inside are running, or it would
  // not be spinning, and drain within the spin) and, once its grace window
  // has passed, for good (PENDING, until no writer waits). In between —
  // parked within the window — it lets readers in: the readers it waits
  // for may be preempted, and holding everyone else back for them would
  // park every running reader and wake them all again after the write.
  constexpr bool holds_back = K != rw_kind::reader_preferred;
  bool past_grace = holds_back && grace.count() <= 0;
  const steady::time_point grace_end =
      past_grace || !holds_back ? steady::time_point{} : steady::now() + grace;
  state_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (writer_can_take(s)) {
      if (state_.compare_exchange_weak(s, (s | writer) & ~admitted, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
      continue;
    }
    if ((s & wwait_mask) == wwait_mask) too_many_waiters("writers");
    const state_t n = (s + one_wwait) | (past_grace ? pending : 0);
    if (state_.compare_exchange_weak(s, n, std::memory_order_relaxed, std::memory_order_relaxed)) {
      s = n;
      break;
    }
  }
  // The state after this (registered) writer leaves the waiters, and after
  // it takes the lock from x. PENDING lasts while writers wait. SPINNING is
  // cleared by any spinning writer that stops: another one still spinning
  // sets it again at its next look.
  auto deregistered = [](state_t x) {
    x = (x - one_wwait) & ~(woken | spinning);
    return (x & wwait_mask) == 0 ? x & ~pending : x;
  };
  auto taken = [&](state_t x) { return deregistered(x | writer) & ~admitted; };
  // Timed out: take the lock if that is possible now, else deregister.
  auto give_up = [&]() {
    for (;;) {
      if (writer_can_take(s)) {
        if (state_.compare_exchange_weak(s, taken(s), std::memory_order_acquire,
                                         std::memory_order_relaxed))
          return true;
        continue;
      }
      // The last writer leaving may let parked readers in (I1).
      const transition t = settle(deregistered(s));
      if (state_.compare_exchange_weak(s, t.next, std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
        wake(t);
        return false;
      }
    }
  };
  auto grace_over = [&]() {
    if (!past_grace) past_grace = steady::now() >= grace_end;
  };

  for (;;) {
    {
      spinner spin;
      bool spun = false;
      for (;;) {
        if (writer_can_take(s)) {
          if (state_.compare_exchange_weak(s, taken(s), std::memory_order_acquire,
                                           std::memory_order_relaxed))
            return true;
          continue;
        }
        // WOKEN: tell releasers a writer is awake, so they skip a futex
        // wake. SPINNING only once this thread has a spinner slot (spun):
        // a writer about to park must not hold readers back meanwhile.
        const state_t want =
            woken | (holds_back && spun ? spinning : 0) | (past_grace ? pending : 0);
        if ((s & want) != want) {
          if (!state_.compare_exchange_weak(s, s | want, std::memory_order_relaxed,
                                            std::memory_order_relaxed))
            continue;
          s |= want;
        }
        if (!spin.spin()) break;
        spun = true;
        s = state_.load(std::memory_order_relaxed);
      }
    }
    if (expired(d)) return give_up();
    if (holds_back) grace_over();

    // Park: clear WOKEN (this thread stops looking) and SPINNING on a state
    // in which it cannot take the lock; any change that lets it take the
    // lock sets WOKEN again, so the high-half value it parks on is stale by
    // then (I4). Clearing SPINNING may let parked readers in (I1).
    while (!writer_can_take(s)) {
      const transition t = settle((s & ~(woken | spinning)) | (past_grace ? pending : 0));
      if (state_.compare_exchange_weak(s, t.next, std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
        wake(t);
        s = t.next;
        break;
      }
    }
    if (writer_can_take(s)) continue;
    // Within the grace window, sleep no later than its end: then this
    // writer holds readers back.
    const futex::wait_result r =
        futex::wait_until(high(), high_half(s), past_grace ? d : earlier(d, grace_end));
    s = state_.load(std::memory_order_relaxed);
    if (r == futex::wait_result::timed_out && expired(d)) return give_up();
    if (holds_back) grace_over();
  }
}

// The state after a writer's phase ends in s (by unlock() or a downgrade):
// who goes next under the policy.
template <rw_kind K>
typename rw_word<K>::transition rw_word<K>::end_write_phase(state_t n) noexcept {
  bool admitted_now = false;
  if constexpr (K == rw_kind::phase_fair) {
    // The read phase between two writers: every reader that arrived during
    // this write phase goes in now, even though writers wait.
    if ((n & rwait_mask) != 0) {
      n = admit(n);
      admitted_now = true;
    }
  }
  // PENDING, if a waiting writer's grace window has passed, stays: the
  // next phase is the writers' (under writer_preferred the parked readers
  // stay parked too: settle() admits none while PENDING or SPINNING is set).
  transition t = settle(n);
  t.wake_readers = t.wake_readers || admitted_now;
  return t;
}

// unlock() found more than WRITER in the word: somebody waits.
template <rw_kind K>
void rw_word<K>::unlock_contended(state_t s) noexcept {
  for (;;) {
    const transition t = end_write_phase(s & ~writer);
    if (state_.compare_exchange_weak(s, t.next, std::memory_order_release,
                                     std::memory_order_relaxed)) {
      wake(t);
      return;
    }
  }
}

template <rw_kind K>
void rw_word<K>::unlock_and_lock_shared() noexcept {
  state_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    // The writer's phase ends as with unlock(), with the writer itself among
    // the readers of the next phase.
    const transition t = end_write_phase((s & ~writer) + one_reader);
    if (state_.compare_exchange_weak(s, t.next, std::memory_order_release,
                                     std::memory_order_relaxed)) {
      wake(t);
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// The upgrade right

template <rw_kind K>
bool rw_word<K>::lock_upgrade_contended(const futex::deadline& d) noexcept {
  state_t s = state_.load(std::memory_order_relaxed);
  enum class step { right_held, acquired, admission };
  // One attempt on s: the right and the shared lock both taken, or the right
  // taken and a place in RWAIT (s is then the state installed), or the right
  // held by another thread.
  auto attempt = [&]() {
    for (;;) {
      if ((s & upgrader) != 0) return step::right_held;
      if ((s & read_block) == 0) {
        if (state_.compare_exchange_weak(s, s + one_reader + upgrader, std::memory_order_acquire,
                                         std::memory_order_relaxed))
          return step::acquired;
        continue;
      }
      // The right is free but readers are held back: take the right now
      // (threads that want it after this one park on the high half) and
      // wait to be admitted like any reader.
      if ((s & rwait_mask) == rwait_mask) too_many_waiters("readers");
      const state_t n = (s | upgrader) + one_rwait;
      if (state_.compare_exchange_weak(s, n, std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
        s = n;
        return step::admission;
      }
    }
  };
  auto finish = [&](step st) { return st == step::acquired || await_admission(s, d, true); };

  for (;;) {
    step st = step::right_held;
    {
      spinner spin;
      for (;;) {
        st = attempt();
        if (st != step::right_held || !spin.spin()) break;
        s = state_.load(std::memory_order_relaxed);
      }
    }
    if (st != step::right_held) return finish(st);
    if (expired(d)) return false;
    // Park on the high half until the right is released; UPARKED tells the
    // releaser to wake this half (I3).
    while ((s & upgrader) != 0 && (s & uparked) == 0) {
      if (state_.compare_exchange_weak(s, s | uparked, std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
        s |= uparked;
        break;
      }
    }
    if ((s & upgrader) == 0) continue;
    const futex::wait_result r = futex::wait_until(high(), high_half(s), d);
    s = state_.load(std::memory_order_relaxed);
    if (r == futex::wait_result::timed_out) {
      st = attempt();
      return st != step::right_held && finish(st);
    }
  }
}

template <rw_kind K>
void rw_word<K>::unlock_upgrade() noexcept {
  state_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    transition t = settle((s - one_reader) & ~(upgrader | uparked));
    t.wake_upgraders = (s & uparked) != 0;
    if (state_.compare_exchange_weak(s, t.next, std::memory_order_release,
                                     std::memory_order_relaxed)) {
      wake(t);
      return;
    }
  }
}

template <rw_kind K>
void rw_word<K>::unlock_upgrade_and_lock_shared() noexcept {
  state_t s = state_.load(std::memory_order_relaxed);
  while (!state_.compare_exchange_weak(s, s & ~(upgrader | uparked), std::memory_order_release,
                                       std::memory_order_relaxed)) {
  }
  if ((s & uparked) != 0) futex::wake_all(high());
}

template <rw_kind K>
void rw_word<K>::unlock_upgrade_and_lock() noexcept {
  state_t s = state_.load(std::memory_order_relaxed);
  // The upgrade: once this thread is the only reader, become the writer and
  // give up the right (I3). Acquire: the readers that left released.
  auto try_finish = [&]() {
    while ((s & readers_mask) == one_reader) {
      const state_t n = ((s - one_reader) | writer) & ~(upgrading | upgrader | uparked);
      if (state_.compare_exchange_weak(s, n, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        if ((s & uparked) != 0) futex::wake_all(high());
        return true;
      }
    }
    return false;
  };
  for (;;) {
    {
      spinner spin;
      for (;;) {
        if (try_finish()) return;
        if ((s & upgrading) == 0) {
          // Like an arriving writer, hold back new readers (except under
          // reader_preferred) and wait only for those inside.
          if (!state_.compare_exchange_weak(s, s | upgrading, std::memory_order_relaxed,
                                            std::memory_order_relaxed))
            continue;
          s |= upgrading;
        }
        if (!spin.spin()) break;
        s = state_.load(std::memory_order_relaxed);
      }
    }
    // s has UPGRADING and more than one reader: the reader whose leaving
    // makes it one changes the low half and wakes it (I4).
    futex::wait(low(), low_half(s));
    s = state_.load(std::memory_order_relaxed);
  }
}

template class rw_word<rw_kind::phase_fair>;
template class rw_word<rw_kind::writer_preferred>;
template class rw_word<rw_kind::reader_preferred>;

// ---------------------------------------------------------------------------
// Debug checks

namespace shared_holds {
namespace {

// Sixteen shared locks held at once by one thread is already unusual; more
// are counted, not named.
struct list {
  const void* held[16];
  unsigned count;
  unsigned untracked;
};
thread_local list t_holds{};

}  // namespace

bool contains(const void* m) noexcept {
  for (unsigned i = 0; i < t_holds.count; ++i)
    if (t_holds.held[i] == m) return true;
  return false;
}

void add(const void* m) noexcept {
  if (t_holds.count < std::size(t_holds.held)) {
    t_holds.held[t_holds.count++] = m;
  } else {
    ++t_holds.untracked;
  }
}

bool remove(const void* m) noexcept {
  for (unsigned i = 0; i < t_holds.count; ++i) {
    if (t_holds.held[i] == m) {
      t_holds.held[i] = t_holds.held[--t_holds.count];
      return true;
    }
  }
  if (t_holds.untracked > 0) {
    --t_holds.untracked;
    return true;
  }
  return false;
}

}  // namespace shared_holds

namespace {

[[noreturn]] void misuse_op(const char* type, const void* m, const char* op,
                            const char* what) noexcept {
  char msg[256];
  std::snprintf(msg, sizeof msg, "%s %s", op, what);
  debug::misuse(type, m, msg);
}

}  // namespace

void rw_owner_check::check_acquire(const char* type, const void* m, const char* op) const noexcept {
  const pid_t me = debug::this_thread_id();
  if (writer_.load(std::memory_order_relaxed) == me)
    misuse_op(type, m, op,
              "by the thread that holds it exclusively (would deadlock; "
              "unlock_and_lock_shared() downgrades)");
  if (upgrader_.load(std::memory_order_relaxed) == me)
    misuse_op(type, m, op,
              "by the thread that holds it upgradeable (would deadlock; "
              "unlock_upgrade_and_lock() upgrades)");
  if (shared_holds::contains(m))
    misuse_op(type, m, op,
              "by a thread that already holds it shared (deadlocks once a writer waits; "
              "lock_upgrade() and unlock_upgrade_and_lock() upgrade)");
}

void rw_owner_check::check_unlock(const char* type, const void* m) noexcept {
  const pid_t me = debug::this_thread_id();
  const pid_t holder = writer_.load(std::memory_order_relaxed);
  if (holder != me) {
    if (holder != 0)
      debug::misuse(type, m, "unlock() by a thread that does not hold it; held exclusively by",
                    holder);
    if (shared_holds::contains(m))
      debug::misuse(type, m,
                    "unlock() by a thread that holds it shared, not exclusively "
                    "(unlock_shared() releases a shared lock)");
    debug::misuse(type, m, "unlock() of a shared_mutex that is not locked exclusively");
  }
  writer_.store(0, std::memory_order_relaxed);
}

void rw_owner_check::check_unlock_shared(const char* type, const void* m) const noexcept {
  if (shared_holds::remove(m)) return;
  const pid_t me = debug::this_thread_id();
  if (writer_.load(std::memory_order_relaxed) == me)
    debug::misuse(type, m,
                  "unlock_shared() by the thread that holds it exclusively (unlock() releases "
                  "it)");
  if (upgrader_.load(std::memory_order_relaxed) == me)
    debug::misuse(type, m,
                  "unlock_shared() by the thread that holds it upgradeable (unlock_upgrade() "
                  "releases it)");
  debug::misuse(type, m, "unlock_shared() by a thread that does not hold it shared");
}

void rw_owner_check::check_upgrade_op(const char* type, const void* m, const char* op) noexcept {
  const pid_t holder = upgrader_.load(std::memory_order_relaxed);
  if (holder != debug::this_thread_id()) {
    char msg[256];
    std::snprintf(msg, sizeof msg,
                  "%s by a thread that does not hold it upgradeable (lock_upgrade()); %s", op,
                  holder != 0 ? "the upgrade right is held by" : "nobody holds the upgrade right");
    if (holder != 0) debug::misuse(type, m, msg, holder);
    debug::misuse(type, m, msg);
  }
  upgrader_.store(0, std::memory_order_relaxed);
}

void rw_owner_check::check_downgrade(const char* type, const void* m) noexcept {
  if (writer_.load(std::memory_order_relaxed) != debug::this_thread_id())
    debug::misuse(type, m,
                  "unlock_and_lock_shared() by a thread that does not hold it exclusively");
  writer_.store(0, std::memory_order_relaxed);
}

void rw_owner_check::check_destroy(const char* type, const void* m,
                                   std::uint64_t state) const noexcept {
  if (state & pf_word::writer)
    debug::misuse(type, m, "destroyed while locked exclusively; held by",
                  writer_.load(std::memory_order_relaxed));
  const std::uint64_t readers = (state & pf_word::readers_mask) / pf_word::one_reader;
  if (readers != 0 || (state & (pf_word::upgrader | pf_word::rwait_mask | pf_word::wwait_mask))) {
    char msg[160];
    std::snprintf(msg, sizeof msg,
                  "destroyed while locked shared or waited for (%llu readers inside, upgrade "
                  "right %s, state 0x%016llx)",
                  static_cast<unsigned long long>(readers),
                  (state & pf_word::upgrader) ? "held" : "free",
                  static_cast<unsigned long long>(state));
    debug::misuse(type, m, msg);
  }
}

}  // namespace hwsync::detail
