// hwsync/net/redis_fenced_write.hpp — net::redis_fenced_store: a Redis key
// whose writes are fenced by fencing tokens, checked by Redis itself, so a
// user can protect a key without trusting the lock (a holder whose lease
// has gone cannot overwrite a successor's value).
//
// Contract
//   write(key, token, value) runs one Lua script (EVALSHA, loaded on
//   NOSCRIPT) that compares `token` with the fence stored beside the key —
//   the highest token that has written it, in "<key>:hwsync:fence" — and
//   stores the value and raises the fence only if token >= fence. Equal
//   tokens are accepted (one holder writes many times under one token);
//   lower ones are refused (Kleppmann's stale write) and change nothing.
//   The null token 0 is refused without asking the server, as by
//   fenced_resource<T>. Tokens are compared exactly over the full 64 bits.
//   read(key) is a plain GET. Atomicity: the compare and both SETs are one
//   script, so no other command runs in between.
//   Scope         The fence is only as durable as the Redis data (a server
//                 that restarts without persistence forgets it, as it
//                 forgets the lock's token counter). The two keys share a
//                 Redis Cluster slot only if the key has a hash tag
//                 ({...}); this client speaks to one server, not a cluster.
//   Errors        An unreachable server, a timeout (timeout_ms per call, as
//                 in redis://host:port?timeout_ms=N), garbage: net::error.
//   Threads       Any thread but a ring loop thread; calls from several
//                 threads are pipelined on one connection.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "hwsync/net/fencing_token.hpp"

namespace hwsync::net {

struct fenced_write_result {
  bool accepted = false;
  // The key's fence after the call: `token` when accepted, the higher token
  // that refused it otherwise.
  fencing_token fence;
};

class redis_fenced_store {
 public:
  // uri: redis://host[:port][?timeout_ms=N] (the lock service's URI).
  // Throws net::error(bad_uri). Connects on first use.
  explicit redis_fenced_store(std::string_view uri);
  ~redis_fenced_store();
  redis_fenced_store(const redis_fenced_store&) = delete;
  redis_fenced_store& operator=(const redis_fenced_store&) = delete;

  fenced_write_result write(std::string_view key, fencing_token token, std::string_view value);
  std::optional<std::string> read(std::string_view key);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hwsync::net
