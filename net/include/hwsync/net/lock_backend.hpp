// hwsync/net/lock_backend.hpp — what a lock service backend implements
// (file://, redis://, etcd://) and how lock_service finds it by the
// URI's scheme.
//
// Contract
//   A backend is made once per lock_service from the parsed URI
//   (service_uri) by the factory registered for its scheme, and is shared by
//   every lock of that service, from any thread (it must be thread-safe).
//   lock_backend::open(name, owner) gives one backend_lock per
//   distributed_lock: the per-lock state (a file descriptor, the Redis keys)
//   and the operations on it. distributed_lock serializes the calls on one
//   backend_lock (an hwsync::mutex), so a backend_lock need not be
//   thread-safe; it may be called from the lease keeper's thread as well as
//   the user's.
//   Names reaching a backend are already validated (validate_lock_name).
//   Owners are 32 hex digits (a random 128-bit id per distributed_lock).
//   Tokens: every successful acquisition returns a fencing_token strictly
//   greater than every token returned before for that name by that
//   service's storage (for as long as it keeps its data: say in the
//   backend's docs what that is).
//   Errors: "not now" is a nullopt/false return; anything else (an
//   unreachable server, garbage, an I/O error) throws net::error.
//
// Registration (how redis:// and etcd:// plug in without editing this
// component): a backend's .cpp defines, at namespace scope,
//   static const hwsync::net::backend_registration registered{"redis", &make_redis_backend};
// which calls register_backend() while the library loads. lock_service
// looks the scheme up at construction; an unknown scheme throws
// net::error(bad_uri) listing the registered ones. (The registration runs
// for every object file linked into libhwsync_net.so; in a static build an
// object file nothing references is dropped by the linker, so link the
// static library with --whole-archive, as for any self-registering plugin.)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "hwsync/net/error.hpp"
#include "hwsync/net/fencing_token.hpp"
#include "hwsync/net/ring.hpp"

namespace hwsync::net {

// scheme://[host[:port]][/path][?key=value&...], split (no percent-decoding:
// none of the backends needs it). Examples:
//   file:///run/user/1000/locks   scheme "file", host "", path "/run/user/1000/locks"
//   redis://127.0.0.1:6379        scheme "redis", host "127.0.0.1", port 6379, path ""
struct service_uri {
  std::string text;  // as given, for messages
  std::string scheme;
  std::string host;
  std::optional<std::uint16_t> port;
  std::string path;
  std::map<std::string, std::string, std::less<>> query;

  // Throws net::error(bad_uri) saying what was expected and what arrived.
  static service_uri parse(std::string_view text);
};

// Throws net::error(bad_name) unless `name` is 1..200 bytes of printable
// ASCII without '/' and is not "." or "..": the file backend turns it into
// a file name, the others into keys, and all must agree which names exist.
void validate_lock_name(std::string_view name);

// One lock name as seen by one owner. Not thread-safe (see above).
class backend_lock {
 public:
  virtual ~backend_lock() = default;

  // Takes the lock if it is free, with a lease of `ttl` from now; nullopt if
  // someone else holds it.
  virtual std::optional<fencing_token> try_acquire(std::chrono::milliseconds ttl) = 0;

  // Takes the lock, waiting until `deadline` (no_deadline: forever);
  // nullopt when the deadline passed first. The default loops
  // try_acquire / wait_for_release.
  virtual std::optional<fencing_token> acquire_until(std::chrono::milliseconds ttl,
                                                     steady_time deadline);

  // Blocks until the lock may have been released or `deadline` passed,
  // without a polling storm (pub/sub, a watch, or a bounded backoff). A
  // spurious return is allowed; acquire_until tries again.
  virtual void wait_for_release(steady_time deadline) = 0;

  // Extends the lease to `ttl` from now; false when the lock is no longer
  // ours (expired and maybe taken). Must give up by `deadline` (throw
  // net::error(timed_out)), the moment past which the old lease can no
  // longer be proved alive.
  virtual bool renew(std::chrono::milliseconds ttl, steady_time deadline) = 0;

  // Releases the lock; false when it was no longer ours (the lease had
  // already gone).
  virtual bool release() = 0;

  // False for backends whose locks never expire while the holder lives
  // (file://: the kernel holds it until the process dies): no lease keeper.
  virtual bool lease_expires() const noexcept = 0;

  // The asynchronous forms, for distributed_lock::async_*: the same results
  // and errors as the blocking members, delivered to a coroutine that
  // resumes on ring::default_ring()'s loop thread. A stop request on `stop`
  // ends async_acquire_until with net::error(cancelled), the lock not taken.
  // The defaults run the blocking members on a thread of their own per call
  // (never on the loop thread, which they would stall; never on a bounded
  // pool, which waiters that block until a release could fill while the
  // release queues behind them). async_acquire_until's default alternates
  // try_acquire and wait_for_release slices of at most 100 ms, so a stop
  // request is seen within one slice. redis:// overrides them with pipelined
  // commands on the loop thread (no thread per call).
  virtual task<std::optional<fencing_token>> async_try_acquire(std::chrono::milliseconds ttl);
  virtual task<std::optional<fencing_token>> async_acquire_until(std::chrono::milliseconds ttl,
                                                                 steady_time deadline,
                                                                 std::stop_token stop);
  virtual task<bool> async_release();
};

class lock_backend {
 public:
  virtual ~lock_backend() = default;
  // `name` validated, `owner` 32 hex digits.
  virtual std::unique_ptr<backend_lock> open(std::string_view name, std::string_view owner) = 0;
};

using backend_factory = std::function<std::shared_ptr<lock_backend>(const service_uri&)>;

// Makes `factory` the backend of `scheme` ("redis"). A second registration
// of a scheme replaces the first. Thread-safe.
void register_backend(std::string scheme, backend_factory factory);

// The schemes registered now, sorted (for messages and tests).
std::vector<std::string> registered_schemes();

// A namespace-scope static of this type registers a backend at load time.
struct backend_registration {
  backend_registration(std::string scheme, backend_factory factory) {
    register_backend(std::move(scheme), std::move(factory));
  }
};

// A random 128-bit owner id as 32 lowercase hex digits (getrandom(2)).
std::string random_owner_id();

}  // namespace hwsync::net
