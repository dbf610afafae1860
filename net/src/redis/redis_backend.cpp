// The redis:// lock backend: leases as keys with a PX expiry, fencing tokens
// from a per-lock INCR counter, both in one Lua script; waiters on pub/sub.
// What it does and does not guarantee: docs/distributed-locks.md, "Redis
// backend".
#include <algorithm>
#include <charconv>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "hwsync/net/lock_backend.hpp"
#include "redis/connection.hpp"
#include "redis/redis_backend.hpp"
#include "redis/scripts.hpp"
#include "redis/subscriber.hpp"

namespace hwsync::net::redis {

namespace {

constexpr lua_script acquire_script{scripts::acquire, 0, "acquire"};
constexpr lua_script release_script{scripts::release, 1, "release"};
constexpr lua_script renew_script{scripts::renew, 2, "renew"};

// A waiter that hears no release message retries after this backoff,
// doubling from the first to the last, and never later than the holder's
// lease ends: the message is the fast path, the backoff the bound (a
// holder that crashed publishes nothing; a subscription can be lost).
constexpr auto first_backoff = std::chrono::milliseconds(10);
constexpr auto last_backoff = std::chrono::milliseconds(500);

struct services {
  services(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout)
      : commands(host, port), waiters(host, port), command_timeout(timeout) {}
  connection commands;
  subscriber waiters;
  std::chrono::milliseconds command_timeout;
};

long long integer_element(const reply& r, std::size_t i, std::string_view what) {
  const reply& e = r.elements[i];
  if (e.type == reply::kind::integer) return e.integer;
  if (e.type == reply::kind::bulk_string) {
    long long v = 0;
    const auto [end, ec] = std::from_chars(e.text.data(), e.text.data() + e.text.size(), v);
    if (ec == std::errc{} && end == e.text.data() + e.text.size()) return v;
  }
  throw error(errc::protocol_error, "redis " + std::string(what) + ": expected an integer at [" +
                                        std::to_string(i) + "], got " + e.describe());
}

// The script's {flag, value} reply.
std::pair<long long, long long> pair_reply(const reply& r, std::string_view what) {
  if (r.type != reply::kind::array || r.elements.size() != 2) {
    if (r.is_error()) {
      throw error(errc::protocol_error, "redis " + std::string(what) +
                                            ": expected {flag, value}, the server answered " +
                                            r.describe());
    }
    throw error(errc::protocol_error,
                "redis " + std::string(what) + ": expected {flag, value}, got " + r.describe());
  }
  return {integer_element(r, 0, what), integer_element(r, 1, what)};
}

class redis_lock final : public backend_lock {
 public:
  redis_lock(std::shared_ptr<services> s, std::string_view name, std::string_view owner)
      : services_(std::move(s)),
        key_("hwsync:lock:{" + std::string(name) + "}"),
        token_key_(key_ + ":token"),
        channel_(key_ + ":released"),
        owner_(owner) {}

  std::optional<fencing_token> try_acquire(std::chrono::milliseconds ttl) override {
    return attempt(ttl);
  }

  std::optional<fencing_token> acquire_until(std::chrono::milliseconds ttl,
                                             steady_time deadline) override {
    if (auto token = attempt(ttl)) return token;
    // Busy. Subscribe to the release channel, then try again before the
    // first wait: a release between the first attempt and the subscription
    // would otherwise go unheard until the backoff.
    const auto sub = services_->waiters.subscribe(channel_);
    sub->confirmed(std::min(deadline, now() + services_->command_timeout));
    auto backoff = first_backoff;
    for (;;) {
      const std::uint64_t seen = sub->generation();
      if (auto token = attempt(ttl)) return token;
      const steady_time t = now();
      if (t >= deadline) return std::nullopt;
      auto pause = backoff;
      if (holder_pttl_ms_ > 0) pause = std::min(pause, std::chrono::milliseconds(holder_pttl_ms_));
      sub->wait_for_change(seen, std::min(deadline, t + pause));
      backoff = std::min(backoff * 2, last_backoff);
    }
  }

  void wait_for_release(steady_time deadline) override {
    const auto sub = services_->waiters.subscribe(channel_);
    const std::uint64_t seen = sub->generation();
    sub->wait_for_change(seen, std::min(deadline, now() + last_backoff));
  }

  bool renew(std::chrono::milliseconds ttl, steady_time deadline) override {
    const std::string ttl_ms = std::to_string(ttl.count());
    const reply r = services_->commands.eval(renew_script, {key_}, {owner_, ttl_ms},
                                             command_deadline(deadline));
    return expect_integer(r, "EVALSHA renew") == 1;
  }

  bool release() override {
    const reply r = services_->commands.eval(release_script, {key_}, {owner_, channel_},
                                             command_deadline(no_deadline));
    return expect_integer(r, "EVALSHA release") == 1;
  }

  bool lease_expires() const noexcept override { return true; }

  // The coroutine forms: the same scripts, pipelined with every other
  // command on the connection; no thread waits. A busy lock is waited for
  // as the blocking form does (the release channel, confirmed before the
  // next attempt; a release message, the holder's remaining lease or the
  // backoff, whichever comes first), sleeping on the ring, and the stop
  // token cancels the wait.
  task<std::optional<fencing_token>> async_try_acquire(std::chrono::milliseconds ttl) override {
    // Named, not braced in the call: GCC 12 miscompiles a braced list
    // argument inside co_await ("array used as initializer").
    std::vector<std::string> keys_and_args{key_, token_key_, owner_, std::to_string(ttl.count())};
    const reply r = co_await services_->commands.async_eval(
        acquire_script, std::move(keys_and_args), 2, command_deadline(no_deadline));
    co_return taken_or_busy(r);
  }

