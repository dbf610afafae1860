#include "hwsync/net/etcd_client.hpp"

#include <charconv>
#include <mutex>
#include <utility>

#include "etcd/grpc_channel.hpp"
#include "etcd/lease_keeper.hpp"
#include "etcd_api.pb.h"

namespace hwsync::net::etcd {

namespace {

// etcd's gRPC method paths (etcdserverpb/rpc.proto: package etcdserverpb).
constexpr const char* kv_range = "/etcdserverpb.KV/Range";
constexpr const char* kv_put = "/etcdserverpb.KV/Put";
constexpr const char* kv_delete_range = "/etcdserverpb.KV/DeleteRange";
constexpr const char* kv_txn = "/etcdserverpb.KV/Txn";
constexpr const char* compact_method = "/etcdserverpb.KV/Compact";
constexpr const char* lease_grant_method = "/etcdserverpb.Lease/LeaseGrant";
constexpr const char* lease_revoke_method = "/etcdserverpb.Lease/LeaseRevoke";
constexpr const char* lease_keepalive_method = "/etcdserverpb.Lease/LeaseKeepAlive";
constexpr const char* lease_ttl_method = "/etcdserverpb.Lease/LeaseTimeToLive";
constexpr const char* watch_method = "/etcdserverpb.Watch/Watch";

template <class Message>
std::string encode(const Message& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

template <class Message>
Message decode(const std::string& bytes, const char* method) {
  Message m;
  if (!m.ParseFromString(bytes)) {
    throw net::error(errc::protocol_error,
                     std::string(method) + ": expected a protobuf " + m.GetTypeName() + ", got " +
                         std::to_string(bytes.size()) + " bytes that do not parse");
  }
  return m;
}

key_value from_pb(const pb::KeyValue& kv) {
  return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease()};
}

range_result from_pb(const pb::RangeResponse& r) {
  range_result out;
  out.revision = r.header().revision();
  out.kvs.reserve(static_cast<std::size_t>(r.kvs_size()));
  for (const auto& kv : r.kvs()) out.kvs.push_back(from_pb(kv));
  out.count = r.count();
  out.more = r.more();
  return out;
}

pb::RangeRequest range_request(std::string_view key, const range_options& o) {
  pb::RangeRequest r;
  r.set_key(std::string(key));
  r.set_range_end(o.range_end);
  r.set_revision(o.revision);
  r.set_limit(o.limit);
  if (o.sort != range_options::order::none) {
    r.set_sort_target(pb::RangeRequest::CREATE);
    r.set_sort_order(o.sort == range_options::order::ascending_create ? pb::RangeRequest::ASCEND
                                                                      : pb::RangeRequest::DESCEND);
  }
  r.set_keys_only(o.keys_only);
  r.set_count_only(o.count_only);
  r.set_min_create_revision(o.min_create_revision);
  r.set_max_create_revision(o.max_create_revision);
  r.set_serializable(o.serializable);
  return r;
}

pb::RequestOp request_op(const operation& op) {
  pb::RequestOp out;
  switch (op.what) {
    case operation::kind::range:
      *out.mutable_request_range() = range_request(op.key, op.range);
      break;
    case operation::kind::put: {
      auto* p = out.mutable_request_put();
      p->set_key(op.key);
      p->set_value(op.value);
      p->set_lease(op.lease);
      break;
    }
    case operation::kind::erase: {
      auto* d = out.mutable_request_delete_range();
      d->set_key(op.key);
      d->set_range_end(op.range.range_end);
      break;
    }
  }
  return out;
}

pb::Compare compare_pb(const compare& c) {
  pb::Compare out;
  out.set_key(c.key);
  out.set_range_end(c.range_end);
  switch (c.relation) {
    case compare::result::equal:
      out.set_result(pb::Compare::EQUAL);
      break;
    case compare::result::greater:
      out.set_result(pb::Compare::GREATER);
      break;
    case compare::result::less:
      out.set_result(pb::Compare::LESS);
      break;
    case compare::result::not_equal:
      out.set_result(pb::Compare::NOT_EQUAL);
      break;
  }
  switch (c.what) {
    case compare::target::version:
      out.set_target(pb::Compare::VERSION);
      out.set_version(c.number);
      break;
    case compare::target::create_revision:
      out.set_target(pb::Compare::CREATE);
      out.set_create_revision(c.number);
      break;
    case compare::target::mod_revision:
      out.set_target(pb::Compare::MOD);
      out.set_mod_revision(c.number);
      break;
    case compare::target::value:
      out.set_target(pb::Compare::VALUE);
      out.set_value(c.value);
      break;
    case compare::target::lease:
      out.set_target(pb::Compare::LEASE);
      out.set_lease(c.number);
      break;
  }
  return out;
}

// "host:port" -> parts; throws bad_uri naming what was expected.
std::pair<std::string, std::uint16_t> split_endpoint(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  unsigned port = 0;
  const char* first = endpoint.data() + (colon == std::string::npos ? 0 : colon + 1);
  const char* last = endpoint.data() + endpoint.size();
  const auto [end, ec] = std::from_chars(first, last, port);
  if (colon == std::string::npos || colon == 0 || ec != std::errc() || end != last || port == 0 ||
      port > 65535) {
    throw net::error(
        errc::bad_uri,
        "etcd endpoint: expected host:port with a port in 1..65535, got '" + endpoint + "'");
  }
  return {endpoint.substr(0, colon), static_cast<std::uint16_t>(port)};
}

}  // namespace

std::string to_string(grpc_status status) {
  static constexpr const char* names[] = {"OK",
                                          "CANCELLED",
                                          "UNKNOWN",
                                          "INVALID_ARGUMENT",
                                          "DEADLINE_EXCEEDED",
                                          "NOT_FOUND",
                                          "ALREADY_EXISTS",
                                          "PERMISSION_DENIED",
                                          "RESOURCE_EXHAUSTED",
                                          "FAILED_PRECONDITION",
                                          "ABORTED",
                                          "OUT_OF_RANGE",
                                          "UNIMPLEMENTED",
                                          "INTERNAL",
                                          "UNAVAILABLE",
                                          "DATA_LOSS",
                                          "UNAUTHENTICATED"};
  const int code = static_cast<int>(status);
  if (code >= 0 && code < static_cast<int>(std::size(names))) return names[code];
  return "status " + std::to_string(code);
}

service_address parse_service_uri(std::string_view uri) {
  const auto bad = [&](std::string_view got) -> net::error {
    std::string what = "etcd service URI '";
    what.append(uri).append("': expected etcd://host:port[,host:port...][/key/prefix], got ");
    what.append(got);
    return net::error(errc::bad_uri, what);
  };
  if (uri.rfind("etcd://", 0) != 0) throw bad("another scheme");
  std::string_view rest = uri.substr(7);
  const auto authority_end = std::min(rest.find_first_of("/?"), rest.size());
  const std::string_view authority = rest.substr(0, authority_end);
  service_address out;
  for (std::size_t at = 0; at <= authority.size();) {
    const auto comma = std::min(authority.find(',', at), authority.size());
    std::string endpoint(authority.substr(at, comma - at));
    try {
      split_endpoint(endpoint);
    } catch (const net::error&) {
      throw bad("endpoint '" + endpoint + "'");
    }
    out.endpoints.push_back(std::move(endpoint));
    at = comma + 1;
  }
  rest = rest.substr(authority_end);
  out.key_prefix = std::string(rest.substr(0, rest.find('?')));
  while (!out.key_prefix.empty() && out.key_prefix.back() == '/') out.key_prefix.pop_back();
  if (out.key_prefix.empty()) out.key_prefix = "/hwsync/locks";
  return out;
}

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();  // 0xff cannot be incremented: the range ends one byte earlier
  }
  return std::string(1, '\0');  // every key
}

