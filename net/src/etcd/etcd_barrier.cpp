// etcd::barrier and etcd::double_barrier (hwsync/net/etcd_barrier.hpp,
// hwsync/net/etcd_double_barrier.hpp): etcd's recipes over the native
// client, waiting with the session's loss in view.
#include <stdexcept>

#include "etcd_wait.hpp"
#include "hwsync/net/etcd_barrier.hpp"
#include "hwsync/net/etcd_double_barrier.hpp"

namespace hwsync::net::etcd {

bool barrier::hold(steady_time deadline) {
  return client_
      .txn({compare::create_revision(key_, compare::result::equal, 0)}, {operation::put(key_, "")},
           {}, deadline)
      .succeeded;
}

bool barrier::release(steady_time deadline) {
  return client_.erase(key_, {}, deadline).deleted > 0;
}

bool barrier::wait(steady_time deadline, const session* watched) {
  const std::string what = "etcd barrier " + key_ + " wait";
  for (;;) {
    const range_result r = client_.get(key_, {}, deadline);
    if (r.kvs.empty()) return true;
    if (!detail::wait_for_event(client_, watched, what, key_, {}, r.revision + 1,
                                event::type::erase, deadline)) {
      return false;
    }
    // Deleted (or the history compacted away): read again, in case it was
    // deleted and held again meanwhile — then we keep waiting.
    if (client_.get(key_, {}, deadline).kvs.empty()) return true;
  }
}

double_barrier::double_barrier(session& s, std::string prefix, std::int64_t count)
    : session_(s),
      prefix_(detail::with_slash(std::move(prefix))),
      waiters_(prefix_ + "waiters/"),
      ready_(prefix_ + "ready"),
      key_(waiters_ + detail::lease_hex(s.lease())),
      count_(count) {
  if (count < 1) {
    throw std::invalid_argument("etcd double barrier " + prefix_ +
                                ": expected at least 1 participant, got " + std::to_string(count));
  }
}

bool double_barrier::enter(steady_time deadline) {
  const std::string what = "etcd double barrier " + prefix_ + " enter";
  session_.throw_if_lost(what);
  client& c = session_.owner();
  const put_result mine = c.put(key_, "", session_.lease(), deadline);
  range_options all;
  all.range_end = prefix_end(waiters_);
  all.count_only = true;
  const range_result waiting = c.get(waiters_, all, deadline);
  if (waiting.count > count_) {
    c.erase(key_, {}, deadline);
    throw std::length_error(what + ": expected at most " + std::to_string(count_) +
                            " participants, got " + std::to_string(waiting.count));
  }
  if (waiting.count == count_) {
    c.put(ready_, "", 0, deadline);
    return true;
  }
  // The ready put of this round comes after our own put. A wait that
  // gives up withdraws our arrival, so the count stays true.
  bool entered = false;
  try {
    entered = detail::wait_for_event(c, &session_, what, ready_, {}, mine.revision + 1,
                                     event::type::put, deadline);
  } catch (...) {
    withdraw();
    throw;
  }
  if (!entered) withdraw();
  return entered;
}

void double_barrier::withdraw() noexcept {
  if (session_.lost()) return;  // the lease took our key
  try {
    session_.owner().erase(key_, {}, std::chrono::steady_clock::now() + session_.ttl());
  } catch (...) {
    // It stays until the session ends.
  }
}

bool double_barrier::leave(steady_time deadline) {
  const std::string what = "etcd double barrier " + prefix_ + " leave";
  client& c = session_.owner();
  for (;;) {
    session_.throw_if_lost(what);
    range_options all;
    all.range_end = prefix_end(waiters_);
    const range_result r = c.get(waiters_, all, deadline);
    if (r.kvs.empty()) return true;
    const key_value* lowest = &r.kvs[0];
    const key_value* highest = &r.kvs[0];
    for (const key_value& kv : r.kvs) {
      if (kv.mod_revision < lowest->mod_revision) lowest = &kv;
      if (kv.mod_revision > highest->mod_revision) highest = &kv;
    }
    std::string awaited;
    if (r.kvs.size() == 1 && lowest->key == key_) {
      // The last one out: nothing left to wait for.
      c.erase(ready_, {}, deadline);
      c.erase(key_, {}, deadline);
      return true;
    }
    if (lowest->key == key_) {
      awaited = highest->key;  // the oldest waits for the newest to go
    } else {
      c.erase(key_, {}, deadline);  // a no-op once ours is gone
      awaited = lowest->key;        // and then waits for the oldest to go
    }
    if (!detail::wait_for_event(c, &session_, what, awaited, {}, r.revision + 1, event::type::erase,
                                deadline)) {
      return false;
    }
  }
}

}  // namespace hwsync::net::etcd
