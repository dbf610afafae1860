// etcd::election and etcd::election_observer (hwsync/net/etcd_election.hpp):
// etcd's concurrency.Election over the native client, waiting with the
// session's loss in view.
#include "hwsync/net/etcd_election.hpp"

#include "etcd_wait.hpp"

#include <algorithm>
#include <cstdio>
#include <thread>
#include <utility>
#include <vector>

namespace hwsync::net::etcd {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

using detail::lease_hex;
using detail::with_slash;
using detail::worth_retrying;

constexpr milliseconds retry_pause{100};

range_options oldest_of(const std::string& prefix) {
  range_options o;
  o.range_end = prefix_end(prefix);
  o.sort = range_options::order::ascending_create;
  o.limit = 1;
  return o;
}

}  // namespace

election::election(session& s, std::string prefix)
    : session_(s), prefix_(with_slash(std::move(prefix))), key_(prefix_ + lease_hex(s.lease())) {}

bool election::campaign(const std::string& value, steady_time deadline) {
  return enter(value, deadline, true);
}

bool election::try_campaign(const std::string& value) {
  return enter(value, no_deadline, false);
}

bool election::enter(const std::string& value, steady_time deadline, bool may_wait) {
  const std::string what = "etcd election campaign on " + prefix_;
  session_.throw_if_lost(what);
  client& c = session_.owner();
  const txn_result r =
      c.txn({compare::create_revision(key_, compare::result::equal, 0)},
            {operation::put(key_, value, session_.lease())}, {operation::get(key_)}, deadline);
  if (r.succeeded) {
    create_revision_ = r.revision;
  } else {
    if (r.results.size() != 1 || r.results[0].range.kvs.empty()) {
      throw net::error(errc::protocol_error,
                       what + ": expected the txn to answer our existing candidate key, got " +
                           std::to_string(r.results.size()) + " results");
    }
    // This session campaigns already: keep its place, take the new value.
    create_revision_ = r.results[0].range.kvs[0].create_revision;
    if (r.results[0].range.kvs[0].value != value) {
      c.txn({compare::create_revision(key_, compare::result::equal, create_revision_)},
            {operation::put(key_, value, session_.lease())}, {}, deadline);
    }
  }
  try {
    if (!wait_for_older_candidates(deadline, may_wait)) {
      delete_candidate();
      return false;
    }
  } catch (...) {
    delete_candidate();
    throw;
  }
  term_ = leader_info{key_, value, create_revision_};
  return true;
}

bool election::wait_for_older_candidates(steady_time deadline, bool may_wait) {
  const std::string what = "etcd election campaign on " + prefix_;
  client& c = session_.owner();
  for (;;) {
    session_.throw_if_lost(what);
    if (steady_clock::now() >= deadline) return false;
    try {
      range_options before_me;
      before_me.range_end = prefix_end(prefix_);
      before_me.sort = range_options::order::descending_create;
      before_me.limit = 1;
      before_me.max_create_revision = create_revision_ - 1;
      const range_result predecessor = c.get(prefix_, before_me, deadline);
      if (predecessor.kvs.empty()) {
        // No older candidate: we lead — if our key still exists. A lease
        // that expired during the wait took the key with it (the phantom
        // leader of etcd-io/etcd#11456 would return success here).
        const range_result own = c.get(key_, {}, deadline);
        session_.throw_if_lost(what);
        if (own.kvs.empty() || own.kvs[0].create_revision != create_revision_) {
          throw net::error(errc::lease_lost,
                           what + ": expected our candidate key " + key_ +
                               " to still exist when our turn came, got it gone (the session's "
                               "lease expired while campaigning)");
        }
        return true;
      }
      if (!may_wait) return false;
      // Only the immediate predecessor: its deletion is our only way
      // forward (no herd), and from the read's revision none is missed.
      if (!detail::wait_for_event(c, &session_, what, predecessor.kvs[0].key, {},
                                  predecessor.revision + 1, event::type::erase, deadline)) {
        return false;
      }
    } catch (const net::error& e) {
      if (!worth_retrying(e) || session_.lost() || steady_clock::now() >= deadline) throw;
      std::this_thread::sleep_until(std::min(deadline, steady_clock::now() + retry_pause));
    }
  }
}

void election::delete_candidate() noexcept {
  if (session_.lost()) return;  // the lease took the key, or will
  try {
    session_.owner().txn({compare::create_revision(key_, compare::result::equal, create_revision_)},
                         {operation::erase(key_)}, {}, steady_clock::now() + session_.ttl());
  } catch (...) {
    // The key stays until the session ends; the next campaign reuses it.
  }
}

