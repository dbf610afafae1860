// hwsync/net/lock_service.hpp — net::lock_service and net::distributed_lock:
// a lock held across processes (file://) or machines (redis://, etcd:// in
// issue 9) with a lease, a fencing token and a signal when the lease is lost.
// Also brings in net::fencing_token and net::fenced_resource<T>.
//
// Contract (lock_service)
//   Made from a URI; the scheme picks the backend (hwsync/net/lock_backend.hpp):
//     file:///dir         one machine: flock(2) on <dir>/<name>.lock (a lock
//                         of the open file description, like OFD locks) and a
//                         token counter in that file (default; the directory
//                         is created, mode 0700, if missing)
//     redis://host:port   the Redis backend (docs/distributed-locks.md)
//     etcd://h:p[,h:p...] the etcd backend (docs/distributed-locks.md)
//   A build without the backends under net/src/*/
//   (-DHWSYNC_NET_EXTRA_BACKENDS=OFF) throws net::error(not_built) for
//   redis:// and etcd://.
//   Anything else throws net::error(bad_uri) saying what was expected.
//   default_uri(): $HWSYNC_LOCK_SERVICE if set, else
//   file://$XDG_RUNTIME_DIR/hwsync-locks, else file:///tmp/hwsync-locks.
//   A lock_service is a cheap handle (shared_ptr to its backend); copies
//   share the backend and may be used from any thread.
//
// Contract (distributed_lock)
//   One lock name of one service, held or not by this object. Lockable
//   (lock, try_lock, unlock) plus try_lock_for/until, so std::unique_lock
//   works — but see "unlock after a loss" below.
//   Exclusion     At most one distributed_lock (in any process using the
//                 same service) holds a name at a time while leases are
//                 honoured: for file:// always (the kernel's file lock); for
//                 leased backends only while the holder renews in time —
//                 which is what fencing tokens are for.
//   Tokens        Every acquisition returns (token()) a fencing_token
//                 strictly greater than every earlier one for the name.
//   Lease         ttl (lock_options, default 10 s). While held, a
//                 process-wide lease keeper thread renews it, at most every
//                 ttl/3 (the first renewal ttl/3 after the acquisition). A
//                 backend whose locks cannot expire while the process lives
//                 (file://) is never renewed and never lost.
//   Loss          The lease is lost when a renewal answers "not yours", or
//                 when renewals keep failing (connection lost, timeouts)
//                 until the lease's expiry (acquisition or last successful
//                 renewal start + ttl; counted from before the request
//                 left, so no later than the server's own expiry): the
//                 client can no longer prove it
//                 alive. Then, once per acquisition and on the keeper's
//                 thread: lost() becomes true, lost_token() is stop-
//                 requested (pass it to ring operations, or poll it), and
//                 the on_lost handler runs with a net::error(lease_lost)
//                 saying why. The handler must not block for long (other
//                 locks' renewals wait for it) and must not call this
//                 lock's members other than lost()/token().
//   Unlock after a loss   unlock() tells the backend to release (harmless
//                 if someone else holds it: release compares the owner),
//                 then throws net::error(lease_lost) instead of pretending
//                 the critical section was exclusive. The destructor of a
//                 held lock releases it and swallows that error (it cannot
//                 throw); std::unique_lock's destructor calls unlock()
//                 and, being noexcept, would terminate: call unlock()
//                 yourself where a loss is possible.
//   Blocking      lock()/try_lock_for() wait as the backend does
//                 (file://: flock(2) LOCK_EX in the kernel; a bounded wait
//                 polls with backoff: docs/distributed-locks.md).
//                 Not on a ring's loop thread (aborts with a message).
//   Thread safety One distributed_lock is used by one thread at a time
//                 (like std::unique_lock), except lost(), lost_token() and
//                 token(), which any thread may call. Different
//                 distributed_lock objects on the same name exclude each
//                 other even within one process.
//   Misuse        lock()/try_lock*() while this object holds the lock, or
//                 unlock() while it does not: with HWSYNC_DEBUG_CHECKS an
//                 abort with a message naming the lock; undefined otherwise.
//   Errors        A service that fails (unreachable, garbage, I/O error)
//                 throws net::error from lock/try_lock/try_lock_for.
//
// State (per distributed_lock; `held` and `lost` guarded by its mutex,
// `lost` also readable without it):
//   held  lost   meaning                       next
//   no    no     idle                          lock() -> held
//   yes   no     held, lease alive             keeper renews; unlock() -> idle
//   yes   yes    held but the lease is gone    unlock() releases, throws lease_lost -> idle
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "hwsync/net/error.hpp"
#include "hwsync/net/fenced_resource.hpp"
#include "hwsync/net/fencing_token.hpp"
#include "hwsync/net/lock_backend.hpp"

