// hwsync/clocks/clock_error.hpp — the errors the event-ordering clocks report.
//
// Contract
//   Every failure a caller can act on is one of these, derived from
//   std::runtime_error, with a message that says what was expected and what
//   arrived:
//     clock_decode_error    vector_clock::decode was given bytes that are not
//                           a canonical encoding (truncated, oversized,
//                           trailing bytes, an unknown version, ids out of
//                           order, a zero counter). offset() is the byte at
//                           which decoding stopped.
//     max_offset_exceeded   hybrid_logical_clock::update was given a remote
//                           timestamp further ahead of the local wall clock
//                           than the configured maximum offset: a clock in the
//                           system is drifting or was stepped. The remote
//                           timestamp, the local physical time, the offset
//                           and the maximum are members and are in the
//                           message.
//     clock_overflow        a logical counter would leave its range
//                           (lamport_clock::receive of a counter above
//                           lamport_clock::max_counter, vector_clock::
//                           increment of a counter at 2^64-1).
//   Nothing here is thrown for misuse that the type system prevents, and no
//   input, however malformed, reaches undefined behaviour.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace hwsync {

// The base of every clock error, for callers that handle them alike.
class clock_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class clock_decode_error : public clock_error {
 public:
  clock_decode_error(const std::string& what, std::size_t offset)
      : clock_error(what), offset_(offset) {}
  // The byte offset into the input at which decoding stopped.
  std::size_t offset() const noexcept { return offset_; }

 private:
  std::size_t offset_;
};

class max_offset_exceeded : public clock_error {
 public:
  max_offset_exceeded(const std::string& what, std::uint64_t remote_raw,
                      std::int64_t local_physical_ms, std::int64_t offset_ms,
                      std::int64_t max_offset_ms)
      : clock_error(what),
        remote_raw_(remote_raw),
        local_physical_ms_(local_physical_ms),
        offset_ms_(offset_ms),
        max_offset_ms_(max_offset_ms) {}
  // The rejected remote timestamp, as hlc_timestamp::raw().
  std::uint64_t remote_raw() const noexcept { return remote_raw_; }
  // The local wall clock when the timestamp arrived, in ms since the epoch.
  std::int64_t local_physical_ms() const noexcept { return local_physical_ms_; }
  // How far the remote physical time was ahead of the local one (ms).
  std::int64_t offset_ms() const noexcept { return offset_ms_; }
  std::int64_t max_offset_ms() const noexcept { return max_offset_ms_; }

 private:
  std::uint64_t remote_raw_;
  std::int64_t local_physical_ms_;
  std::int64_t offset_ms_;
  std::int64_t max_offset_ms_;
};

class clock_overflow : public clock_error {
 public:
  using clock_error::clock_error;
};

}  // namespace hwsync
