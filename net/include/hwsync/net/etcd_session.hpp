// hwsync/net/etcd_session.hpp — etcd::session: one lease kept alive for as
// long as the session lives, and the signal that it was lost. Elections
// (hwsync/net/etcd_election.hpp) put their keys under a session's lease, so
// losing the session ends all of them at once — etcd's concurrency.Session.
//
// Contract
//   Lease        The constructor grants a lease of `ttl` (etcd may raise a
//                TTL below its minimum; ttl() is the granted one) and starts a
//                keeper thread that refreshes it every ttl/3 on a
//                LeaseKeepAlive stream.
//   Failover     When the stream or its connection fails, the keeper opens a
//                new stream through the client, which connects to the next
//                endpoint: the lease survives a failover as long as a refresh
//                lands within the TTL of the last one that succeeded. Retries
//                come every 100 ms until then.
//   Loss         lost() becomes true, once and for good, when etcd says the
//                lease is gone (expired or revoked), or when no refresh
//                succeeded within the TTL counted from the send of the last
//                one that did (the lease may have expired unseen: assume it
//                did), or after close(). The session's stop_token
//                (lost_token()) is stop-requested at that moment, on the keeper
//                thread (or the thread calling close()), so std::stop_callback
//                registrations fire then — also for dependents that are still
//                waiting (etcd-io/etcd#11456).
//   Ordering     lost() is an acquire load of a flag set (release) after the
//                reason was stored: a thread that sees lost() sees the reason.
//   Threads      Every member may be called from any plain thread; never from
//                the ring's loop thread (calls block).
//   Destruction  Stops the keeper (waits at most one refresh round trip, bounded
//                by ttl/3) and revokes the lease unless lost, so the keys under
//                it vanish at once rather than at expiry.
//
// State (one flag; the keeper is its only writer besides close()):
//   live ──(lease_lost answer | no refresh within TTL | close())──▶ lost
//   lost is final.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>
#include <thread>

#include "hwsync/mutex.hpp"
#include "hwsync/net/etcd_client.hpp"

namespace hwsync::net::etcd {

class session {
 public:
  // Grants the lease (throws the client's net::error if it cannot by
  // `deadline`) and starts keeping it alive.
  explicit session(client& c, std::chrono::seconds ttl = std::chrono::seconds(10),
                   steady_time deadline = no_deadline);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  client& owner() const noexcept { return client_; }
  std::int64_t lease() const noexcept { return lease_; }
  std::chrono::seconds ttl() const noexcept { return ttl_; }

  bool lost() const noexcept { return lost_.load(std::memory_order_acquire); }
  // Why the session was lost ("" while it is not).
  std::string lost_reason() const;
  // Stop-requested when the session is lost.
  std::stop_token lost_token() const noexcept { return lost_source_.get_token(); }
  // Throws net::error(lease_lost) naming `what` and the reason if lost().
  void throw_if_lost(const std::string& what) const;

  // Revokes the lease now (its keys vanish) and marks the session lost
  // with reason "closed". Idempotent.
  void close();

 private:
  void keep_alive(std::stop_token stop);
  void mark_lost(std::string reason);

  client& client_;
  std::int64_t lease_ = 0;
  std::chrono::seconds ttl_{0};
  std::atomic<bool> lost_{false};
  mutable hwsync::mutex reason_mutex_;  // guards reason_
  std::string reason_;
  std::stop_source lost_source_;
  std::jthread keeper_;  // last: started after everything it reads
};

}  // namespace hwsync::net::etcd