namespace hwsync::net {

class lock_service {
 public:
  // The service at default_uri().
  lock_service();
  // Throws net::error(bad_uri) / (not_built), or the backend's error if it
  // cannot start (a directory it cannot create).
  explicit lock_service(std::string_view uri);

  static std::string default_uri();

  const service_uri& uri() const noexcept { return *uri_; }
  const std::shared_ptr<lock_backend>& backend() const noexcept { return backend_; }

 private:
  std::shared_ptr<const service_uri> uri_;
  std::shared_ptr<lock_backend> backend_;
};

struct lock_options {
  std::chrono::milliseconds ttl = std::chrono::seconds(10);
};

class distributed_lock {
 public:
  // Throws net::error(bad_name) for a name the service cannot hold (empty,
  // '/', ...; see validate_lock_name), std::invalid_argument for a ttl under
  // 3 ms (renewals come every ttl/3). Opens the backend's per-lock state
  // (file://: opens <dir>/<name>.lock), so I/O errors surface here.
  distributed_lock(const lock_service& service, std::string_view name, lock_options options = {});
  ~distributed_lock();
  distributed_lock(const distributed_lock&) = delete;
  distributed_lock& operator=(const distributed_lock&) = delete;

  void lock();
  bool try_lock();
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) {
    return try_lock_until_steady(std::chrono::steady_clock::now() +
                                 std::chrono::ceil<std::chrono::steady_clock::duration>(rel));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs) {
    // The backends wait on steady_clock: convert once (a clock that jumps
    // after this is not followed).
    const auto rel = abs - Clock::now();
    return try_lock_for(rel < decltype(rel)::zero() ? decltype(rel)::zero() : rel);
  }
  void unlock();

  // The asynchronous forms, for a coroutine that keeps many acquisitions in
  // flight from one thread (each on its own distributed_lock): redis://
  // pipelines them on the service's one connection with no thread per
  // wait; file:// and etcd:// run the blocking call on a thread of its own
  // per call (lock_backend.hpp). The tasks start when awaited and resume on
  // ring::default_ring()'s loop thread, so code after the co_await must not
  // block. Same tokens, lease keeping, lost() signals, misuse checks and
  // errors as the blocking members; this object must outlive the task and
  // is used by one task (or thread) at a time. Destroying a held lock on the
  // loop thread aborts (its destructor's release blocks): async_unlock first.
  //   async_lock: waits as long as it takes. A stop request on `stop` ends
  //   the wait with net::error(cancelled), the lock not taken (redis://
  //   sees it at once; the default within 100 ms).
  //   async_try_lock_until: nullopt when `deadline` passed first.
  //   async_try_lock: one attempt; nullopt when someone else holds it.
  //   async_unlock: as unlock(), including the lease_lost error.
  task<fencing_token> async_lock(std::stop_token stop = {});
  task<std::optional<fencing_token>> async_try_lock_until(steady_time deadline,
                                                          std::stop_token stop = {});
  task<std::optional<fencing_token>> async_try_lock();
  task<void> async_unlock();

  bool owns_lock() const noexcept;
  // The fencing token of the current (or, after unlock, the last)
  // acquisition; fencing_token{} before the first.
  fencing_token token() const noexcept;
  // The current (or last) acquisition's lease is known lost.
  bool lost() const noexcept;
  // Stop-requested when the current acquisition's lease is lost; a fresh
  // token per acquisition (take it after lock() returns).
  std::stop_token lost_token() const noexcept;
  // Runs `handler` (from the lease keeper thread) when an acquisition's
  // lease is lost; replaces the previous handler. Set it before lock().
  void on_lost(std::function<void(const error&)> handler);

  const std::string& name() const noexcept;
  std::chrono::milliseconds ttl() const noexcept;

  struct state;  // shared with the lease keeper (src/distributed_lock.cpp)

 private:
  bool try_lock_until_steady(steady_time deadline);
  std::shared_ptr<state> state_;
};

}  // namespace hwsync::net
