// hybrid_logical_clock: construction, the receive rule and its rejection.
#include "hwsync/clocks/hybrid_logical_clock.hpp"

#include <stdexcept>
#include <string>

namespace hwsync {

std::string hlc_timestamp::to_string() const {
  return std::to_string(physical_ms()) + "." + std::to_string(logical());
}

hybrid_logical_clock::hybrid_logical_clock(physical_source& source,
                                           std::chrono::milliseconds max_offset)
    : source_(source), max_offset_(max_offset) {
  if (max_offset.count() <= 0) {
    throw std::invalid_argument(
        "hybrid_logical_clock: expected a positive maximum clock offset, got " +
        std::to_string(max_offset.count()) + " ms");
  }
}

namespace {

[[noreturn]] void reject(hlc_timestamp remote, std::uint64_t pt, std::chrono::milliseconds max) {
  const auto offset = static_cast<std::int64_t>(remote.physical_ms() - pt);
  throw max_offset_exceeded(
      "hybrid_logical_clock::update: expected a remote timestamp at most " +
          std::to_string(max.count()) + " ms ahead of the local wall clock, got " +
          remote.to_string() + ", " + std::to_string(offset) +
          " ms ahead of the local physical time " + std::to_string(pt) + " ms (maximum offset " +
          std::to_string(max.count()) +
          " ms): a clock is drifting or was stepped; the timestamp was not taken",
      remote.raw(), static_cast<std::int64_t>(pt), offset, max.count());
}

}  // namespace

hlc_timestamp hybrid_logical_clock::update(hlc_timestamp remote) {
  const std::uint64_t pt = physical_ms();
  const auto max = static_cast<std::uint64_t>(max_offset_.count());
  if (remote.physical_ms() > pt && remote.physical_ms() - pt > max) reject(remote, pt, max_offset_);
  std::uint64_t cur = state_.load(std::memory_order_relaxed);
  std::uint64_t next;
  do {
    // Kulkarni's receive rule in one line: the larger of the two
    // timestamps plus one (the logical counter's carry borrows into the
    // physical field), unless the wall clock is ahead of both.
    const std::uint64_t high = cur > remote.raw() ? cur : remote.raw();
    next =
        (high >> hlc_timestamp::logical_bits) >= pt ? high + 1 : pt << hlc_timestamp::logical_bits;
  } while (!state_.compare_exchange_weak(cur, next, std::memory_order_acq_rel,
                                         std::memory_order_relaxed));
  return hlc_timestamp::from_raw(next);
}

}  // namespace hwsync
