// hwsync/net/fenced_resource.hpp — net::fenced_resource<T>, the storage-side
// check that makes a fencing token worth having: a value that accepts a
// write only with a token at least as high as every token it has seen.
//
// Contract
//   write(token, fn) applies fn(T&) and remembers `token` when token >= the
//   highest token seen so far; it applies nothing and returns false when
//   token is lower (a holder whose lease has gone and whose successor has
//   already written: Kleppmann's stale write) or is the null token 0. Equal
//   tokens are accepted: one holder writes many times under one token.
//   Tokens from different lock names must not be mixed on one resource.
//   Ordering      Every call holds an hwsync::mutex: writes and reads are
//                 linearizable, and a write's effects are visible to every
//                 later read or write.
//   Blocking      As hwsync::mutex (spin briefly, then futex), for as long
//                 as the fn of the call ahead runs.
//   Size          sizeof(T) + a mutex + two 64-bit counters (token, rejected).
//   Scope         One process (threads). Across processes or machines the
//                 storage itself must do this comparison (a database row's
//                 token column, the Redis fenced write of the redis backend).
#pragma once

#include <cstdint>
#include <mutex>
#include <type_traits>
#include <utility>

#include "hwsync/mutex.hpp"
#include "hwsync/net/fencing_token.hpp"

namespace hwsync::net {

template <class T>
class fenced_resource {
 public:
  fenced_resource() = default;
  explicit fenced_resource(T initial) : value_(std::move(initial)) {}
  fenced_resource(const fenced_resource&) = delete;
  fenced_resource& operator=(const fenced_resource&) = delete;

  // fn(T&) under the fence; true if applied, false if `token` was stale.
  template <class F>
  bool write(fencing_token token, F&& fn) {
    std::lock_guard guard(mutex_);
    if (!token || token < highest_) {
      ++rejected_;
      return false;
    }
    highest_ = token;
    std::forward<F>(fn)(value_);
    return true;
  }

  // fn(const T&)'s result, read under the same mutex.
  template <class F>
  auto read(F&& fn) const -> std::invoke_result_t<F, const T&> {
    std::lock_guard guard(mutex_);
    return std::forward<F>(fn)(static_cast<const T&>(value_));
  }

  fencing_token highest_token() const {
    std::lock_guard guard(mutex_);
    return highest_;
  }
  std::uint64_t rejected_writes() const {
    std::lock_guard guard(mutex_);
    return rejected_;
  }

 private:
  mutable hwsync::mutex mutex_;
  T value_{};
  fencing_token highest_;
  std::uint64_t rejected_ = 0;
};

}  // namespace hwsync::net
