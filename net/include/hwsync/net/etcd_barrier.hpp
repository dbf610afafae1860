// hwsync/net/etcd_barrier.hpp — etcd::barrier: etcd's recipes.Barrier. One
// key holds everyone back: wait() blocks while it exists and returns once it
// is deleted. One of the lock-service family (DESIGN.md).
//
// Contract
//   Key          <key> itself, a plain key (no lease: a barrier outlives the
//                process that raised it, as in etcd's recipe).
//   hold()       Puts the key if absent (a txn on create_revision == 0).
//                False if it was already held.
//   release()    Deletes the key. False if it was not held.
//   wait()       Returns true at once if the key does not exist; else
//                watches it from the read's revision + 1 and returns when it
//                is deleted (no deletion between the read and the watch is
//                missed), false when `deadline` passes. With a session, a
//                loss of the session ends the wait with lease_lost.
//   Threads      Any thread; the object holds no state besides the key name.
#pragma once

#include <string>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_session.hpp"

namespace hwsync::net::etcd {

class barrier {
 public:
  barrier(client& c, std::string key) : client_(c), key_(std::move(key)) {}

  bool hold(steady_time deadline = no_deadline);
  bool release(steady_time deadline = no_deadline);
  bool wait(steady_time deadline = no_deadline, const session* watched = nullptr);

  const std::string& key() const noexcept { return key_; }

 private:
  client& client_;
  std::string key_;
};

}  // namespace hwsync::net::etcd
