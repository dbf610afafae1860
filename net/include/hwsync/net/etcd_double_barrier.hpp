// hwsync/net/etcd_double_barrier.hpp — etcd::double_barrier: etcd's
// recipes.DoubleBarrier. `count` participants enter together (nobody gets
// past enter() until all have arrived) and leave together (nobody gets past
// leave() until all have left). One of the lock-service family (DESIGN.md).
//
// Contract
//   Keys         <prefix>/waiters/<session lease in hex> per participant,
//                under the session's lease (one per session and barrier);
//                <prefix>/ready, put by the participant whose arrival made
//                `count`, released by the last one to leave.
//   enter()      Puts our waiter key, counts the waiters (a linearizable
//                read after our put: the last arrival sees all of them). At
//                `count` it puts ready and returns; above `count` it
//                withdraws and throws std::length_error (too many
//                participants); below it waits for ready's put, watched from
//                our key's revision. The ready key may be left over from an
//                earlier round: then its put precedes our watch and we wait
//                for the new one. An enter that times out or fails deletes
//                its waiter key again.
//   leave()      As etcd's recipe: the participant with the oldest waiter key
//                waits for the newest one's deletion; every other deletes its
//                own key, then waits for the oldest one's deletion; each
//                repeats until no waiter key is left; the last one deletes
//                ready. A participant whose process dies loses its key with
//                its lease, so the others are not stuck forever (they pass
//                once its lease expires).
//   Session      A session lost while waiting ends enter/leave with
//                net::error(lease_lost) within 100 ms.
//   Threads      One thread at a time per object.
#pragma once

#include <cstdint>
#include <string>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_session.hpp"

namespace hwsync::net::etcd {

class double_barrier {
 public:
  // count >= 1 (std::invalid_argument naming the value otherwise). The
  // session must outlive the barrier.
  double_barrier(session& s, std::string prefix, std::int64_t count);

  // Both return true when passed, false when `deadline` passed first.
  bool enter(steady_time deadline = no_deadline);
  bool leave(steady_time deadline = no_deadline);

  std::int64_t count() const noexcept { return count_; }

 private:
  void withdraw() noexcept;

  session& session_;
  std::string prefix_;   // ends in '/'
  std::string waiters_;  // <prefix>waiters/
  std::string ready_;    // <prefix>ready
  std::string key_;      // <waiters><lease hex>
  std::int64_t count_;
};

}  // namespace hwsync::net::etcd
