// hwsync/net/etcd_guarded_write.hpp — etcd::guarded_store: writes to etcd
// keys that etcd itself applies only while a given acquisition of an etcd://
// lock still holds it — etcd's own fence, checked in the same transaction
// as the write, so a holder whose lease has gone (Kleppmann's paused
// process) cannot overwrite its successor's data.
//
// Contract
//   put(lock, token, key, value) finds the lock key whose create_revision
//   is `token` (the fencing token of that acquisition, see the etcd
//   backend) under <prefix>/<lock>/ and runs one txn: if that key's
//   create_revision is still `token`, put key = value. A released or
//   expired acquisition's key is gone (its create_revision compares as 0),
//   so the write is refused and nothing changes. The lookup and the txn are
//   two calls; the txn's compare is what decides, so a deletion in between
//   is caught. The null token is refused without asking etcd.
//   get(key) is a linearizable read.
//   Errors: as etcd::client (net::error); a refusal is false, not an error.
//   Threads: any thread but a ring loop thread, several at once.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/fencing_token.hpp"
#include "hwsync/net/lock_backend.hpp"

namespace hwsync::net::etcd {

class guarded_store {
 public:
  // uri: the lock service's etcd://host:port[,...][/prefix]. Throws
  // net::error(bad_uri). Connects on first use.
  explicit guarded_store(std::string_view uri);

  // True if the write was applied: `token` still held lock `lock_name`.
  bool put(std::string_view lock_name, fencing_token token, std::string_view key,
           std::string_view value, steady_time deadline = no_deadline);
  std::optional<std::string> get(std::string_view key, steady_time deadline = no_deadline);

 private:
  service_address address_;
  client client_;
};

}  // namespace hwsync::net::etcd
