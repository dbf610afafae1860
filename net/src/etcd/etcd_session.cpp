// etcd::session's keeper: refresh the lease every ttl/3, reopen the stream
// (on the next endpoint) when it fails, and declare the session lost when
// etcd says the lease is gone or no refresh landed within the TTL.
#include "hwsync/net/etcd_session.hpp"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <utility>

namespace hwsync::net::etcd {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// How long the keeper waits before retrying a failed refresh: short, so a
// failover to another member uses little of the TTL.
constexpr milliseconds retry_pause{100};

// Sleeps until `until` or a stop request; false on the stop request.
bool sleep_until(steady_time until, std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  // wait_until answers the predicate, not why it woke: ask the token.
  cv.wait_until(lock, stop, until, [] { return false; });
  return !stop.stop_requested();
}

}  // namespace

session::session(client& c, std::chrono::seconds ttl, steady_time deadline) : client_(c) {
  const lease_grant granted = client_.grant_lease(ttl, deadline);
  lease_ = granted.id;
  ttl_ = granted.ttl;
  keeper_ = std::jthread([this](std::stop_token stop) { keep_alive(std::move(stop)); });
}

session::~session() {
  keeper_.request_stop();
  if (keeper_.joinable()) keeper_.join();
  if (!lost()) close();
}

std::string session::lost_reason() const {
  std::lock_guard g(reason_mutex_);
  return reason_;
}

void session::throw_if_lost(const std::string& what) const {
  if (!lost()) return;
  throw net::error(errc::lease_lost, what + ": expected the session's lease " +
                                         std::to_string(lease_) + " alive, got the session lost (" +
                                         lost_reason() + ")");
}

void session::close() {
  if (lost()) return;
  mark_lost("closed");
  // Bounded by the TTL: by then the lease has expired by itself anyway.
  try {
    client_.revoke_lease(lease_, steady_clock::now() + ttl_);
  } catch (const net::error&) {
  }
}

void session::mark_lost(std::string reason) {
  {
    std::lock_guard g(reason_mutex_);
    if (!reason_.empty()) return;
    reason_ = std::move(reason);
  }
  lost_.store(true, std::memory_order_release);
  lost_source_.request_stop();
}

void session::keep_alive(std::stop_token stop) {
  const milliseconds every = std::max<milliseconds>(ttl_ / 3, milliseconds(100));
  // The lease is certainly alive until valid_until: the send time of the
  // last refresh that succeeded plus the TTL it answered.
  steady_time valid_until = steady_clock::now() + ttl_;
  steady_time next = steady_clock::now() + every;
  std::unique_ptr<lease_keepalive> stream;
  std::string last_failure;
  while (!lost()) {
    if (!sleep_until(next, stop)) return;
    if (lost()) return;
    const steady_time sent = steady_clock::now();
    if (sent >= valid_until) {
      mark_lost("no keepalive of lease " + std::to_string(lease_) + " succeeded within its " +
                std::to_string(ttl_.count()) + " s TTL; last failure: " + last_failure);
      return;
    }
    const steady_time call_deadline = std::min(valid_until, sent + every);
    try {
      if (!stream) stream = std::make_unique<lease_keepalive>(client_, call_deadline);
      const std::chrono::seconds refreshed = stream->keep_alive(lease_, call_deadline);
      valid_until = sent + refreshed;
      next = sent + every;
    } catch (const net::error& e) {
      stream.reset();  // a broken stream: the next round opens one, maybe elsewhere
      if (e.code() == errc::lease_lost) {
        mark_lost(std::string("etcd answered that lease ") + std::to_string(lease_) +
                  " is gone: " + e.what());
        return;
      }
      last_failure = e.what();
      next = std::min(valid_until, steady_clock::now() + retry_pause);
    }
  }
}

}  // namespace hwsync::net::etcd