client::client(std::vector<std::string> endpoints, client_options options)
    : endpoints_(std::move(endpoints)), options_(options) {
  if (endpoints_.empty()) {
    throw net::error(errc::bad_uri,
                     "etcd client: expected at least one host:port endpoint, got none");
  }
  for (const std::string& e : endpoints_) split_endpoint(e);
}

client::~client() {
  // First, and without mutex_: the keeper's thread may be in channel().
  keeper_.reset();
  std::lock_guard lock(mutex_);
  if (channel_) channel_->shutdown();
}

detail::lease_keeper& client::keeper() {
  // Not mutex_: a session's destructor must not wait for a connect.
  std::lock_guard lock(keeper_mutex_);
  if (!keeper_) keeper_ = std::make_unique<detail::lease_keeper>(*this);
  return *keeper_;
}

steady_time client::effective(steady_time deadline) const {
  return deadline == no_deadline ? std::chrono::steady_clock::now() + options_.call_timeout
                                 : deadline;
}

std::shared_ptr<detail::grpc_channel> client::channel(steady_time deadline) {
  std::lock_guard lock(mutex_);
  if (channel_ && !channel_->broken()) return channel_;
  if (channel_) {
    channel_->shutdown();
    channel_.reset();
  }
  // Try every endpoint once, starting after the one that failed last.
  std::string reasons;
  const steady_time connect_by =
      std::min(deadline, std::chrono::steady_clock::now() + options_.connect_timeout);
  for (std::size_t tried = 0; tried < endpoints_.size(); ++tried) {
    const std::size_t i = (next_endpoint_ + tried) % endpoints_.size();
    const auto [host, port] = split_endpoint(endpoints_[i]);
    try {
      channel_ = detail::grpc_channel::connect(host, port, connect_by);
      current_ = endpoints_[i];
      // Next time this one fails, start with its successor.
      next_endpoint_ = (i + 1) % endpoints_.size();
      return channel_;
    } catch (const net::error& e) {
      if (e.code() == errc::cancelled) throw;
      reasons.append("\n  ").append(endpoints_[i]).append(": ").append(e.what());
    }
  }
  next_endpoint_ = (next_endpoint_ + 1) % endpoints_.size();
  throw net::error(errc::connection_refused,
                   "etcd client: expected one of " + std::to_string(endpoints_.size()) +
                       " endpoint(s) to accept a connection, got none:" + reasons);
}

