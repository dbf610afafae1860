// net/src/redis/redis_backend.hpp — the redis:// backend's entry points
// (it registers itself for the scheme; these are for the fenced store and
// tests).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "hwsync/net/lock_backend.hpp"

namespace hwsync::net::redis {

struct redis_endpoint {
  std::string host;
  std::uint16_t port = 6379;
  // How long one command may wait for its reply (?timeout_ms=N).
  std::chrono::milliseconds command_timeout = std::chrono::seconds(5);
};

// redis://host[:port][?timeout_ms=N]; throws net::error(bad_uri) saying what
// was expected and what arrived.
redis_endpoint parse_redis_uri(const service_uri& uri);

std::shared_ptr<lock_backend> make_redis_backend(const service_uri& uri);

}  // namespace hwsync::net::redis
