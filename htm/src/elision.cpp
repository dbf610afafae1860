// The elision policy of elided<Lock> (hwsync/htm/elision_policy.hpp), compiled
// once for every lock type through detail::lock_ops.
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "hwsync/htm/elision_policy.hpp"
#include "internal.hpp"

namespace hwsync::htm {

void elision_tuning::validate() const {
  const auto fail = [](const std::string& what) {
    throw std::invalid_argument("hwsync::htm::elision_tuning: " + what);
  };
  if (first_skip == 0) fail("first_skip must be at least 1, got 0");
  if (max_skip < first_skip)
    fail("max_skip must be at least first_skip (" + std::to_string(first_skip) + "), got " +
         std::to_string(max_skip));
  if (rate_window == 0) fail("rate_window must be at least 1, got 0");
  if (max_abort_percent > 100)
    fail("max_abort_percent must be at most 100, got " + std::to_string(max_abort_percent));
}

namespace detail {

void fatal(const char* message) noexcept {
  std::fprintf(stderr, "hwsync::htm: %s\n", message);
  std::fflush(stderr);
  std::abort();
}

namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Waits, briefly, for the lock to look free. Polls with pause and an
// exponential backoff (1, 2, 4, ... 32 pauses: about 130 pauses, a few µs),
// then yields the CPU a few times (on an oversubscribed machine the holder
// may need this core). false: still held; the caller takes the lock and
// parks on it instead of spinning on.
bool wait_until_free(const void* lock, const lock_ops& ops) noexcept {
  unsigned pauses = 1;
  for (int i = 0; i < 8; ++i) {
    if (!ops.is_locked(lock)) return true;
    for (unsigned j = 0; j < pauses; ++j) cpu_relax();
    pauses = std::min(pauses * 2, 32u);
  }
  for (int i = 0; i < 4; ++i) {
    if (!ops.is_locked(lock)) return true;
    sched_yield();
  }
  return !ops.is_locked(lock);
}

void start_window(elision_site& s) noexcept {
  s.window_commits.store(s.counters[commits].load(std::memory_order_relaxed),
                         std::memory_order_relaxed);
  s.window_aborts.store(s.counters[aborts].load(std::memory_order_relaxed),
                        std::memory_order_relaxed);
}

void switch_off(elision_site& s) noexcept {
  const std::uint32_t now = s.skip_interval.load(std::memory_order_relaxed);
  const std::uint32_t next = now == 0 ? s.tuning.first_skip
                                      : static_cast<std::uint32_t>(std::min<std::uint64_t>(
                                            std::uint64_t{now} * 2, s.tuning.max_skip));
  s.skip_interval.store(next, std::memory_order_relaxed);
  s.skip_remaining.store(next, std::memory_order_relaxed);
  count(s, switched_off);
  start_window(s);
}

// True (and one skip spent) while this lock's elision is switched off.
bool skip_this_one(elision_site& s) noexcept {
  const std::uint32_t left = s.skip_remaining.load(std::memory_order_relaxed);
  if (left == 0) return false;
  s.skip_remaining.store(left - 1, std::memory_order_relaxed);
  return true;
}

// A commit while the interval is not 0 halves it: a recovered lock returns
// to full elision after a few commits.
void after_commit(elision_site& s) noexcept {
  count(s, commits);
  const std::uint32_t now = s.skip_interval.load(std::memory_order_relaxed);
  if (now != 0) [[unlikely]] {
    const std::uint32_t half = now / 2;
    s.skip_interval.store(half < s.tuning.first_skip ? 0 : half, std::memory_order_relaxed);
  }
}

// Counts the abort, judges the abort rate over the window, and switches
// elision off on a capacity abort or a rate above the bound. True when it
// switched elision off.
bool record_abort(elision_site& s, status st) noexcept {
  const abort_cause cause = classify(st);
  count(s, aborts);
  count(s, first_cause + static_cast<std::size_t>(cause));
  if (cause == abort_cause::capacity) {
    switch_off(s);
    return true;
  }
  const std::uint64_t a = s.counters[aborts].load(std::memory_order_relaxed) -
                          s.window_aborts.load(std::memory_order_relaxed);
  const std::uint64_t c = s.counters[commits].load(std::memory_order_relaxed) -
                          s.window_commits.load(std::memory_order_relaxed);
  if (a + c < s.tuning.rate_window) return false;
  if (a * 100 > std::uint64_t{s.tuning.max_abort_percent} * (a + c)) {
    switch_off(s);
    return true;
  }
  start_window(s);
  return false;
}

enum class next_step { retry, take_lock };

next_step after_abort(elision_site& s, status st, std::uint32_t attempt, const void* lock,
                      const lock_ops& ops) noexcept {
  if (record_abort(s, st)) return next_step::take_lock;
  if (attempt >= s.tuning.retries) return next_step::take_lock;
  if (classify(st) == abort_cause::lock_busy)
    return wait_until_free(lock, ops) ? next_step::retry : next_step::take_lock;
  if (st.retry()) {
    // A conflict with a thread that now holds the lock for real would abort
    // the retry at once: wait for it first.
    if (ops.is_locked(lock) && !wait_until_free(lock, ops)) return next_step::take_lock;
    return next_step::retry;
  }
  return next_step::take_lock;
}

// Begins a transaction and subscribes to the lock word at once. Started:
// the caller runs the critical section transactionally.
status begin_subscribed(backend b, holder& h, void* lock, const lock_ops& ops) {
  if (b == backend::rtm) {
    const status st(rtm::begin());
    // Inside the transaction now: the lock word joins its read set, so a
    // thread taking the lock for real aborts it from here to the commit. So
    // does the backend: unlock() decides inline from it, and a transaction
    // still running after a switch to off would be released as a real hold.
    if (st.is_started() &&
        (ops.is_locked(lock) || current_backend.load(std::memory_order_relaxed) != backend::rtm))
      rtm::abort_with(lock_busy_code);
    return st;
  }
  const status st = emulation::draw();
  if (!st.is_started()) return st;
  // The emulated subscription: the transaction holds the lock, so a held
  // lock is the lock-busy abort the hardware subscription would have taken.
  if (!ops.try_lock(lock)) return status::explicit_abort(lock_busy_code, status::emulated_bit);
  h = holder::emulated_transaction;
  emulation::enter_elided();
  return st;
}

void take_for_real(elision_site& s, holder& h, void* lock, const lock_ops& ops, std::size_t why) {
  ops.lock(lock);
  h = holder::fallback;
  count(s, why);
}

}  // namespace

void elided_lock(elision_site& s, holder& h, void* lock, const lock_ops& ops, backend b) {
  if (b == backend::unresolved) b = resolve_backend();
  if (b == backend::off) {
    ops.lock(lock);
    return;
  }
  if (b == backend::rtm && rtm::test()) {
    // Inside another elided section's transaction: nest (flat), subscribe,
    // and count nothing — a counter written here would join the outer
    // transaction's write set. An abort resumes at the outermost begin.
    rtm::begin();
    if (ops.is_locked(lock)) rtm::abort_with(lock_busy_code);
    return;
  }
  if (skip_this_one(s)) return take_for_real(s, h, lock, ops, skipped);
  for (std::uint32_t attempt = 0;; ++attempt) {
    const status st = begin_subscribed(b, h, lock, ops);
    if (st.is_started()) return;
    if (after_abort(s, st, attempt, lock, ops) == next_step::take_lock) break;
  }
  take_for_real(s, h, lock, ops, fallbacks);
}

bool elided_try_lock(elision_site& s, holder& h, void* lock, const lock_ops& ops, backend b) {
  if (b == backend::unresolved) b = resolve_backend();
  if (b == backend::off) return ops.try_lock(lock);
  if (b == backend::rtm && rtm::test()) {
    rtm::begin();
    if (!ops.is_locked(lock)) return true;
    rtm::end();  // the inner level only: the outer transaction goes on
    return false;
  }
  const bool skipping = skip_this_one(s);
  if (!skipping) {
    const status st = begin_subscribed(b, h, lock, ops);
    if (st.is_started()) return true;
    record_abort(s, st);  // one attempt: try_lock does not wait or retry
  }
  if (!ops.try_lock(lock)) return false;
  h = holder::fallback;
  count(s, skipping ? skipped : fallbacks);
  return true;
}

void elided_unlock(elision_site& s, holder& h, void* lock, const lock_ops& ops, backend b) {
  switch (h) {
    case holder::fallback:
      h = holder::none;
      ops.unlock(lock);
      return;
    case holder::emulated_transaction:
      h = holder::none;
      emulation::leave_elided();
      after_commit(s);
      ops.unlock(lock);
      return;
    case holder::none:
      break;
  }
  if (b == backend::rtm && rtm::test()) {
    rtm::end();
    if (!rtm::test()) after_commit(s);  // the outermost commit; nested ones count nothing
    return;
  }
  // Taken by lock() with the backend off, released after the backend changed
  // (elided<Lock>::unlock() decides inline only while it is off).
  if (ops.is_locked(lock)) {
    ops.unlock(lock);
    return;
  }
  const std::string msg = "elided<Lock>::unlock() of a lock this thread does not hold (backend " +
                          std::string(to_string(b)) + ")";
  fatal(msg.c_str());
}

}  // namespace detail
}  // namespace hwsync::htm