std::string client::current_endpoint() const {
  std::lock_guard lock(mutex_);
  return current_;
}

std::string client::unary(const char* method, std::string_view request, steady_time deadline) {
  const steady_time by = effective(deadline);
  return channel(by)->unary(method, request, by);
}

range_result client::get(std::string_view key, const range_options& options, steady_time deadline) {
  return from_pb(decode<pb::RangeResponse>(
      unary(kv_range, encode(range_request(key, options)), deadline), kv_range));
}

put_result client::put(std::string_view key, std::string_view value, std::int64_t lease,
                       steady_time deadline) {
  pb::PutRequest r;
  r.set_key(std::string(key));
  r.set_value(std::string(value));
  r.set_lease(lease);
  const auto response = decode<pb::PutResponse>(unary(kv_put, encode(r), deadline), kv_put);
  return {response.header().revision()};
}

delete_result client::erase(std::string_view key, std::string_view range_end,
                            steady_time deadline) {
  pb::DeleteRangeRequest r;
  r.set_key(std::string(key));
  r.set_range_end(std::string(range_end));
  const auto response =
      decode<pb::DeleteRangeResponse>(unary(kv_delete_range, encode(r), deadline), kv_delete_range);
  return {response.header().revision(), response.deleted()};
}

txn_result client::txn(const std::vector<compare>& compares, const std::vector<operation>& success,
                       const std::vector<operation>& failure, steady_time deadline) {
  pb::TxnRequest r;
  for (const compare& c : compares) *r.add_compare() = compare_pb(c);
  for (const operation& op : success) *r.add_success() = request_op(op);
  for (const operation& op : failure) *r.add_failure() = request_op(op);
  const auto response = decode<pb::TxnResponse>(unary(kv_txn, encode(r), deadline), kv_txn);
  txn_result out;
  out.succeeded = response.succeeded();
  out.revision = response.header().revision();
  for (const auto& op : response.responses()) {
    operation_result result;
    switch (op.response_case()) {
      case pb::ResponseOp::kResponseRange:
        result.what = operation::kind::range;
        result.range = from_pb(op.response_range());
        break;
      case pb::ResponseOp::kResponsePut:
        result.what = operation::kind::put;
        break;
      case pb::ResponseOp::kResponseDeleteRange:
        result.what = operation::kind::erase;
        result.erased = {op.response_delete_range().header().revision(),
                         op.response_delete_range().deleted()};
        break;
      default:
        throw net::error(errc::protocol_error,
                         std::string(kv_txn) +
                             ": expected a range, put or delete response per operation, got "
                             "another kind");
    }
    out.results.push_back(std::move(result));
  }
  return out;
}

std::int64_t client::compact(std::int64_t revision, steady_time deadline) {
  pb::CompactionRequest r;
  r.set_revision(revision);
  // physical: etcd answers only once the old revisions are gone from its
  // backend, so a watch from before `revision` is refused from then on.
  r.set_physical(true);
  const auto response =
      decode<pb::CompactionResponse>(unary(compact_method, encode(r), deadline), compact_method);
  return response.header().revision();
}

lease_grant client::grant_lease(std::chrono::seconds ttl, steady_time deadline) {
  pb::LeaseGrantRequest r;
  r.set_ttl(ttl.count());
  const auto response = decode<pb::LeaseGrantResponse>(
      unary(lease_grant_method, encode(r), deadline), lease_grant_method);
  if (!response.error().empty() || response.id() == 0) {
    throw net::error(errc::protocol_error, std::string(lease_grant_method) +
                                               ": expected a lease id, got error '" +
                                               response.error() + "'");
  }
  return {response.id(), std::chrono::seconds(response.ttl())};
}

