// The etcd:// lock backend: etcd's concurrency.Mutex algorithm over the
// native client (hwsync/net/etcd_client.hpp).
//
//   etcd://host:port[,host:port...][/key/prefix]   (prefix default /hwsync/locks)
//
// A lock NAME is the key range <prefix>/NAME/. An acquisition grants a lease
// of the lock's ttl (rounded up to whole seconds; etcd raises a TTL below
// its minimum, about 1.5 election timeouts) and puts <prefix>/NAME/<lease id
// in hex> with that lease in a txn guarded by create_revision == 0. The
// waiters are ordered by create_revision (FIFO: etcd assigns revisions in
// commit order); the holder is the oldest key. A waiter watches only the
// deletion of its immediate predecessor (the newest key created before its
// own), from the revision of the read that found it, so a release wakes one
// waiter, not the herd, and a deletion between the read and the watch is
// replayed, not missed. When no predecessor is left it re-reads its own key
// to confirm its lease still holds it — never a phantom acquisition after
// the lease expired during the wait. The fencing token is that key's
// create_revision: etcd's revisions increase strictly across the whole
// store, so every later acquisition of the name (a later key) has a larger
// one, for as long as etcd keeps its data (it survives restarts and member
// loss with a quorum; not a cluster rebuilt from scratch).
//
// While waiting, this backend keeps its own lease alive (every ttl/3 on a
// LeaseKeepAlive stream); while held, distributed_lock's lease keeper does
// it through renew(). A wait that passes its deadline, fails, or finds the
// lease gone revokes its lease (which deletes its key). Release deletes the key
// only while it is still this acquisition's (create_revision compare) and
// revokes the lease.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/lock_backend.hpp"

