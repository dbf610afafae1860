// etcd::semaphore (hwsync/net/etcd_semaphore.hpp): N holders, FIFO by
// create_revision, every claim under its session's lease.
#include "hwsync/net/etcd_semaphore.hpp"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "etcd_wait.hpp"

namespace hwsync::net::etcd {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds retry_pause{100};

}  // namespace

semaphore::semaphore(session& s, std::string prefix, std::int64_t permits)
    : session_(s),
      prefix_(detail::with_slash(std::move(prefix))),
      key_(prefix_ + detail::lease_hex(s.lease())),
      permits_(permits) {
  if (permits < 1) {
    throw std::invalid_argument("etcd semaphore " + prefix_ + ": expected at least 1 permit, got " +
                                std::to_string(permits));
  }
}

semaphore::~semaphore() {
  // A semaphore dropped while holding or waiting gives its claim back now
  // rather than when the session ends.
  withdraw();
}

// Puts our claim unless this session has one already (then keeps its
// place). Returns its create_revision.
std::int64_t semaphore::claim() {
  client& c = session_.owner();
  const txn_result r = c.txn({compare::create_revision(key_, compare::result::equal, 0)},
                             {operation::put(key_, "", session_.lease())}, {operation::get(key_)});
  if (r.succeeded) return r.revision;
  if (r.results.size() != 1 || r.results[0].range.kvs.empty()) {
    throw net::error(errc::protocol_error,
                     "etcd semaphore " + prefix_ +
                         ": expected the txn to answer our existing claim, got " +
                         std::to_string(r.results.size()) + " results");
  }
  return r.results[0].range.kvs[0].create_revision;
}

// At most `permits_` of the claims older than `revision` (etcd's count
// ignores the create_revision bounds, so the keys are fetched, limited).
std::int64_t semaphore::older_claims(std::int64_t revision, std::int64_t* read_at) {
  range_options older;
  older.range_end = prefix_end(prefix_);
  older.keys_only = true;
  older.sort = range_options::order::ascending_create;
  older.limit = permits_;
  older.max_create_revision = revision - 1;
  const range_result r = session_.owner().get(prefix_, older);
  *read_at = r.revision;
  return static_cast<std::int64_t>(r.kvs.size());
}

bool semaphore::confirm_own(const std::string& what) {
  const range_result own = session_.owner().get(key_);
  session_.throw_if_lost(what);
  if (own.kvs.empty() || own.kvs[0].create_revision != claim_revision_) {
    throw net::error(errc::lease_lost, what + ": expected our claim " + key_ +
                                           " to still exist when a permit came, got it gone "
                                           "(the session's lease expired while waiting)");
  }
  create_revision_ = claim_revision_;
  return true;
}

bool semaphore::try_acquire() {
  const std::string what = "etcd semaphore " + prefix_ + " try_acquire";
  if (held()) return true;
  session_.throw_if_lost(what);
  try {
    claim_revision_ = claim();
    std::int64_t read_at = 0;
    if (older_claims(claim_revision_, &read_at) < permits_) return confirm_own(what);
  } catch (...) {
    withdraw();
    throw;
  }
  withdraw();
  return false;
}

bool semaphore::acquire(steady_time deadline) {
  const std::string what = "etcd semaphore " + prefix_ + " acquire";
  if (held()) return true;
  session_.throw_if_lost(what);
  client& c = session_.owner();
  try {
    claim_revision_ = claim();
    for (;;) {
      session_.throw_if_lost(what);
      if (steady_clock::now() >= deadline) {
        withdraw();
        return false;
      }
      try {
        std::int64_t read_at = 0;
        if (older_claims(claim_revision_, &read_at) < permits_) return confirm_own(what);
        if (!detail::wait_for_event(c, &session_, what, prefix_, prefix_end(prefix_), read_at + 1,
                                    event::type::erase, deadline)) {
          withdraw();
          return false;
        }
      } catch (const net::error& e) {
        if (!detail::worth_retrying(e) || session_.lost() || steady_clock::now() >= deadline) {
          throw;
        }
        std::this_thread::sleep_until(std::min(deadline, steady_clock::now() + retry_pause));
      }
    }
  } catch (...) {
    withdraw();
    throw;
  }
}

bool semaphore::release() {
  if (!held()) return false;
  const std::int64_t revision = create_revision_;
  create_revision_ = 0;
  claim_revision_ = 0;
  return session_.owner()
      .txn({compare::create_revision(key_, compare::result::equal, revision)},
           {operation::erase(key_)})
      .succeeded;
}

void semaphore::withdraw() noexcept {
  const std::int64_t revision = claim_revision_;
  claim_revision_ = 0;
  create_revision_ = 0;
  if (revision == 0 || session_.lost()) return;  // nothing, or the lease took it
  try {
    session_.owner().txn({compare::create_revision(key_, compare::result::equal, revision)},
                         {operation::erase(key_)}, {}, steady_clock::now() + session_.ttl());
  } catch (...) {
    // The claim stays until the session ends.
  }
}

}  // namespace hwsync::net::etcd
