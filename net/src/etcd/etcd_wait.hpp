// Waiting on etcd for the recipes (semaphore, barriers): a watch that also
// keeps an eye on the session, and the few helpers they share. Internal.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_session.hpp"

namespace hwsync::net::etcd::detail {

// "%llx" of a lease id: the recipes' per-session key suffix.
std::string lease_hex(std::int64_t lease);

// `prefix` with one trailing '/'.
std::string with_slash(std::string prefix);

// Connection failures that another try may cure (the client moves to the
// next endpoint on the next call).
bool worth_retrying(const net::error& e);

// Waits until an event of `type` happens on [key, range_end) at a revision
// >= from_revision. True when it did; false when `deadline` passed. Throws
// net::error(lease_lost) within 100 ms of `s` being lost (if s is not
// null), the client's errors otherwise; connection failures are retried
// (the watch restarts from the last revision seen) until the deadline. A
// start revision etcd compacted away counts as the event having happened:
// the caller re-reads the state either way. `watching` (if set) runs each
// time etcd confirmed a watch (the first, and one re-made after a failure).
bool wait_for_event(client& c, const session* s, const std::string& what, const std::string& key,
                    const std::string& range_end, std::int64_t from_revision, event::type type,
                    steady_time deadline, const std::function<void()>& watching = {});

}  // namespace hwsync::net::etcd::detail
