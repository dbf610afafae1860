// hwsync/net/etcd_election.hpp — etcd::election: leader election on a
// session (hwsync/net/etcd_session.hpp), etcd's concurrency.Election
// algorithm. One of the lock-service family (hwsync/net/lock_service.hpp's
// table in DESIGN.md), in a header of its own.
//
// Contract
//   Keys         A candidate is the key <prefix>/<session lease in hex>, put
//                under the session's lease with the candidate's value. The
//                leader is the candidate with the smallest create_revision
//                (FIFO: etcd assigns revisions in commit order).
//   Token        The leadership token is the leader key's create_revision:
//                strictly larger for every later term of this election.
//   campaign     Puts the candidate key (a txn on create_revision == 0; a
//                session that already campaigns keeps its key and place), then
//                waits for the deletion of every older candidate, watching
//                only the immediate predecessor (no herd), from the revision
//                of the read that found it. When none is left it re-reads its
//                own key: leadership is returned only if the key still exists
//                with its create_revision AND the session is not lost — never
//                a phantom leader whose session expired during the wait. A
//                wait that fails, times out or finds the session lost deletes
//                the candidate key (if the session still owns it).
//   Session loss Fires while campaigning too: the wait looks at the
//                session's lost() every 100 ms while its watch is idle, and
//                ends with net::error(lease_lost) within 100 ms of the loss.
//   Failover     A watch or read that fails with a connection error is
//                retried (on the next endpoint, through the client) while the
//                session is alive and the deadline has not passed.
//   Errors       campaign: net::error(lease_lost) (session lost, or the key
//                vanished), the client's errors; proclaim/resign on a term that
//                is no longer ours: net::error(lease_lost).
//   Threads      One thread at a time per election object; several objects
//                (on other sessions) may campaign for the same prefix.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_session.hpp"

namespace hwsync::net::etcd {

// A leader as etcd stores it: the candidate key, its value, the term's token.
struct leader_info {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;  // the leadership token
  friend bool operator==(const leader_info&, const leader_info&) = default;
};

class election {
 public:
  // prefix: the election's key range, e.g. "/hwsync/elections/db" (a '/' is
  // appended). The session must outlive the election.
  election(session& s, std::string prefix);
  election(const election&) = delete;
  election& operator=(const election&) = delete;

  // Blocks until this session leads, `deadline` passes (returns false, the
  // candidate key deleted) or an error (thrown, the candidate key deleted).
  bool campaign(const std::string& value, steady_time deadline = no_deadline);
  // Leads only if no older candidate exists now; else withdraws, false.
  bool try_campaign(const std::string& value);
  // Changes the leader's value without a new term. Throws lease_lost if this
  // object does not lead (any more).
  void proclaim(const std::string& value);
  // Gives leadership up (deletes the key if still this term's). False if
  // this object did not lead, or its key was already gone. If the call
  // throws (connection lost), the term is kept, so it can be retried.
  bool resign();

  // The current leader, or nullopt if nobody campaigns.
  std::optional<leader_info> leader(steady_time deadline = no_deadline);
  // This object's term (after a successful campaign) until resign().
  std::optional<leader_info> term() const { return term_; }
  // Whether the session of this election was lost (then a term is over).
  bool lost() const noexcept { return session_.lost(); }
  // Stop-requested when the session is lost (std::stop_callback fires then).
  std::stop_token lost_token() const noexcept { return session_.lost_token(); }

  const std::string& prefix() const noexcept { return prefix_; }

 private:
  bool enter(const std::string& value, steady_time deadline, bool may_wait);
  bool wait_for_older_candidates(steady_time deadline, bool may_wait);
  void delete_candidate() noexcept;

  session& session_;
  std::string prefix_;  // ends in '/'
  std::string key_;     // <prefix><lease hex>
  std::int64_t create_revision_ = 0;
  std::optional<leader_info> term_;
};

// Every change of an election's leader, in order: the leader as of the
// first read, then each new leader or value (nullopt: no candidate left).
// It follows every candidate key from one revision on, so no change is
// skipped, however fast they come. One thread at a time per object.
class election_observer {
 public:
  election_observer(client& c, std::string prefix, steady_time deadline = no_deadline);
  // The next leader state, or std::nullopt (outer) if none changed by
  // `deadline`. Inner nullopt: nobody leads.
  std::optional<std::optional<leader_info>> next(steady_time deadline);

 private:
  std::optional<leader_info> current() const;
  void resubscribe(steady_time deadline);

  client& client_;
  std::string prefix_;
  std::map<std::string, key_value> candidates_;  // by key
  std::int64_t revision_ = 0;                    // applied up to here
  std::unique_ptr<watch> watch_;
  std::deque<std::optional<leader_info>> pending_;
  std::optional<leader_info> last_;
  bool initial_reported_ = false;
};

}  // namespace hwsync::net::etcd
