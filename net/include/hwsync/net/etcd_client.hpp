// hwsync/net/etcd_client.hpp — etcd::client, a blocking client of etcd's v3
// API (KV, Lease, Watch) spoken natively: gRPC over cleartext HTTP/2 on the
// io_uring ring (hwsync/net/ring.hpp), not the JSON gateway.
//
// Contract
//   Transport    One HTTP/2 connection per client (to one endpoint at a
//                time). Unary calls and the long-lived bidirectional streams
//                (watch, lease_keepalive) are HTTP/2 streams multiplexed on
//                it; nghttp2 frames them, the ring moves the bytes, protobuf
//                encodes the messages.
//   Threads      Every member may be called from any plain thread, from many
//                at once (calls are independent streams). Never from the
//                ring's loop thread: calls block (spin briefly, then park on
//                a futex) until the reply arrives or the deadline passes.
//   Endpoints    The client connects to the first endpoint that accepts,
//                lazily on the first call. When the connection fails, the
//                calls in flight fail with the connection's error and the
//                next call connects again, starting from the endpoint after
//                the failed one (so a dead member is skipped). A failed call
//                is never retried behind the caller's back: a put or txn may
//                or may not have been applied.
//   Errors       net::error: connection_refused (no endpoint accepted; the
//                message lists each endpoint and why), timed_out (the call's
//                deadline), connection_reset / closed_by_peer (the
//                connection died mid-call), protocol_error (bytes that are
//                not HTTP/2 + gRPC + the expected protobuf message).
//                etcd's own refusals (grpc-status != 0) are grpc_error, a
//                net::error carrying the gRPC status and etcd's message; a
//                lease etcd does not know is errc::lease_lost.
//   Ordering     Each call is linearizable as etcd makes it, except a range
//                the caller marks serializable (range_options). Revisions in
//                results are etcd's.
//   Deadlines    Every call takes an absolute steady_clock deadline
//                (no_deadline = none); options.call_timeout applies when the
//                caller passes none.
//   Keeper       The first etcd::session on a client starts the client's
//                lease keeper (one thread, one LeaseKeepAlive stream for
//                all of its sessions; hwsync/net/etcd_session.hpp); it
//                lives until the client is destroyed. Destroy a client's
//                sessions before the client.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hwsync/mutex.hpp"
#include "hwsync/net/error.hpp"
#include "hwsync/net/ring.hpp"

namespace hwsync::net::etcd {

namespace detail {
class grpc_channel;
struct grpc_call;
class lease_keeper;
}  // namespace detail

// gRPC status codes (grpc/include/grpc/impl/codegen/status.h).
enum class grpc_status : int {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  invalid_argument = 3,
  deadline_exceeded = 4,
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
};

// "INVALID_ARGUMENT", ...; "status <n>" for a code outside the table.
std::string to_string(grpc_status status);

// A call etcd answered with grpc-status != 0. code(): cancelled,
// timed_out (DEADLINE_EXCEEDED), connection_reset (UNAVAILABLE: the member
// lost its quorum or is shutting down), lease_lost (NOT_FOUND of a lease),
// else protocol_error (etcd rejected the request as malformed or
// disallowed). what(): "<method> on <endpoint>: etcd answered grpc-status
// 3 (INVALID_ARGUMENT): etcdserver: ...".
class grpc_error : public net::error {
 public:
  grpc_error(errc code, grpc_status status, std::string grpc_message, const std::string& what)
      : net::error(code, what), status_(status), grpc_message_(std::move(grpc_message)) {}
  grpc_status status() const noexcept { return status_; }
  // etcd's message, percent-decoded ("etcdserver: requested lease not found").
  const std::string& grpc_message() const noexcept { return grpc_message_; }

 private:
  grpc_status status_;
  std::string grpc_message_;
};

// A watch etcd cancelled because its start revision was compacted away
// (code protocol_error, as before this type existed): the history to
// replay is gone, the caller must read the current state instead.
class compacted_error : public net::error {
 public:
  compacted_error(std::int64_t compact_revision, const std::string& what)
      : net::error(errc::protocol_error, what), compact_revision_(compact_revision) {}
  // The oldest revision etcd still has.
  std::int64_t compact_revision() const noexcept { return compact_revision_; }

