// hwsync/net/error.hpp — net::errc and net::error, the one error type of the
// net component (the ring, TCP, every lock backend, the CLI).
//
// Contract
//   Every failure the caller can act on (a refused or reset connection, a
//   deadline, a peer that closed mid-message or answered garbage, a lost
//   lease, a malformed URI or lock name, an I/O error on a lock file) is
//   thrown as net::error, never swallowed. what() says what was expected and
//   what happened, e.g.
//     "connect to 127.0.0.1:6379: expected the peer to accept, got
//      connection refused (ECONNREFUSED)"
//   code() is the category to branch on; sys_errno() the errno behind it
//   (0 when none: a protocol error, a timeout measured by the ring's own
//   timer, a bad URI).
//   `try_` calls and timed waits report "not now" as false / nullopt, not
//   as an error: net::error means something went wrong, not that a lock was
//   busy.
//   Thread safety: a value type; copies share nothing.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace hwsync::net {

enum class errc {
  connection_refused = 1,  // ECONNREFUSED: nothing listens there
  connection_reset,        // ECONNRESET / EPIPE: the peer dropped the connection
  timed_out,               // an operation's deadline passed (linked timeout, lease wait)
  closed_by_peer,          // EOF where more bytes were expected (a short read mid-message)
  protocol_error,          // the peer answered bytes that do not parse as the protocol
  cancelled,               // the caller's stop_token asked to stop the operation
  lease_lost,              // the lock's lease expired or was taken while believed held
  bad_uri,                 // a service URI that does not parse or names no backend
  bad_name,                // a lock name the service cannot store ('/', empty, ...)
  not_built,               // a backend this build does not have (HWSYNC_NET_EXTRA_BACKENDS=OFF)
  address_unresolved,      // getaddrinfo could not resolve the host
  io_error,                // any other system error (see sys_errno())
};

// "connection_refused", "timed_out", ...: the enumerator's name.
const char* to_string(errc code) noexcept;

// The category a negative io_uring result or an errno belongs to:
// ECONNREFUSED -> connection_refused, ECONNRESET/EPIPE -> connection_reset,
// ETIMEDOUT/ETIME -> timed_out, ECANCELED -> cancelled, else io_error.
errc errc_from_errno(int err) noexcept;

class error : public std::runtime_error {
 public:
  error(errc code, const std::string& message, int sys_errno = 0)
      : std::runtime_error(message), code_(code), sys_errno_(sys_errno) {}

  errc code() const noexcept { return code_; }
  int sys_errno() const noexcept { return sys_errno_; }

 private:
  errc code_;
  int sys_errno_;
};

// Throws net::error for a failed system call or completion: `what_failed`
// names the operation and its target ("connect to 127.0.0.1:6379"),
// `expected` what success would have been ("the peer to accept"); the
// message appends the errno's name and text.
[[noreturn]] void throw_errno(int err, std::string_view what_failed, std::string_view expected);

}  // namespace hwsync::net
