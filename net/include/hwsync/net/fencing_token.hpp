// hwsync/net/fencing_token.hpp — net::fencing_token, the number a lock
// service hands out with every acquisition so storage can refuse a holder
// whose lease has gone (Kleppmann, "How to do distributed locking"; Chubby's
// sequencers).
//
// Contract
//   64-bit, ordered. Per lock name, every acquisition a service grants
//   carries a token strictly greater than every token granted before for
//   that name (for as long as the service keeps its data: see each backend
//   in docs/distributed-locks.md). 0 is never granted: a default token
//   means "none". A plain value: 8 bytes, trivially copyable.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace hwsync::net {

// A fencing token: 64-bit, strictly increasing per lock name across every
// acquisition the service has granted; compare them to order holders.
// 0 is never granted (it means "none").
class fencing_token {
 public:
  constexpr fencing_token() noexcept = default;
  constexpr explicit fencing_token(std::uint64_t value) noexcept : value_(value) {}
  constexpr std::uint64_t value() const noexcept { return value_; }
  constexpr explicit operator bool() const noexcept { return value_ != 0; }
  friend constexpr auto operator<=>(fencing_token, fencing_token) noexcept = default;
  std::string to_string() const { return std::to_string(value_); }

 private:
  std::uint64_t value_ = 0;
};

}  // namespace hwsync::net