 private:
  std::int64_t compact_revision_;
};

struct key_value {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};

struct range_result {
  std::int64_t revision = 0;  // the store's revision when the range was read
  std::vector<key_value> kvs;
  std::int64_t count = 0;
  bool more = false;
};

struct put_result {
  std::int64_t revision = 0;
};

struct delete_result {
  std::int64_t revision = 0;
  std::int64_t deleted = 0;
};

// range_end for "every key starting with prefix" (etcd's convention: the
// prefix with its last byte incremented; "\0" for an empty prefix = all).
std::string prefix_end(std::string_view prefix);

struct range_options {
  std::string range_end;      // empty: the key alone
  std::int64_t revision = 0;  // 0: the newest
  std::int64_t limit = 0;     // 0: no limit
  enum class order { none, ascending_create, descending_create } sort = order::none;
  bool keys_only = false;
  bool count_only = false;
  std::int64_t min_create_revision = 0;  // 0: no bound
  std::int64_t max_create_revision = 0;  // 0: no bound
  // Answered from the serving member's own applied state, without a Raft
  // round trip (ReadIndex): a real committed state, but possibly older than
  // the newest one, by any amount on a member cut off from the leader. The
  // coordination recipes never use it: a stale "our key is still there" is
  // how phantom holders happen.
  bool serializable = false;
};

// One comparison of a txn: key's <target> <result> <operand>.
struct compare {
  enum class target { version, create_revision, mod_revision, value, lease };
  enum class result { equal, greater, less, not_equal };
  std::string key;
  target what = target::version;
  result relation = result::equal;
  std::int64_t number = 0;  // version / revisions / lease
  std::string value;        // target::value
  std::string range_end;

  static compare create_revision(std::string key, result r, std::int64_t rev) {
    return {std::move(key), target::create_revision, r, rev, {}, {}};
  }
  static compare mod_revision(std::string key, result r, std::int64_t rev) {
    return {std::move(key), target::mod_revision, r, rev, {}, {}};
  }
  static compare value_is(std::string key, result r, std::string v) {
    return {std::move(key), target::value, r, 0, std::move(v), {}};
  }
};

// One operation of a txn branch.
struct operation {
  enum class kind { range, put, erase };
  kind what = kind::range;
  std::string key;
  std::string value;       // put
  std::int64_t lease = 0;  // put
  range_options range;     // range; range.range_end also for erase

  static operation get(std::string key, range_options o = {}) {
    return {kind::range, std::move(key), {}, 0, std::move(o)};
  }
  static operation put(std::string key, std::string value, std::int64_t lease = 0) {
    return {kind::put, std::move(key), std::move(value), lease, {}};
  }
  static operation erase(std::string key, std::string range_end = {}) {
    range_options o;
    o.range_end = std::move(range_end);
    return {kind::erase, std::move(key), {}, 0, std::move(o)};
  }
};

// The response of one operation, in the order of the branch that ran.
struct operation_result {
  operation::kind what = operation::kind::range;
  range_result range;    // kind::range
  delete_result erased;  // kind::erase (put: nothing beyond the revision)
};

struct txn_result {
  bool succeeded = false;     // the compares held: the success branch ran
  std::int64_t revision = 0;  // the store's revision after the txn
  std::vector<operation_result> results;
};

struct lease_grant {
  std::int64_t id = 0;
  std::chrono::seconds ttl{0};  // as granted (etcd may raise a too short one)
};

struct event {
  enum class type { put, erase };
  type what = type::put;
  key_value kv;  // erase: key and mod_revision (the deletion's revision)
};

// etcd://host:port[,host:port...][/key/prefix], the lock service's URI, in
// parts: the endpoints and the key prefix of the locks (default
// /hwsync/locks, never ending in '/'). Throws net::error(bad_uri) naming
// what was expected.
struct service_address {
  std::vector<std::string> endpoints;
  std::string key_prefix;
};
service_address parse_service_uri(std::string_view uri);

struct client_options {
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds call_timeout{10000};  // used when a call gets no_deadline
};

class lease_keepalive;
class watch;
class session;

class client {
 public:
  // endpoints: "host:port" each (at least one). Throws net::error(bad_uri)
  // for one that does not parse. Connects lazily.
  explicit client(std::vector<std::string> endpoints, client_options options = {});
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  range_result get(std::string_view key, const range_options& options = {},
                   steady_time deadline = no_deadline);
  put_result put(std::string_view key, std::string_view value, std::int64_t lease = 0,
                 steady_time deadline = no_deadline);
  delete_result erase(std::string_view key, std::string_view range_end = {},
                      steady_time deadline = no_deadline);
  txn_result txn(const std::vector<compare>& compares, const std::vector<operation>& success,
                 const std::vector<operation>& failure = {}, steady_time deadline = no_deadline);

