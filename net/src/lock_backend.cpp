// The parts of the backend interface every backend shares: URI parsing,
// lock-name validation, the scheme registry, owner ids, and the default
// acquire loop.
#include "hwsync/net/lock_backend.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <mutex>

#include "hwsync/mutex.hpp"
#include "internal.hpp"

namespace hwsync::net {
namespace {

[[noreturn]] void bad_uri(std::string_view text, std::string_view expected, std::string_view got) {
  std::string message = "lock service URI '";
  message.append(text).append("': expected ").append(expected).append(", got ").append(got);
  throw error(errc::bad_uri, message);
}

// 'text' — built by append: GCC 12's -Wrestrict misfires on "'" + s + "'".
std::string quoted(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('\'');
  out.append(text);
  out.push_back('\'');
  return out;
}

bool valid_scheme(std::string_view s) {
  if (s.empty() || !(s[0] >= 'a' && s[0] <= 'z')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
  });
}

struct registry {
  hwsync::mutex mutex;
  std::map<std::string, backend_factory, std::less<>> factories;
};

// A function-local static: backends register from their own static
// initializers, which may run before this file's.
registry& the_registry() {
  static registry* r = new registry;  // never destroyed: lookups may come during exit
  return *r;
}

}  // namespace

service_uri service_uri::parse(std::string_view text) {
  service_uri uri;
  uri.text = std::string(text);
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) {
    bad_uri(text, "scheme://... (file:///dir, redis://host:port)", "no '://'");
  }
  uri.scheme = std::string(text.substr(0, sep));
  if (!valid_scheme(uri.scheme)) {
    bad_uri(text, "a lowercase scheme such as file or redis before '://'", quoted(uri.scheme));
  }
  std::string_view rest = text.substr(sep + 3);
  const auto query_at = rest.find('?');
  std::string_view query =
      query_at == std::string_view::npos ? std::string_view{} : rest.substr(query_at + 1);
  rest = rest.substr(0, query_at);
  const auto path_at = rest.find('/');
  std::string_view authority = rest.substr(0, path_at);
  if (path_at != std::string_view::npos) uri.path = std::string(rest.substr(path_at));

  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      bad_uri(text, "an IPv6 host in brackets, [::1]", "no closing ']'");
    }
    uri.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') bad_uri(text, "':port' after ']'", quoted(after));
      port_text = after.substr(1);
      if (port_text.empty()) bad_uri(text, "a port number after ':'", "nothing");
    }
  } else {
    const auto colon = authority.rfind(':');
    uri.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) bad_uri(text, "a port number after ':'", "nothing");
    }
  }
  if (!port_text.empty()) {
    unsigned value = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535) {
      bad_uri(text, "a port number from 1 to 65535", quoted(port_text));
    }
    uri.port = static_cast<std::uint16_t>(value);
  }
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      bad_uri(text, "query parameters as key=value", quoted(item));
    }
    uri.query.emplace(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
  }
  return uri;
}

void validate_lock_name(std::string_view name) {
  auto reject = [&](std::string_view why) {
    std::string shown;
    for (const char c : name.substr(0, 64)) {
      if (c >= 0x20 && c < 0x7f) {
        shown.push_back(c);
      } else {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
        shown.append(hex);
      }
    }
    if (name.size() > 64) shown.append("...");
    throw error(errc::bad_name,
                "lock name '" + shown +
                    "': expected 1 to 200 printable ASCII characters without '/' (and not '.' "
                    "or '..'), got " +
                    std::string(why));
  };
  if (name.empty()) reject("an empty name");
  if (name.size() > 200) reject(std::to_string(name.size()) + " bytes");
  if (name == "." || name == "..") reject("a directory name");
  for (const char c : name) {
    if (c == '/') reject("a '/'");
    if (c < 0x21 || c > 0x7e) reject("a space or a non-printable byte");
  }
}

std::optional<fencing_token> backend_lock::acquire_until(std::chrono::milliseconds ttl,
                                                         steady_time deadline) {
  for (;;) {
    if (auto token = try_acquire(ttl)) return token;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    wait_for_release(deadline);
  }
}

void register_backend(std::string scheme, backend_factory factory) {
  auto& r = the_registry();
  std::lock_guard guard(r.mutex);
  r.factories.insert_or_assign(std::move(scheme), std::move(factory));
}

std::vector<std::string> registered_schemes() {
  auto& r = the_registry();
  std::lock_guard guard(r.mutex);
  std::vector<std::string> out;
  for (const auto& entry : r.factories) out.push_back(entry.first);
  return out;
}

namespace detail {
backend_factory find_backend(std::string_view scheme) {
  auto& r = the_registry();
  std::lock_guard guard(r.mutex);
  const auto it = r.factories.find(scheme);
  return it == r.factories.end() ? backend_factory{} : it->second;
}
}  // namespace detail

std::string random_owner_id() {
  unsigned char bytes[16];
  std::size_t filled = 0;
  while (filled < sizeof bytes) {
    const ssize_t n = getrandom(bytes + filled, sizeof bytes - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "getrandom for a lock owner id", "16 random bytes");
    }
    filled += static_cast<std::size_t>(n);
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string id;
  id.reserve(32);
  for (const unsigned char b : bytes) {
    id.push_back(digits[b >> 4]);
    id.push_back(digits[b & 15]);
  }
  return id;
}

}  // namespace hwsync::net
