// hwsync/clocks/lamport_clock.hpp — hwsync::lamport_clock, Lamport's logical
// clock (1978): if event a happens before event b, ts(a) < ts(b).
//
// Contract
//   tick()        a local event: the counter goes up by one; returns the new
//                 timestamp.
//   send()        a send event: as tick(); put the result in the message.
//   receive(ts)   a receive event: the counter becomes max(local, ts) + 1;
//                 returns the new timestamp, which is greater than both.
//   now()         the latest timestamp, without an event.
//   Order         lamport_timestamp orders totally by (counter, node): two
//                 different events of nodes with different ids never
//                 compare equal. The converse of the clock condition does
//                 not hold: ts(a) < ts(b) says nothing about causality (use
//                 vector_clock for that).
//   Thread safety Every member may be called from any thread. One 64-bit
//                 atomic counter; tick() is one fetch_add, receive() a CAS
//                 loop that only retries when another thread moved the
//                 counter. Lock-free, never blocks. Orderings: acq_rel on
//                 every update, so an event that happens before another on
//                 any thread gets the smaller timestamp (also true of the
//                 modification order of one atomic alone).
//   Range         Counters stay below 2^64. receive() rejects a remote
//                 counter above max_counter (2^62) with clock_overflow
//                 instead of wrapping; ticking the rest of the way from
//                 2^62 to 2^64 at one tick per nanosecond would take
//                 centuries.
//   Progress      tick() is wait-free (one locked add); receive() is
//                 lock-free (a losing CAS retries with the newer counter).
//   Size          16 bytes (the counter and the node id).
//
// The state word
//   counter (64 bits)   the last timestamp's counter; 0 before any event.
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>

#include "hwsync/clocks/clock_error.hpp"
#include "hwsync/clocks/node_id.hpp"

namespace hwsync {

struct lamport_timestamp {
  std::uint64_t counter = 0;
  node_id node = 0;

  friend constexpr auto operator<=>(const lamport_timestamp&,
                                    const lamport_timestamp&) noexcept = default;
};

class lamport_clock {
 public:
  static constexpr std::uint64_t max_counter = std::uint64_t{1} << 62;

  explicit lamport_clock(node_id node, std::uint64_t start = 0) noexcept
      : counter_(start), node_(node) {}
  lamport_clock(const lamport_clock&) = delete;
  lamport_clock& operator=(const lamport_clock&) = delete;

  lamport_timestamp tick() noexcept {
    return {counter_.fetch_add(1, std::memory_order_acq_rel) + 1, node_};
  }
  lamport_timestamp send() noexcept { return tick(); }

  lamport_timestamp receive(lamport_timestamp remote) {
    if (remote.counter > max_counter) [[unlikely]]
      reject(remote);
    std::uint64_t cur = counter_.load(std::memory_order_relaxed);
    std::uint64_t next;
    do {
      next = (cur > remote.counter ? cur : remote.counter) + 1;
    } while (!counter_.compare_exchange_weak(cur, next, std::memory_order_acq_rel,
                                             std::memory_order_relaxed));
    return {next, node_};
  }

  lamport_timestamp now() const noexcept {
    return {counter_.load(std::memory_order_acquire), node_};
  }
  node_id node() const noexcept { return node_; }

 private:
  [[noreturn]] void reject(lamport_timestamp remote) const;

  std::atomic<std::uint64_t> counter_;
  node_id node_;
};

}  // namespace hwsync
