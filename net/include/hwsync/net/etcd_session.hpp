// hwsync/net/etcd_session.hpp — etcd::session: one lease kept alive for as
// long as the session lives, and the signal that it was lost. Elections
// (hwsync/net/etcd_election.hpp) put their keys under a session's lease, so
// losing the session ends all of them at once — etcd's concurrency.Session.
//
// Contract
//   Lease        The constructor grants a lease of `ttl` (etcd may raise a
//                TTL below its minimum; ttl() is the granted one) and hands
//                it to its client's lease keeper, which refreshes it every
//                max(ttl/3, 100 ms).
//   Keeper       One per client, not one per session: the client's first
//                session starts it, the client's destruction ends it. One
//                thread and one LeaseKeepAlive stream carry the refreshes of
//                all the client's sessions (a timer queue ordered by each
//                lease's next refresh; etcd's answers matched by lease ID),
//                so 1000 sessions cost 1000 timer entries, not 1000 threads
//                or streams. A thread rather than a coroutine on the ring:
//                the client's calls block, and opening a stream may connect
//                (net/src/etcd/lease_keeper.hpp has the keeper's contract).
//   Failover     When the stream or its connection fails, every refresh in
//                flight on it fails and is retried 100 ms later on a new
//                stream, which the client opens on the next endpoint: the
//                lease survives a failover as long as a refresh lands
//                within the TTL of the last one that succeeded.
//   Loss         lost() becomes true, once and for good, when etcd says the
//                lease is gone (expired or revoked: a keepalive answered
//                with TTL <= 0 — the client's other sessions are unaffected),
//                or when no refresh succeeded within the TTL counted from
//                the send of the last one that did (the lease may have
//                expired unseen: assume it did), or after close(). The
//                session's stop_token (lost_token()) is stop-requested at
//                that moment, on the keeper thread (or the thread calling
//                close()), so std::stop_callback registrations fire then —
//                also for dependents that are still waiting
//                (etcd-io/etcd#11456). Callbacks on the keeper thread delay
//                the client's other refreshes while they run: keep them
//                short, and never destroy the client from one.
//   Ordering     lost() is an acquire load of a flag set (release) after the
//                reason was stored: a thread that sees lost() sees the reason.
//   Threads      Every member may be called from any plain thread; never from
//                the ring's loop thread (calls block).
//   Destruction  Takes the lease off the keeper's queue at once (it does not
//                wait for a refresh in flight: the keeper holds the
//                session's loss state by shared ownership and ignores an
//                answer for a lease no longer queued) and revokes the lease
//                unless lost, so the keys under it vanish at once rather
//                than at expiry. Destroy every session before its client.
//
// State (one flag; the keeper is its only writer besides close()):
//   live ──(TTL <= 0 answer | no refresh within TTL | close())──▶ lost
//   lost is final.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>

#include "hwsync/net/etcd_client.hpp"

namespace hwsync::net::etcd {

namespace detail {
struct lease_state;
}  // namespace detail

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

  bool lost() const noexcept;
  // Why the session was lost ("" while it is not).
  std::string lost_reason() const;
  // Stop-requested when the session is lost.
  std::stop_token lost_token() const noexcept;
  // Throws net::error(lease_lost) naming `what` and the reason if lost().
  void throw_if_lost(const std::string& what) const;

  // Revokes the lease now (its keys vanish) and marks the session lost
  // with reason "closed". Idempotent.
  void close();

 private:
  client& client_;
  std::int64_t lease_ = 0;
  std::chrono::seconds ttl_{0};
  // Shared with the client's keeper, which may still be firing the loss
  // when the session is destroyed.
  std::shared_ptr<detail::lease_state> state_;
};

}  // namespace hwsync::net::etcd
