// hwsync/net/etcd_mutex.hpp — etcd::mutex: etcd's concurrency.Mutex on a
// session (hwsync/net/etcd_session.hpp), for code that holds several locks
// and elections under one lease and wants them all to end together. The
// lock_service's etcd:// backend (one session per distributed_lock) is the other
// way to the same algorithm; both use the key layout <prefix>/<lease hex>,
// so an etcd::mutex on "/hwsync/locks/NAME" excludes and is excluded by
// distributed_lock("etcd://...", NAME), and etcd::guarded_store fences its
// token.
//
// Contract
//   Algorithm    The election's (hwsync/net/etcd_election.hpp): the holder
//                is the oldest key; FIFO by create_revision; a waiter
//                watches only its immediate predecessor; the own key is
//                re-read before success, so a session that expired while
//                waiting gets lease_lost, never a phantom acquisition.
//   Token        The key's create_revision (token()): strictly increasing
//                over every acquisition of the prefix.
//   Loss         lost() / lost_token() are the session's: when the session
//                is lost every mutex and election on it is lost at once,
//                waiting ones included (they throw lease_lost within 100 ms).
//   Unlock       Deletes the key only if it is still this acquisition's
//                (create_revision compare); false otherwise.
//   Threads      One thread at a time per object.
#pragma once

#include <cstdint>
#include <stop_token>
#include <string>

#include "hwsync/net/etcd_election.hpp"
#include "hwsync/net/etcd_session.hpp"

namespace hwsync::net::etcd {

class mutex {
 public:
  // prefix: the lock's key range, e.g. "/hwsync/locks/NAME". The session
  // must outlive the mutex.
  mutex(session& s, std::string prefix) : session_(s), queue_(s, std::move(prefix)) {}

  // Blocks until held (true), `deadline` passes (false, the waiter key
  // deleted) or an error (thrown: lease_lost if the session was lost).
  bool lock(steady_time deadline = no_deadline) { return queue_.campaign("", deadline); }
  // Holds only if nobody holds or waits before us now.
  bool try_lock() { return queue_.try_campaign(""); }
  bool unlock() { return queue_.resign(); }

  bool held() const { return queue_.term().has_value(); }
  // The held key's create_revision (0 when not held).
  std::int64_t token() const { return held() ? queue_.term()->create_revision : 0; }
  bool lost() const noexcept { return session_.lost(); }
  std::stop_token lost_token() const noexcept { return session_.lost_token(); }

 private:
  session& session_;
  election queue_;  // the same FIFO queue of keys, without a value
};

}  // namespace hwsync::net::etcd