  // Discards the history before `revision` (etcd's KV.Compact, physical:
  // answered once it is gone); a watch or read of an older revision then
  // fails with compacted_error / grpc_error. Returns the store's revision.
  // Throws grpc_error(protocol_error) for a revision already compacted or
  // in the future.
  std::int64_t compact(std::int64_t revision, steady_time deadline = no_deadline);

  lease_grant grant_lease(std::chrono::seconds ttl, steady_time deadline = no_deadline);
  // Throws grpc_error(lease_lost) if etcd does not know the lease.
  void revoke_lease(std::int64_t id, steady_time deadline = no_deadline);
  // Seconds left; nullopt once the lease expired or was revoked.
  std::optional<std::chrono::seconds> lease_time_to_live(std::int64_t id,
                                                         steady_time deadline = no_deadline);

  // The endpoint of the current connection ("" before the first call).
  std::string current_endpoint() const;

 private:
  friend class lease_keepalive;
  friend class watch;
  friend class session;
  friend class detail::lease_keeper;
  std::shared_ptr<detail::grpc_channel> channel(steady_time deadline);
  // The client's lease keeper, started on the first use.
  detail::lease_keeper& keeper();
  std::string unary(const char* method, std::string_view request, steady_time deadline);
  steady_time effective(steady_time deadline) const;

  std::vector<std::string> endpoints_;
  client_options options_;
  mutable hwsync::mutex mutex_;  // guards channel_, next_endpoint_, current_
  std::shared_ptr<detail::grpc_channel> channel_;
  std::size_t next_endpoint_ = 0;
  std::string current_;
  hwsync::mutex keeper_mutex_;  // guards keeper_'s creation
  // Started by keeper(); destroyed first, without mutex_ (its thread may be
  // connecting, which takes mutex_).
  std::unique_ptr<detail::lease_keeper> keeper_;
};

// A LeaseKeepAlive stream: each keep_alive() sends one request and waits
// for its response. One thread at a time per object.
class lease_keepalive {
 public:
  explicit lease_keepalive(client& c, steady_time deadline = no_deadline);
  ~lease_keepalive();
  lease_keepalive(const lease_keepalive&) = delete;
  lease_keepalive& operator=(const lease_keepalive&) = delete;
  // Refreshes `id`; returns the TTL it was refreshed to. Throws
  // net::error(lease_lost) if the lease is gone (etcd answers TTL 0).
  std::chrono::seconds keep_alive(std::int64_t id, steady_time deadline = no_deadline);

 private:
  std::shared_ptr<detail::grpc_channel> channel_;
  std::shared_ptr<detail::grpc_call> call_;
};

// A Watch stream with one watcher on [key, range_end) from start_revision
// (0: from now). The constructor returns once etcd confirmed the watcher.
// One thread at a time per object.
class watch {
 public:
  watch(client& c, std::string key, std::string range_end = {}, std::int64_t start_revision = 0,
        steady_time deadline = no_deadline);
  ~watch();
  watch(const watch&) = delete;
  watch& operator=(const watch&) = delete;

  // The next batch of events (in revision order), or nullopt if none came
  // by `deadline`. Throws net::error(protocol_error) if etcd cancelled the
  // watcher — compacted_error, with compacted_revision() set, if the start
  // revision was compacted (the constructor throws that too) — and the
  // connection's error if it failed.
  std::optional<std::vector<event>> next(steady_time deadline);
  // Non-zero after a cancellation for compaction: the oldest revision
  // still available.
  std::int64_t compacted_revision() const noexcept { return compact_revision_; }

 private:
  std::shared_ptr<detail::grpc_channel> channel_;
  std::shared_ptr<detail::grpc_call> call_;
  std::string key_;
  std::int64_t compact_revision_ = 0;
};

}  // namespace hwsync::net::etcd