void client::revoke_lease(std::int64_t id, steady_time deadline) {
  pb::LeaseRevokeRequest r;
  r.set_id(id);
  decode<pb::LeaseRevokeResponse>(unary(lease_revoke_method, encode(r), deadline),
                                  lease_revoke_method);
}

std::optional<std::chrono::seconds> client::lease_time_to_live(std::int64_t id,
                                                               steady_time deadline) {
  pb::LeaseTimeToLiveRequest r;
  r.set_id(id);
  const auto response = decode<pb::LeaseTimeToLiveResponse>(
      unary(lease_ttl_method, encode(r), deadline), lease_ttl_method);
  // etcd answers TTL -1 for a lease it does not know (expired or revoked).
  if (response.ttl() < 0) return std::nullopt;
  return std::chrono::seconds(response.ttl());
}

// ---------------------------------------------------------------------------

lease_keepalive::lease_keepalive(client& c, steady_time deadline)
    : channel_(c.channel(c.effective(deadline))),
      call_(channel_->start_call(lease_keepalive_method, {}, false)) {}

lease_keepalive::~lease_keepalive() {
  channel_->cancel(call_);
}

std::chrono::seconds lease_keepalive::keep_alive(std::int64_t id, steady_time deadline) {
  pb::LeaseKeepAliveRequest r;
  r.set_id(id);
  channel_->send_message(call_, encode(r));
  const auto message = channel_->read_message(call_, deadline);
  if (!message) {
    throw net::error(errc::protocol_error, std::string(lease_keepalive_method) +
                                               ": expected a keepalive response, got the end "
                                               "of the stream");
  }
  const auto response = decode<pb::LeaseKeepAliveResponse>(*message, lease_keepalive_method);
  if (response.ttl() <= 0) {
    throw net::error(errc::lease_lost,
                     std::string(lease_keepalive_method) + ": lease " + std::to_string(id) +
                         ": expected it refreshed, got TTL " + std::to_string(response.ttl()) +
                         " (expired or revoked)");
  }
  return std::chrono::seconds(response.ttl());
}

// ---------------------------------------------------------------------------

watch::watch(client& c, std::string key, std::string range_end, std::int64_t start_revision,
             steady_time deadline)
    : channel_(c.channel(c.effective(deadline))), key_(std::move(key)) {
  pb::WatchRequest r;
  auto* create = r.mutable_create_request();
  create->set_key(key_);
  create->set_range_end(range_end);
  create->set_start_revision(start_revision);
  call_ = channel_->start_call(watch_method, detail::frame_message(encode(r)), false);
  // The first response confirms the watcher (created = true), or cancels
  // it at once (e.g. a compacted start revision).
  const auto message = channel_->read_message(call_, c.effective(deadline));
  if (!message) {
    throw net::error(errc::protocol_error, std::string(watch_method) +
                                               ": expected a created response, got the end of "
                                               "the stream");
  }
  const auto response = decode<pb::WatchResponse>(*message, watch_method);
  compact_revision_ = response.compact_revision();
  if (response.canceled() || !response.created()) {
    channel_->cancel(call_);
    const std::string what = std::string(watch_method) + " of '" + key_ +
                             "': expected the watcher created, got it cancelled (" +
                             response.cancel_reason() + ", compact revision " +
                             std::to_string(response.compact_revision()) + ")";
    if (response.compact_revision() != 0) throw compacted_error(response.compact_revision(), what);
    throw net::error(errc::protocol_error, what);
  }
}

watch::~watch() {
  channel_->cancel(call_);
}

std::optional<std::vector<event>> watch::next(steady_time deadline) {
  for (;;) {
    if (!channel_->wait_readable(call_, deadline)) return std::nullopt;
    const auto message = channel_->read_message(call_, deadline);
    if (!message) {
      throw net::error(errc::protocol_error, std::string(watch_method) + " of '" + key_ +
                                                 "': expected events, got the end of the stream");
    }
    const auto response = decode<pb::WatchResponse>(*message, watch_method);
    if (response.canceled()) {
      compact_revision_ = response.compact_revision();
      const std::string what = std::string(watch_method) + " of '" + key_ +
                               "': expected events, got the watcher cancelled (" +
                               response.cancel_reason() + ", compact revision " +
                               std::to_string(response.compact_revision()) + ")";
      if (compact_revision_ != 0) throw compacted_error(compact_revision_, what);
      throw net::error(errc::protocol_error, what);
    }
    if (response.events_size() == 0) continue;  // a progress notification
    std::vector<event> events;
    events.reserve(static_cast<std::size_t>(response.events_size()));
    for (const auto& e : response.events()) {
      events.push_back(
          {e.type() == pb::Event::DELETE ? event::type::erase : event::type::put, from_pb(e.kv())});
    }
    return events;
  }
}

}  // namespace hwsync::net::etcd
