// hwsync/net/etcd_semaphore.hpp — etcd::semaphore: a counting semaphore of
// N permits on a session (hwsync/net/etcd_session.hpp). Not in etcd's own
// client. One of the lock-service family (DESIGN.md), in a header of its own.
//
// Contract
//   Keys         A claim is the key <prefix>/<session lease in hex> under the
//                session's lease (one claim per session and semaphore). The
//                holders are the `permits` oldest claims by create_revision.
//   Fairness     FIFO by create_revision: a claim holds once fewer than
//                `permits` older claims are left, so no later claim overtakes
//                an earlier one.
//   Liveness     A holder whose session ends (its process died, its lease
//                expired) loses its key with the lease, which frees its permit
//                for the next claim in order.
//   Waiting      A waiter counts the older claims at revision R and, if there
//                are `permits` or more, watches the prefix from R+1 for a
//                deletion, then counts again: each release wakes every waiter
//                of this semaphore (one range read each), a herd bounded by its
//                waiters — the claims are keyed by lease, not by order, so no
//                single key marks "the one before the last holder".
//                Before returning a permit it re-reads its own claim: a
//                session that expired during the wait gets lease_lost, never
//                a phantom permit. Session loss ends a wait within 100 ms.
//   Agreement    Every participant must pass the same `permits`; the count is
//                not stored in etcd (a participant with another count sees
//                another set of holders).
//   Token        The claim's create_revision (token()), unique per
//                acquisition.
//   Threads      One thread at a time per semaphore object.
#pragma once

#include <cstdint>
#include <string>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_session.hpp"

namespace hwsync::net::etcd {

class semaphore {
 public:
  // permits >= 1 (throws std::invalid_argument naming the value otherwise).
  // The session must outlive the semaphore.
  semaphore(session& s, std::string prefix, std::int64_t permits);
  ~semaphore();
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  // Blocks until this claim holds a permit (true), `deadline` passes
  // (false, the claim withdrawn) or an error (thrown, the claim withdrawn).
  bool acquire(steady_time deadline = no_deadline);
  // Claims and holds only if a permit is free now.
  bool try_acquire();
  // Gives the permit back. False if this object held none, or its claim
  // was already gone (session lost).
  bool release();

  bool held() const noexcept { return create_revision_ != 0; }
  std::int64_t token() const noexcept { return create_revision_; }
  std::int64_t permits() const noexcept { return permits_; }
  bool lost() const noexcept { return session_.lost(); }

 private:
  std::int64_t claim();
  std::int64_t older_claims(std::int64_t revision, std::int64_t* read_at);
  bool confirm_own(const std::string& what);
  void withdraw() noexcept;

  session& session_;
  std::string prefix_;  // ends in '/'
  std::string key_;
  std::int64_t permits_;
  std::int64_t claim_revision_ = 0;   // while claimed (waiting or held)
  std::int64_t create_revision_ = 0;  // while held
};

}  // namespace hwsync::net::etcd