namespace hwsync::net::etcd {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string hex(std::int64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::chrono::seconds lease_seconds(milliseconds ttl) {
  const auto s = std::chrono::ceil<std::chrono::seconds>(ttl);
  return std::max(s, std::chrono::seconds(1));
}

class etcd_lock final : public backend_lock {
 public:
  etcd_lock(std::shared_ptr<client> c, std::string range_prefix, std::string owner)
      : client_(std::move(c)), prefix_(std::move(range_prefix)), owner_(std::move(owner)) {}

  ~etcd_lock() override {
    // A lock dropped while held or waiting gives its key back at once
    // rather than at lease expiry.
    if (mine_) abandon();
  }

  std::optional<fencing_token> try_acquire(milliseconds ttl) override {
    const bool owner = enqueue(ttl);
    if (owner) return fencing_token(static_cast<std::uint64_t>(mine_->revision));
    abandon();
    return std::nullopt;
  }

  std::optional<fencing_token> acquire_until(milliseconds ttl, steady_time deadline) override {
    try {
      if (enqueue(ttl)) return fencing_token(static_cast<std::uint64_t>(mine_->revision));
      if (wait_for_predecessors(ttl, deadline)) {
        return fencing_token(static_cast<std::uint64_t>(mine_->revision));
      }
      abandon();
      return std::nullopt;
    } catch (...) {
      abandon();
      throw;
    }
  }

  void wait_for_release(steady_time deadline) override {
    const range_result first = client_->get(prefix_, first_created(), deadline);
    if (first.kvs.empty()) return;
    watch w(*client_, first.kvs[0].key, {}, first.revision + 1, deadline);
    w.next(deadline);  // any change, or the deadline: the caller tries again
  }

  bool renew(milliseconds, steady_time deadline) override {
    if (!mine_) return false;
    try {
      if (!keepalive_) keepalive_ = std::make_unique<lease_keepalive>(*client_, deadline);
      keepalive_->keep_alive(mine_->lease, deadline);
      return true;
    } catch (const net::error& e) {
      keepalive_.reset();  // a broken stream: the next renewal opens a new one
      if (e.code() == errc::lease_lost) return false;
      throw;
    }
  }

  bool release() override {
    if (!mine_) return false;
    const held h = *mine_;
    mine_.reset();
    keepalive_.reset();
    bool released = false;
    try {
      released = client_
                     ->txn({compare::create_revision(h.key, compare::result::equal, h.revision)},
                           {operation::erase(h.key)})
                     .succeeded;
    } catch (...) {
      // The connection failed mid-release: revoking the lease (on a new
      // connection, maybe to another member) still frees the key now
      // rather than at lease expiry.
      revoke_quietly(h.lease, h.ttl);
      throw;
    }
    revoke_quietly(h.lease, h.ttl);
    return released;
  }

  bool lease_expires() const noexcept override { return true; }

 private:
  struct held {
    std::int64_t lease = 0;
    std::string key;
    std::int64_t revision = 0;    // the key's create_revision = the token
    std::chrono::seconds ttl{0};  // as granted
  };

  range_options first_created() const {
    range_options o;
    o.range_end = prefix_end(prefix_);
    o.sort = range_options::order::ascending_create;
    o.limit = 1;
    return o;
  }

  // Grants a lease, puts our key under it unless present (it cannot be: the
  // lease is new; the compare is the algorithm's guard), and reads the
  // oldest key of the name in the same txn. True if ours is the oldest.
  bool enqueue(milliseconds ttl) {
    const lease_grant lease = client_->grant_lease(lease_seconds(ttl));
    held h{lease.id, prefix_ + hex(lease.id), 0, lease.ttl};
    try {
      const txn_result r = client_->txn(
          {compare::create_revision(h.key, compare::result::equal, 0)},
          {operation::put(h.key, owner_, lease.id), operation::get(prefix_, first_created())},
          {operation::get(h.key), operation::get(prefix_, first_created())});
      if (r.results.size() != 2 || (!r.succeeded && r.results[0].range.kvs.empty())) {
        throw net::error(errc::protocol_error,
                         "etcd lock " + prefix_ +
                             ": expected the txn to answer our key and the oldest key, got " +
                             std::to_string(r.results.size()) + " results");
      }
      h.revision = r.succeeded ? r.revision : r.results[0].range.kvs[0].create_revision;
      mine_ = h;
      const auto& oldest = r.results[1].range.kvs;
      return oldest.empty() || oldest[0].create_revision == h.revision;
    } catch (...) {
      revoke_quietly(lease.id, lease.ttl);
      throw;
    }
  }

  // Waits until no key older than ours is left (or `deadline`), keeping our
  // lease alive meanwhile; then confirms our key still exists. False when
  // the deadline passed; throws lease_lost when the lease expired.
  bool wait_for_predecessors(milliseconds ttl, steady_time deadline) {
    const milliseconds keepalive_every = std::max(ttl / 3, milliseconds(100));
    auto next_keepalive = steady_clock::now() + keepalive_every;
    lease_keepalive keeper(*client_, deadline);
    auto keep_alive_if_due = [&] {
      if (steady_clock::now() < next_keepalive) return;
      try {
        keeper.keep_alive(mine_->lease, std::min(deadline, steady_clock::now() + ttl));
      } catch (const net::error& e) {
        if (e.code() != errc::lease_lost) throw;
        throw net::error(errc::lease_lost, "etcd lock " + prefix_ +
                                               ": expected our waiter's lease alive while "
                                               "waiting, got it expired: " +
                                               e.what());
      }
      next_keepalive = steady_clock::now() + keepalive_every;
    };
    for (;;) {
      range_options before_me;
      before_me.range_end = prefix_end(prefix_);
      before_me.sort = range_options::order::descending_create;
      before_me.limit = 1;
      before_me.max_create_revision = mine_->revision - 1;
      const range_result predecessor = client_->get(prefix_, before_me);
      if (predecessor.kvs.empty()) break;
      watch w(*client_, predecessor.kvs[0].key, {}, predecessor.revision + 1);
      bool deleted = false;
      while (!deleted) {
        if (steady_clock::now() >= deadline) return false;
        std::optional<std::vector<event>> events;
        try {
          events = w.next(std::min(deadline, next_keepalive));
        } catch (const net::error& e) {
          // Compacted past our start revision: read the predecessors again.
          if (e.code() == errc::protocol_error && w.compacted_revision() != 0) break;
          throw;
        }
        if (events) {
          deleted = std::any_of(events->begin(), events->end(),
                                [](const event& ev) { return ev.what == event::type::erase; });
        }
        keep_alive_if_due();
      }
    }
    // No key older than ours: ours is the lock — if it still exists. A lease
    // that expired during the wait took the key with it.
    const range_result own = client_->get(mine_->key);
    if (own.kvs.empty() || own.kvs[0].create_revision != mine_->revision) {
      throw net::error(errc::lease_lost, "etcd lock " + prefix_ + ": expected our waiter key " +
                                             mine_->key +
                                             " to still exist when our turn came, got it gone "
                                             "(the session's lease expired while waiting)");
    }
    return true;
  }

  // Gives our key back: revoking the lease deletes the key with it.
  void abandon() noexcept {
    if (!mine_) return;
    const held h = *mine_;
    mine_.reset();
    keepalive_.reset();
    revoke_quietly(h.lease, h.ttl);
  }

  // Revokes `lease`, ignoring failures, and waits at most its TTL: by then
  // it has expired by itself anyway. (etcd 3.4 holds a proposal made while
  // the cluster has no leader until its request timeout, 7 s by default,
  // which would otherwise stall every cleanup after a leader crash.)
  void revoke_quietly(std::int64_t lease, std::chrono::seconds ttl) noexcept {
    try {
      client_->revoke_lease(lease, steady_clock::now() + ttl);
    } catch (...) {
    }
  }

  std::shared_ptr<client> client_;
  std::string prefix_;  // <prefix>/NAME/
  std::string owner_;
  std::optional<held> mine_;
  std::unique_ptr<lease_keepalive> keepalive_;
};

class etcd_backend final : public lock_backend {
 public:
  etcd_backend(std::vector<std::string> endpoints, std::string key_prefix)
      : client_(std::make_shared<client>(std::move(endpoints))), prefix_(std::move(key_prefix)) {}

  std::unique_ptr<backend_lock> open(std::string_view name, std::string_view owner) override {
    std::string range = prefix_;
    range.append("/").append(name).append("/");
    return std::make_unique<etcd_lock>(client_, std::move(range), std::string(owner));
  }

 private:
  std::shared_ptr<client> client_;
  std::string prefix_;
};

// service_uri keeps one host: the endpoint list is read from the text.
std::shared_ptr<lock_backend> make_etcd_backend(const service_uri& uri) {
  service_address address = parse_service_uri(uri.text);
  return std::make_shared<etcd_backend>(std::move(address.endpoints),
                                        std::move(address.key_prefix));
}

const backend_registration etcd_registered{"etcd", &make_etcd_backend};

}  // namespace

}  // namespace hwsync::net::etcd
