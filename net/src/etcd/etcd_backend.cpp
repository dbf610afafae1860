// The etcd:// lock backend: etcd's concurrency.Mutex algorithm over the
// native client (hwsync/net/etcd_client.hpp).
//
//   etcd://host:port[,host:port...][/key/prefix]   (prefix default /hwsync/locks)
//
// A lock NAME is the key range <prefix>/NAME/. Each distributed_lock keeps
// one session (hwsync/net/etcd_session.hpp: a lease of the lock's ttl,
// rounded up to whole seconds, kept alive by the client's lease keeper —
// one thread and one keepalive stream for all the backend's locks)
// from its first acquisition until it is destroyed, as etcd's own Mutex runs
// on a Session: an acquisition puts <prefix>/NAME/<lease id in hex> under
// that lease in a txn guarded by create_revision == 0, and a release only
// deletes the key — two Raft writes per lock+unlock instead of four (no
// LeaseGrant, no LeaseRevoke). The key stays unique: one session belongs to
// one distributed_lock, which holds or waits for a name at most once at a
// time. The session is replaced when it is lost (the next acquisition grants
// a new lease) or when an acquisition asks for another ttl.
//
// The waiters are ordered by create_revision (FIFO: etcd assigns revisions
// in commit order); the holder is the oldest key. A waiter reads, in one
// read-only txn, the newest key created before its own (its predecessor)
// and its own key; it watches only the predecessor's deletion, from the
// revision of that read, so a release wakes one waiter, not the herd, and a
// deletion between the read and the watch is replayed, not missed. A watch
// whose start revision etcd compacted meanwhile (at its creation or later)
// sends the waiter back to the read. Its own key gone means its lease
// expired during the wait: lease_lost, never a phantom acquisition. The
// fencing token is the key's create_revision: etcd's revisions increase
// strictly across the whole store, so every later acquisition of the name
// (a later key, or the same key put again) has a larger one, for as long as
// etcd keeps its data (it survives restarts and member loss with a quorum;
// not a cluster rebuilt from scratch).
//
// While held, distributed_lock's lease keeper calls renew(), which has the
// client's lease keeper send a refresh of the session's lease at once on
// its one keepalive stream (proving it alive from that moment) and answers
// false once the session is lost, so lost() fires. A
// wait that passes its deadline or fails deletes the waiter key (guarded by
// its create_revision). A release or that deletion that fails on the wire
// closes the session instead: revoking the lease deletes the key now (on a
// new connection, maybe to another member), or at the lease's expiry at
// the latest, and the next acquisition starts a new session.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "etcd/lease_keeper.hpp"
#include "etcd_wait.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_lock_test_hooks.hpp"
#include "hwsync/net/etcd_session.hpp"
#include "hwsync/net/lock_backend.hpp"

namespace hwsync::net::etcd {

namespace test_hooks {
namespace {
hwsync::mutex hook_mutex;
std::function<void(std::int64_t)> before_predecessor_watch;  // guarded by hook_mutex
std::function<void()> after_predecessor_watch;               // guarded by hook_mutex
}  // namespace

void set_before_predecessor_watch(std::function<void(std::int64_t read_revision)> hook) {
  std::lock_guard g(hook_mutex);
  before_predecessor_watch = std::move(hook);
}

void set_after_predecessor_watch(std::function<void()> hook) {
  std::lock_guard g(hook_mutex);
  after_predecessor_watch = std::move(hook);
}
}  // namespace test_hooks

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::chrono::seconds lease_seconds(milliseconds ttl) {
  const auto s = std::chrono::ceil<std::chrono::seconds>(ttl);
  return std::max(s, std::chrono::seconds(1));
}

void run_before_predecessor_watch(std::int64_t read_revision) {
  std::function<void(std::int64_t)> hook;
  {
    std::lock_guard g(test_hooks::hook_mutex);
    hook = test_hooks::before_predecessor_watch;
  }
  if (hook) hook(read_revision);
}

void run_after_predecessor_watch() {
  std::function<void()> hook;
  {
    std::lock_guard g(test_hooks::hook_mutex);
    hook = test_hooks::after_predecessor_watch;
  }
  if (hook) hook();
}

class etcd_lock final : public backend_lock {
 public:
  etcd_lock(std::shared_ptr<client> c, std::string range_prefix, std::string owner)
      : client_(std::move(c)), prefix_(std::move(range_prefix)), owner_(std::move(owner)) {}