  task<std::optional<fencing_token>> async_acquire_until(std::chrono::milliseconds ttl,
                                                         steady_time deadline,
                                                         std::stop_token stop) override {
    if (stop.stop_requested()) throw error(errc::cancelled, cancelled_message());
    if (auto token = co_await async_try_acquire(ttl)) co_return token;
    const auto sub = co_await services_->waiters.async_subscribe(channel_);
    if (!co_await sub->async_confirmed(std::min(deadline, now() + services_->command_timeout),
                                       stop)) {
      throw error(errc::cancelled, cancelled_message());
    }
    auto backoff = first_backoff;
    for (;;) {
      if (stop.stop_requested()) throw error(errc::cancelled, cancelled_message());
      const std::uint64_t seen = sub->generation();
      if (auto token = co_await async_try_acquire(ttl)) co_return token;
      const steady_time t = now();
      if (t >= deadline) co_return std::nullopt;
      auto pause = backoff;
      if (holder_pttl_ms_ > 0) pause = std::min(pause, std::chrono::milliseconds(holder_pttl_ms_));
      if (!co_await sub->async_wait_for_change(seen, std::min(deadline, t + pause), stop)) {
        throw error(errc::cancelled, cancelled_message());
      }
      backoff = std::min(backoff * 2, last_backoff);
    }
  }

  task<bool> async_release() override {
    std::vector<std::string> keys_and_args{key_, owner_, channel_};
    const reply r = co_await services_->commands.async_eval(
        release_script, std::move(keys_and_args), 1, command_deadline(no_deadline));
    co_return expect_integer(r, "EVALSHA release") == 1;
  }

 private:
  static steady_time now() { return std::chrono::steady_clock::now(); }

  // A command gives up at the caller's deadline or after the command
  // timeout, whichever comes first: a server that does not answer is an
  // error (timed_out), not a busy lock.
  steady_time command_deadline(steady_time deadline) const {
    return std::min(deadline, now() + services_->command_timeout);
  }

  // One acquisition attempt. Its command gets the full command timeout even
  // when the caller's deadline is nearer (a try_lock_for may overrun its
  // deadline by one round trip): a slow reply cut short would drop the
  // connection every lock of the service shares, and could leave a lock
  // taken that nobody knows it holds.
  std::optional<fencing_token> attempt(std::chrono::milliseconds ttl) {
    const std::string ttl_ms = std::to_string(ttl.count());
    return taken_or_busy(services_->commands.eval(acquire_script, {key_, token_key_},
                                                  {owner_, ttl_ms}, command_deadline(no_deadline)));
  }

  std::string cancelled_message() const {
    return "redis lock " + key_ + ": expected to wait for the lock, got a stop request first";
  }

  // The acquire script's reply: the token, or nullopt (busy: remembers the
  // holder's remaining lease).
  std::optional<fencing_token> taken_or_busy(const reply& r) {
    const auto [taken, value] = pair_reply(r, "EVALSHA acquire");
    if (taken == 1) {
      if (value <= 0) {
        throw error(errc::protocol_error,
                    "redis EVALSHA acquire: expected a token >= 1 from INCR of " + token_key_ +
                        ", got " + std::to_string(value));
      }
      return fencing_token(static_cast<std::uint64_t>(value));
    }
    holder_pttl_ms_ = value;
    return std::nullopt;
  }

  std::shared_ptr<services> services_;
  std::string key_;
  std::string token_key_;
  std::string channel_;
  std::string owner_;
  long long holder_pttl_ms_ = 0;
};

class redis_backend final : public lock_backend {
 public:
  explicit redis_backend(std::shared_ptr<services> s) : services_(std::move(s)) {}
  std::unique_ptr<backend_lock> open(std::string_view name, std::string_view owner) override {
    return std::make_unique<redis_lock>(services_, name, owner);
  }

 private:
  std::shared_ptr<services> services_;
};

}  // namespace

redis_endpoint parse_redis_uri(const service_uri& uri) {
  auto bad = [&](const std::string& expected, const std::string& got) {
    throw error(errc::bad_uri,
                "redis lock service URI '" + uri.text + "': expected " + expected + ", got " + got);
  };
  redis_endpoint e;
  if (uri.host.empty()) bad("redis://host[:port]", "no host");
  if (!uri.path.empty() && uri.path != "/") {
    bad("no path (database selection is not supported)", "'" + uri.path + "'");
  }
  e.host = uri.host;
  e.port = uri.port.value_or(6379);
  for (const auto& [key, value] : uri.query) {
    if (key != "timeout_ms") bad("only the query parameter timeout_ms", "'" + key + "'");
    long long ms = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
    if (ec != std::errc{} || end != value.data() + value.size() || ms < 1 || ms > 3'600'000) {
      bad("timeout_ms from 1 to 3600000", "'" + value + "'");
    }
    e.command_timeout = std::chrono::milliseconds(ms);
  }
  return e;
}

std::shared_ptr<lock_backend> make_redis_backend(const service_uri& uri) {
  const redis_endpoint e = parse_redis_uri(uri);
  return std::make_shared<redis_backend>(
      std::make_shared<services>(e.host, e.port, e.command_timeout));
}

namespace {
const backend_registration registered{"redis", &make_redis_backend};
}  // namespace

}  // namespace hwsync::net::redis
