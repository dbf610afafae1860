#include <charconv>
#include <chrono>

#include "hwsync/net/error.hpp"
#include "hwsync/net/lock_backend.hpp"
#include "hwsync/net/redis_fenced_write.hpp"
#include "redis/connection.hpp"
#include "redis/redis_backend.hpp"
#include "redis/scripts.hpp"

namespace hwsync::net {

namespace {
constexpr redis::lua_script fenced_write_script{redis::scripts::fenced_write, 3, "fenced_write"};

fencing_token token_from(const redis::reply& r, std::string_view key) {
  std::uint64_t v = 0;
  const bool is_text = r.type == redis::reply::kind::bulk_string;
  if (r.type == redis::reply::kind::integer && r.integer > 0) {
    v = static_cast<std::uint64_t>(r.integer);
  } else if (is_text) {
    const auto [end, ec] = std::from_chars(r.text.data(), r.text.data() + r.text.size(), v);
    if (ec != std::errc{} || end != r.text.data() + r.text.size()) v = 0;
  }
  if (v == 0) {
    throw error(errc::protocol_error, "redis fenced write of '" + std::string(key) +
                                          "': expected a token (1 to 2^64-1), got " + r.describe());
  }
  return fencing_token(v);
}
}  // namespace

struct redis_fenced_store::impl {
  explicit impl(const redis::redis_endpoint& e)
      : conn(e.host, e.port), timeout(e.command_timeout) {}
  redis::connection conn;
  std::chrono::milliseconds timeout;
  steady_time deadline() const { return std::chrono::steady_clock::now() + timeout; }
};

redis_fenced_store::redis_fenced_store(std::string_view uri) {
  const service_uri parsed = service_uri::parse(uri);
  if (parsed.scheme != "redis") {
    throw error(errc::bad_uri, "redis_fenced_store URI '" + std::string(uri) +
                                   "': expected the scheme redis://, got " + parsed.scheme + "://");
  }
  impl_ = std::make_unique<impl>(redis::parse_redis_uri(parsed));
}

redis_fenced_store::~redis_fenced_store() = default;

fenced_write_result redis_fenced_store::write(std::string_view key, fencing_token token,
                                              std::string_view value) {
  if (!token) return {false, fencing_token{}};
  const std::string fence_key = std::string(key) + ":hwsync:fence";
  const std::string token_text = token.to_string();
  const redis::reply r = impl_->conn.eval(fenced_write_script, {key, fence_key},
                                          {token_text, value}, impl_->deadline());
  if (r.type != redis::reply::kind::array || r.elements.size() != 2 ||
      r.elements[0].type != redis::reply::kind::integer) {
    throw error(errc::protocol_error, "redis fenced write of '" + std::string(key) +
                                          "': expected {accepted, fence}, got " + r.describe());
  }
  return {r.elements[0].integer == 1, token_from(r.elements[1], key)};
}

std::optional<std::string> redis_fenced_store::read(std::string_view key) {
  redis::reply r = impl_->conn.call({"GET", key}, impl_->deadline());
  if (r.type == redis::reply::kind::nil) return std::nullopt;
  if (r.type != redis::reply::kind::bulk_string) {
    throw error(errc::protocol_error, "redis GET '" + std::string(key) +
                                          "': expected a bulk string or nil, got " + r.describe());
  }
  return std::move(r.text);
}

}  // namespace hwsync::net