  ~etcd_lock() override {
    // A lock dropped while waiting gives its key back at once; the
    // session's destructor then revokes the lease.
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
      if (wait_for_predecessors(deadline)) {
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
    if (!mine_ || !session_ || session_->lost()) return false;
    // A refresh sent now on the client's one keepalive stream (the
    // session's own refreshes go there too): the lease proved alive for
    // its TTL from now, or false once etcd says it is gone.
    return detail::lease_keeper::of(*client_).refresh_now(mine_->lease, deadline);
  }

  bool release() override {
    if (!mine_) return false;
    const held h = *mine_;
    mine_.reset();
    try {
      return client_
          ->txn({compare::create_revision(h.key, compare::result::equal, h.revision)},
                {operation::erase(h.key)})
          .succeeded;
    } catch (...) {
      end_session();  // the key may still be there: the revocation takes it
      throw;
    }
  }

  bool lease_expires() const noexcept override { return true; }

 private:
  struct held {
    std::int64_t lease = 0;
    std::string key;
    std::int64_t revision = 0;  // the key's create_revision = the token
  };

  // What a waiter's read found: the newest key created before its own.
  struct turn {
    std::int64_t revision = 0;  // the store's revision at the read
    std::optional<std::string> predecessor;
    bool own_key_present = false;  // with our create_revision
  };

  range_options first_created() const {
    range_options o;
    o.range_end = prefix_end(prefix_);
    o.sort = range_options::order::ascending_create;
    o.limit = 1;
    return o;
  }

  // The live session for a lock of `ttl`, started if there is none (or the
  // last one was lost, or had another ttl).
  session& session_for(milliseconds ttl) {
    const std::chrono::seconds seconds = lease_seconds(ttl);
    if (session_ && (session_->lost() || session_seconds_ != seconds)) end_session();
    if (!session_) {
      session_ = std::make_unique<session>(*client_, seconds);
      session_seconds_ = seconds;
    }
    return *session_;
  }

  // Revokes the session's lease (its key goes with it) and forgets the
  // session; the next acquisition starts a new one. Failures are ignored:
  // the lease then expires by itself within its TTL, its keeper stopped.
  void end_session() noexcept {
    if (!session_) return;
    try {
      session_->close();
    } catch (...) {
    }
    session_.reset();
  }

  // Puts our key under the session's lease unless present, and reads the
  // oldest key of the name in the same txn. True if ours is the oldest.
  bool enqueue(milliseconds ttl) {
    for (int attempt = 1;; ++attempt) {
      const session& s = session_for(ttl);
      const std::int64_t lease = s.lease();
      const std::string key = prefix_ + detail::lease_hex(lease);
      txn_result r;
      try {
        r = client_->txn(
            {compare::create_revision(key, compare::result::equal, 0)},
            {operation::put(key, owner_, lease), operation::get(prefix_, first_created())},
            {operation::get(prefix_, first_created())});
      } catch (const net::error& e) {
        // The put may have landed: ending the session takes the key with it.
        end_session();
        // A lease that expired while the lock sat idle (its keeper could not
        // reach etcd in time): etcd refuses the put; a new session may not.
        if (e.code() == errc::lease_lost && attempt == 1) continue;
        throw;
      }
      if (!r.succeeded) {
        // Our key is still there from an acquisition whose release did not
        // land. Taking it over would hand out its token a second time: end
        // the session (the key goes with the lease) and start a new one.
        end_session();
        if (attempt == 1) continue;
        throw net::error(errc::protocol_error,
                         "etcd lock " + prefix_ + ": expected our new key " + key +
                             " to be absent, got it present under a new session's lease");
      }
      if (r.results.size() != 2) {
        end_session();
        throw net::error(errc::protocol_error,
                         "etcd lock " + prefix_ +
                             ": expected the txn to answer our put and the oldest key, got " +
                             std::to_string(r.results.size()) + " results");
      }
      mine_ = held{lease, key, r.revision};
      const auto& oldest = r.results[1].range.kvs;
      return oldest.empty() || oldest[0].create_revision == r.revision;
    }
  }

  // One read-only txn (one linearizable read): the newest key older than
  // ours, and our own key. Not serializable: a member that lags behind the
  // expiry of our lease would still show our key (and no predecessor) after
  // etcd has given the lock to the next waiter: a phantom acquisition.
  turn read_turn() {
    range_options before_me;
    before_me.range_end = prefix_end(prefix_);
    before_me.sort = range_options::order::descending_create;
    before_me.limit = 1;
    before_me.keys_only = true;
    before_me.max_create_revision = mine_->revision - 1;
    const txn_result r =
        client_->txn({}, {operation::get(prefix_, before_me), operation::get(mine_->key)});
    if (r.results.size() != 2) {
      throw net::error(errc::protocol_error,
                       "etcd lock " + prefix_ +
                           ": expected the read to answer our predecessor and our key, got " +
                           std::to_string(r.results.size()) + " results");
    }
    turn t;
    t.revision = r.revision;
    if (!r.results[0].range.kvs.empty()) t.predecessor = r.results[0].range.kvs[0].key;
    const auto& own = r.results[1].range.kvs;
    t.own_key_present = !own.empty() && own[0].create_revision == mine_->revision;
    return t;
  }

  // Waits until no key older than ours is left (true) or `deadline` passes
  // (false). Throws lease_lost when the session is lost or our key is gone
  // (the lease expired during the wait).
  bool wait_for_predecessors(steady_time deadline) {
    const std::string what = "etcd lock " + prefix_ + " (waiter key " + mine_->key + ")";
    for (;;) {
      session_->throw_if_lost(what);
      const turn t = read_turn();
      if (!t.own_key_present) {
        throw net::error(errc::lease_lost,
                         what +
                             ": expected our waiter key to still exist, got it gone "
                             "(the session's lease expired while waiting)");
      }
      if (!t.predecessor) return true;
      run_before_predecessor_watch(t.revision);
      // A deletion (true), or a start revision etcd compacted away (also
      // true): read again either way. The watch is made inside
      // wait_for_event's handling of compaction and connection failures.
      if (!detail::wait_for_event(*client_, session_.get(), what, *t.predecessor, {},
                                  t.revision + 1, event::type::erase, deadline,
                                  run_after_predecessor_watch)) {
        return false;
      }
    }
  }

  // Gives our key back (a guarded delete); if that fails on the wire, ends
  // the session, whose revocation or expiry takes the key.
  void abandon() noexcept {
    if (!mine_) return;
    const held h = *mine_;
    mine_.reset();
    try {
      client_->txn({compare::create_revision(h.key, compare::result::equal, h.revision)},
                   {operation::erase(h.key)});
    } catch (...) {
      end_session();
    }
  }

  std::shared_ptr<client> client_;
  std::string prefix_;  // <prefix>/NAME/
  std::string owner_;
  std::unique_ptr<session> session_;         // kept across acquisitions
  std::chrono::seconds session_seconds_{0};  // the ttl session_ was asked for
  std::optional<held> mine_;
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
