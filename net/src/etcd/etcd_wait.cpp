#include "etcd_wait.hpp"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace hwsync::net::etcd::detail {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// How often a wait looks at its session: the bound on how late it notices
// a loss (the watch wakes only for etcd's events).
constexpr milliseconds session_check_every{100};
constexpr milliseconds retry_pause{100};

}  // namespace

std::string lease_hex(std::int64_t lease) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(lease));
  return buf;
}

std::string with_slash(std::string prefix) {
  if (prefix.empty() || prefix.back() != '/') prefix.push_back('/');
  return prefix;
}

bool worth_retrying(const net::error& e) {
  switch (e.code()) {
    case errc::connection_refused:
    case errc::connection_reset:
    case errc::closed_by_peer:
    case errc::timed_out:
      return true;
    default:
      return false;
  }
}

bool wait_for_event(client& c, const session* s, const std::string& what, const std::string& key,
                    const std::string& range_end, std::int64_t from_revision, event::type type,
                    steady_time deadline, const std::function<void()>& watching) {
  std::int64_t next_revision = from_revision;
  for (;;) {
    if (s != nullptr) s->throw_if_lost(what);
    if (steady_clock::now() >= deadline) return false;
    try {
      watch w(c, key, range_end, next_revision, deadline);
      if (watching) watching();
      for (;;) {
        if (s != nullptr) s->throw_if_lost(what);
        if (steady_clock::now() >= deadline) return false;
        const std::optional<std::vector<event>> events =
            w.next(std::min(deadline, steady_clock::now() + session_check_every));
        if (!events) continue;
        for (const event& ev : *events) {
          if (ev.what == type) return true;
          next_revision = std::max(next_revision, ev.kv.mod_revision + 1);
        }
      }
    } catch (const compacted_error&) {
      return true;  // the history is gone: the caller re-reads the state
    } catch (const net::error& e) {
      if (!worth_retrying(e) || (s != nullptr && s->lost()) || steady_clock::now() >= deadline) {
        throw;
      }
      std::this_thread::sleep_until(std::min(deadline, steady_clock::now() + retry_pause));
    }
  }
}

}  // namespace hwsync::net::etcd::detail
