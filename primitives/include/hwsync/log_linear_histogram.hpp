// hwsync/log_linear_histogram.hpp — a fixed-size log-linear histogram of
// 64-bit values (cycle_clock ticks), for the contention profiler.
//
// Contract
//   Buckets       Values 0..7 exactly; above, each power of two [2^e, 2^(e+1))
//                 is split into 8 equal buckets, so a bucket's width is at
//                 most 1/8 of its lower bound: a percentile read from it is
//                 within 12.5% of the true value, and never below it
//                 (percentile() returns the bucket's upper bound, capped at
//                 the exact maximum).
//   Size          496 counters (3968 bytes) plus count, total and max.
//   Thread safety None: the owner serializes (the profiler records under a
//                 stripe lock and copies for snapshots).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace hwsync::detail {

class log_linear_histogram {
 public:
  static constexpr unsigned sub_bits = 3;
  static constexpr std::uint64_t sub_buckets = 1u << sub_bits;
  static constexpr std::size_t bucket_count = (64 - sub_bits + 1) * sub_buckets;

  static constexpr std::size_t bucket_of(std::uint64_t v) noexcept {
    if (v < sub_buckets) return static_cast<std::size_t>(v);
    const unsigned e = 63u - static_cast<unsigned>(std::countl_zero(v));  // >= sub_bits
    const std::uint64_t sub = (v >> (e - sub_bits)) & (sub_buckets - 1);
    return static_cast<std::size_t>((e - sub_bits + 1) * sub_buckets + sub);
  }
  // The largest value that lands in bucket b.
  static constexpr std::uint64_t upper_bound(std::size_t b) noexcept {
    if (b < sub_buckets) return b;
    const unsigned e = static_cast<unsigned>(b / sub_buckets) + sub_bits - 1;
    const std::uint64_t sub = b % sub_buckets;
    const std::uint64_t width = std::uint64_t{1} << (e - sub_bits);
    return (std::uint64_t{1} << e) + (sub + 1) * width - 1;
  }

  void record(std::uint64_t v) noexcept {
    ++buckets_[bucket_of(v)];
    ++count_;
    total_ += v;
    max_ = std::max(max_, v);
  }
  void merge(const log_linear_histogram& o) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) buckets_[i] += o.buckets_[i];
    count_ += o.count_;
    total_ += o.total_;
    max_ = std::max(max_, o.max_);
  }

  // The smallest bucket bound below which a fraction q (0..1] of the values
  // lie; 0 when empty.
  std::uint64_t percentile(double q) const noexcept {
    if (count_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_));
    if (static_cast<double>(rank) < q * static_cast<double>(count_)) ++rank;
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < bucket_count; ++b) {
      seen += buckets_[b];
      if (seen >= rank) return std::min(upper_bound(b), max_);
    }
    return max_;
  }

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t total() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }

 private:
  std::array<std::uint64_t, bucket_count> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

static_assert(log_linear_histogram::bucket_of(7) == 7);
static_assert(log_linear_histogram::bucket_of(8) == 8);
static_assert(log_linear_histogram::upper_bound(8) == 8);
static_assert(log_linear_histogram::bucket_of(~std::uint64_t{0}) ==
              log_linear_histogram::bucket_count - 1);
static_assert(log_linear_histogram::upper_bound(log_linear_histogram::bucket_count - 1) ==
              ~std::uint64_t{0});

}  // namespace hwsync::detail