void election::proclaim(const std::string& value) {
  const std::string what = "etcd election proclaim on " + prefix_;
  if (!term_) {
    throw net::error(errc::lease_lost, what + ": expected to lead, got no term (no campaign won)");
  }
  session_.throw_if_lost(what);
  const txn_result r = session_.owner().txn(
      {compare::create_revision(key_, compare::result::equal, term_->create_revision)},
      {operation::put(key_, value, session_.lease())});
  if (!r.succeeded) {
    term_.reset();
    throw net::error(errc::lease_lost, what + ": expected our leader key " + key_ +
                                           " to still exist, got it gone (the term ended)");
  }
  term_->value = value;
}

bool election::resign() {
  if (!term_) return false;
  // The term ends only once etcd answered: a resignation that failed on a
  // dead connection can be tried again.
  const bool deleted = session_.owner()
                           .txn({compare::create_revision(term_->key, compare::result::equal,
                                                          term_->create_revision)},
                                {operation::erase(term_->key)})
                           .succeeded;
  term_.reset();
  return deleted;
}

std::optional<leader_info> election::leader(steady_time deadline) {
  const range_result r = session_.owner().get(prefix_, oldest_of(prefix_), deadline);
  if (r.kvs.empty()) return std::nullopt;
  return leader_info{r.kvs[0].key, r.kvs[0].value, r.kvs[0].create_revision};
}

election_observer::election_observer(client& c, std::string prefix, steady_time deadline)
    : client_(c), prefix_(with_slash(std::move(prefix))) {
  resubscribe(deadline);
}

void election_observer::resubscribe(steady_time deadline) {
  if (revision_ != 0) {
    // Continue where we stopped: no change in between is lost. A start
    // revision etcd compacted away is refused: then read.
    try {
      watch_ =
          std::make_unique<watch>(client_, prefix_, prefix_end(prefix_), revision_ + 1, deadline);
      return;
    } catch (const compacted_error&) {
    }
  }
  // The first read, or the history we needed was compacted: read the
  // candidates as they are now (changes inside a compacted span are
  // reported as one).
  range_options all;
  all.range_end = prefix_end(prefix_);
  const range_result r = client_.get(prefix_, all, deadline);
  candidates_.clear();
  for (const key_value& kv : r.kvs) candidates_.emplace(kv.key, kv);
  revision_ = r.revision;
  watch_ = std::make_unique<watch>(client_, prefix_, prefix_end(prefix_), revision_ + 1, deadline);
  const std::optional<leader_info> now = current();
  if (!initial_reported_ || now != last_) {
    pending_.push_back(now);
    last_ = now;
    initial_reported_ = true;
  }
}

std::optional<leader_info> election_observer::current() const {
  const key_value* oldest = nullptr;
  for (const auto& [key, kv] : candidates_) {
    if (oldest == nullptr || kv.create_revision < oldest->create_revision) oldest = &kv;
  }
  if (oldest == nullptr) return std::nullopt;
  return leader_info{oldest->key, oldest->value, oldest->create_revision};
}

std::optional<std::optional<leader_info>> election_observer::next(steady_time deadline) {
  while (pending_.empty()) {
    std::optional<std::vector<event>> events;
    try {
      events = watch_->next(deadline);
    } catch (const net::error& e) {
      const bool compacted = dynamic_cast<const compacted_error*>(&e) != nullptr;
      if (!compacted && !worth_retrying(e)) throw;
      if (steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_until(std::min(deadline, steady_clock::now() + retry_pause));
      if (compacted) revision_ = 0;  // start again from a fresh read
      try {
        resubscribe(deadline);
      } catch (const net::error& again) {
        if (!worth_retrying(again)) throw;
      }
      continue;
    }
    if (!events) return std::nullopt;
    for (const event& ev : *events) {
      if (ev.what == event::type::erase) {
        candidates_.erase(ev.kv.key);
      } else {
        candidates_.insert_or_assign(ev.kv.key, ev.kv);
      }
      revision_ = std::max(revision_, ev.kv.mod_revision);
      const std::optional<leader_info> now = current();
      if (now != last_) {
        pending_.push_back(now);
        last_ = now;
      }
    }
  }
  std::optional<leader_info> front = std::move(pending_.front());
  pending_.pop_front();
  return front;
}

}  // namespace hwsync::net::etcd
