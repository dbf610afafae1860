// lease_keeper — one per etcd::client: keeps every session's lease of that
// client alive on one thread and one LeaseKeepAlive stream. Private to
// hwsync_net; etcd::session (hwsync/net/etcd_session.hpp) is its user.
//
// Contract
//   Sharing      One keeper per client, started by the client's first
//                session and destroyed with the client: one thread and one
//                LeaseKeepAlive stream however many sessions there are
//                (etcd answers each request on a stream with the lease's
//                ID; responses are matched by it, not by order).
//   Why a thread The channel's calls block (callers park on its condition
//                variable); a coroutine on the ring's loop thread could not
//                wait on them, and the one blocking step left — opening a
//                stream, which may connect to the next endpoint (up to the
//                client's connect_timeout) — must not stall the loop that
//                moves every other call's bytes. One parked thread per
//                client costs nothing while it waits.
//   Timing       Per lease, as etcd's own keepalive: a refresh every
//                max(ttl/3, 100 ms) counted from the send of the last one
//                that succeeded; the lease is known alive until valid_until
//                = that send + the TTL etcd answered (initially the grant's
//                send + the granted TTL). A refresh with no answer by
//                min(valid_until, its send + the period) means the stream
//                is stuck: it is reset, every refresh in flight on it fails,
//                and each failed lease is retried 100 ms later (not after
//                valid_until) on a new stream, which the client opens on
//                the next endpoint if the connection died (failover).
//   Loss         lease_state::mark_lost when etcd answers TTL <= 0 for the
//                lease (expired or revoked: its other leases are unaffected),
//                or when a lease's refresh is due at or after valid_until
//                (no refresh succeeded within the TTL: assume it expired).
//                A lost lease is dropped from the queue.
//   Calling out  The keeper never holds its mutex while it calls the
//                channel, connects, or fires a loss (whose stop callbacks
//                are user code): it holds a shared_ptr to the lease_state
//                instead, so remove() never waits for a refresh in flight
//                and a session may be destroyed at any moment, also from a
//                stop callback on the keeper thread. A response for a
//                removed lease is ignored. Stop callbacks run on the keeper
//                thread and delay every other lease's refresh while they
//                run: keep them short; never destroy the client in one.
//   Renewals     refresh_now() (the etcd:// lock's renew()) puts a refresh
//                of one lease at the head of the queue and waits for the
//                answer to a refresh sent after it asked (one in flight at
//                that moment proves less, so the lease is sent again after
//                its answer): the same stream, no stream per held lock.
//   Blocking     add() and remove() take the keeper's mutex briefly (no I/O
//                under it) and wake the thread through a semaphore, as does
//                the stream when a response arrives.
//
// State of one lease in the queue (under mutex_):
//   in_flight  timer       meaning                      next
//   no         next due    idle, refresh due at timer   due: lost if past valid_until, else sent
//   yes        reply_by    sent at `sent`, unanswered   answer TTL>0: idle (next = sent + every)
//                                                       answer TTL<=0: lost, dropped
//                                                       reply_by passed / stream failed: idle,
//                                                       retried min(valid_until, now + 100 ms)
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "hwsync/mutex.hpp"
#include "hwsync/net/etcd_client.hpp"
#include "hwsync/semaphore.hpp"

namespace hwsync::net::etcd::detail {

class grpc_channel;
struct grpc_call;

// A session's lease as the keeper and the session share it: the keeper
// may still hold it (firing a loss) after the session is gone.
struct lease_state {
  lease_state(std::int64_t id, std::chrono::seconds granted_ttl) : lease(id), ttl(granted_ttl) {}

  // Stores the reason (the first caller's wins), then sets `lost`
  // (release), then stop-requests lost_source (its callbacks run here).
  void mark_lost(std::string why);
  std::string reason() const;

  const std::int64_t lease;
  const std::chrono::seconds ttl;
  std::atomic<bool> lost{false};
  std::stop_source lost_source;

 private:
  mutable hwsync::mutex reason_mutex_;  // guards reason_
  std::string reason_;
};

class lease_keeper {
 public:
  explicit lease_keeper(client& c);
  // `c`'s keeper, started on the first use.
  static lease_keeper& of(client& c) { return c.keeper(); }
  // Stops and joins the thread (at most one connect attempt long) and
  // closes the stream.
  ~lease_keeper();
  lease_keeper(const lease_keeper&) = delete;
  lease_keeper& operator=(const lease_keeper&) = delete;

  // Keeps `state`'s lease alive from now on; `granted_at`: the send time of
  // its grant (the lease is alive until granted_at + state->ttl).
  void add(std::shared_ptr<lease_state> state, steady_time granted_at);
  // Stops refreshing `lease` (a no-op for one not queued). Returns at once,
  // even while its refresh is in flight; a refresh_now() waiting on it
  // answers false.
  void remove(std::int64_t lease);

  // A refresh of `lease` sent now (not one already in flight: its send
  // would prove less than "alive for its TTL from now"), on the keeper's
  // stream, retried every 100 ms after a failure. True once etcd answers
  // TTL > 0; false once the lease is lost or not queued (its session lost
  // or gone). Throws net::error(timed_out), with the last failure, if no
  // answer came by `deadline`. For the etcd:// lock's renew().
  bool refresh_now(std::int64_t lease, steady_time deadline);

  // Leases queued now (for tests).
  std::size_t size() const;

 private:
  // A refresh_now() waiting: answered by the first refresh sent at or
  // after `asked_at`.
  struct refresh_request {
    steady_time asked_at{};
    hwsync::binary_semaphore answered{0};
    bool alive = false;        // written before `answered` is released
    std::string last_failure;  // under the keeper's mutex
  };

  struct entry {
    std::shared_ptr<lease_state> state;
    std::vector<std::shared_ptr<refresh_request>> requests;
    std::chrono::milliseconds every{0};
    steady_time valid_until{};
    bool in_flight = false;
    steady_time sent{};   // in_flight: when the refresh was sent
    steady_time timer{};  // its key in due_ (idle) or replies_ (in flight)
    std::string last_failure;
  };
  using timer_queue = std::set<std::pair<steady_time, std::int64_t>>;
  struct loss {
    std::shared_ptr<lease_state> state;
    std::string reason;
  };

  void run(std::stop_token stop);
  // Applies what the stream has delivered; collects the losses it finds.
  void drain_responses(std::vector<loss>& lost);
  void send_refreshes(const std::vector<std::int64_t>& leases, steady_time open_by);
  void drop_stream();

  void schedule_locked(entry& e, std::int64_t lease, steady_time at);
  void unschedule_locked(entry& e, std::int64_t lease);
  // Every refresh in flight failed (the stream is gone): idle, retried soon.
  void fail_in_flight_locked(const std::string& why, steady_time now);
  // Answers (and drops) the requests of `e` asked at or before `sent`, or
  // all of them if `all`.
  static void answer_locked(entry& e, bool alive, steady_time sent, bool all);

  client& client_;
  const std::shared_ptr<hwsync::counting_semaphore<>> wake_;

  mutable hwsync::mutex mutex_;  // guards entries_, due_, replies_
  std::map<std::int64_t, entry> entries_;
  timer_queue due_;      // idle leases by their next refresh
  timer_queue replies_;  // refreshes in flight by their reply deadline

  // The keeper thread's own (no lock).
  std::shared_ptr<grpc_channel> channel_;
  std::shared_ptr<grpc_call> stream_;

  std::jthread thread_;  // last: started after everything it reads
};

}  // namespace hwsync::net::etcd::detail
