// The slow paths of hwsync::biased_shared_mutex and the process's
// visible-readers table. The protocol is described at the top of
// hwsync/biased_shared_mutex.hpp.
#include "hwsync/biased_shared_mutex.hpp"

#include <time.h>

#include <algorithm>

#include "hwsync/spin.hpp"

namespace hwsync {

namespace detail {

// The one table of the process. Not an inline variable in the header: a
// shared object built with -fvisibility=hidden would get a copy of its own
// (folly#1558). Here it is a definition in libhwsync_primitives, with
// default visibility even when the library is built with hidden visibility.
__attribute__((visibility("default"))) visible_readers_table& process_visible_readers() noexcept {
  static visible_readers_table table;
  return table;
}

}  // namespace detail

namespace {

// Time left until d, in ns (never: a large number; passed: 0 or less).
std::int64_t nanoseconds_left(const futex::deadline& d) noexcept {
  if (d.is_never()) return INT64_MAX;
  timespec now{};
  clock_gettime(d.is_realtime() ? CLOCK_REALTIME : CLOCK_MONOTONIC, &now);
  return d.nanoseconds_since_epoch() - (now.tv_sec * 1'000'000'000ll + now.tv_nsec);
}

// The revoking writer's park: short at first (a published reader holds the
// lock for one critical section), doubling up to a cap that bounds how long
// a wake-up the reader could not send (see Blocking in the header) delays it.
constexpr std::int64_t first_park_ns = 20'000;
constexpr std::int64_t max_park_ns = 1'000'000;

}  // namespace

bool biased_shared_mutex::lock_shared_slow(const futex::deadline* d) noexcept {
  const bool locked = d == nullptr ? word_.try_lock_shared() : word_.lock_shared_until(*d);
  if (!locked) return false;
  // Holding the lock shared keeps writers, and so revocations, out: the bias
  // word is 0 (+LEFT) or BIAS here, and inhibit_until_ is stable.
  if ((bias_.load(std::memory_order_relaxed) & bias) == 0 && cycle_clock::now() >= inhibit_until_)
    bias_.fetch_or(bias, std::memory_order_release);
  return true;
}

bool biased_shared_mutex::revoke(const futex::deadline* d) noexcept {
  const cycle_clock::ticks start = cycle_clock::now();
  // BIAS -> REVOKING. Only the lock's holder changes these two bits; readers
  // only add LEFT while REVOKING is set. A full barrier before the scan:
  // pairs with the reader's CAS on its slot and re-check of the bias.
  bias_.fetch_add(revoking - bias, std::memory_order_seq_cst);
  bool all_left = true;
  for (detail::visible_reader_slot& slot : *table_) {
    if (slot.lock.load(std::memory_order_seq_cst) != this) continue;
    if constexpr (debug::checks_enabled) {
      if (slot.thread.load(std::memory_order_relaxed) == detail::reader_identity())
        debug::misuse(type_name, this,
                      "lock() by a thread that holds it shared: it would wait for itself");
    }
    if (d != nullptr) {
      spinner spin;
      while (slot.lock.load(std::memory_order_acquire) == this && spin.spin()) {
      }
    }
    std::int64_t park_ns = first_park_ns;
    for (;;) {
      const std::uint32_t seen = bias_.load(std::memory_order_acquire);
      if (slot.lock.load(std::memory_order_acquire) != this) break;
      const std::int64_t left = d == nullptr ? 0 : nanoseconds_left(*d);
      if (left <= 0) {
        all_left = false;
        break;
      }
      futex::wait_for(bias_, seen, std::chrono::nanoseconds(std::min(park_ns, left)));
      park_ns = std::min(park_ns * 2, max_park_ns);
    }
    if (!all_left) break;
  }
  if (all_left) {
    bias_.fetch_and(~revoking, std::memory_order_release);
    const cycle_clock::ticks end = cycle_clock::now();
    inhibit_until_ = end + inhibit_multiplier * (end - start);
  } else {
    // Gave up with readers still published: the bias goes back on, because
    // "bias off" is what tells the next writer that no slot names the lock
    // (without it, that writer would skip the revocation and overlap them).
    bias_.fetch_add(bias - revoking, std::memory_order_release);
  }
  return all_left;
}

void biased_shared_mutex::reader_left_during_revocation() noexcept {
  bias_.fetch_add(one_left, std::memory_order_release);
  futex::wake(bias_, 1);
}

void biased_shared_mutex::check_no_published_reader() const noexcept {
  for (const detail::visible_reader_slot& slot : *table_)
    if (slot.lock.load(std::memory_order_acquire) == this)
      debug::misuse(type_name, this, "destroyed while locked shared (by a published reader)");
}

bool biased_shared_mutex::try_exclusive(const futex::deadline* d) {
  check_.before_acquire(type_name, this, "try_lock()");
  tsan::pre_lock(this, tsan::flag::try_lock);
  bool ok = d == nullptr ? word_.try_lock() : word_.lock_until(*d);
  if (ok && (bias_.load(std::memory_order_relaxed) & bias) != 0 && !revoke(d)) {
    word_.unlock();
    ok = false;
  }
  tsan::post_lock(
      this, ok ? tsan::flag::try_lock : tsan::flag::try_lock | tsan::flag::try_lock_failed, 0);
  if (ok) check_.writer_is_me();
  return ok;
}

bool biased_shared_mutex::try_shared(const futex::deadline* d) {
  check_.before_acquire(type_name, this, "try_lock_shared()");
  tsan::pre_lock(this, tsan::flag::read_lock | tsan::flag::try_lock);
  const bool ok = try_publish() || lock_shared_slow(d);
  tsan::post_lock(this,
                  tsan::flag::read_lock | (ok ? tsan::flag::try_lock
                                              : tsan::flag::try_lock | tsan::flag::try_lock_failed),
                  0);
  if (ok) check_.reader_is_me(this);
  return ok;
}

}  // namespace hwsync
