// net::error helpers: the names of the categories and the one place that
// turns an errno into a message saying what was expected and what happened.
#include "hwsync/net/error.hpp"

#include <cerrno>
#include <cstring>
#include <string>

namespace hwsync::net {

const char* to_string(errc code) noexcept {
  switch (code) {
    case errc::connection_refused:
      return "connection_refused";
    case errc::connection_reset:
      return "connection_reset";
    case errc::timed_out:
      return "timed_out";
    case errc::closed_by_peer:
      return "closed_by_peer";
    case errc::protocol_error:
      return "protocol_error";
    case errc::cancelled:
      return "cancelled";
    case errc::lease_lost:
      return "lease_lost";
    case errc::bad_uri:
      return "bad_uri";
    case errc::bad_name:
      return "bad_name";
    case errc::not_built:
      return "not_built";
    case errc::address_unresolved:
      return "address_unresolved";
    case errc::io_error:
      return "io_error";
  }
  return "unknown";
}

errc errc_from_errno(int err) noexcept {
  switch (err) {
    case ECONNREFUSED:
      return errc::connection_refused;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
      return errc::connection_reset;
    case ETIMEDOUT:
    case ETIME:
      return errc::timed_out;
    case ECANCELED:
      return errc::cancelled;
    default:
      return errc::io_error;
  }
}

void throw_errno(int err, std::string_view what_failed, std::string_view expected) {
  std::string got;
  switch (err) {
    // The ring reports a passed deadline as ETIME and a stop request as
    // ECANCELED; their strerror texts ("Timer expired") would mislead.
    case ETIME:
      got = "nothing before the deadline";
      break;
    case ECANCELED:
      got = "a stop request from the caller";
      break;
    default:
      got = std::strerror(err);
      break;
  }
  const char* name = strerrorname_np(err);
  std::string message;
  message.append(what_failed).append(": expected ").append(expected).append(", got ").append(got);
  message.append(" (").append(name != nullptr ? name : std::to_string(err).c_str()).append(")");
  throw error(errc_from_errno(err), message, err);
}

}  // namespace hwsync::net
