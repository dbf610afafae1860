#include "hwsync/net/etcd_guarded_write.hpp"

#include <cstdint>

namespace hwsync::net::etcd {

guarded_store::guarded_store(std::string_view uri)
    : address_(parse_service_uri(uri)), client_(address_.endpoints) {}

bool guarded_store::put(std::string_view lock_name, fencing_token token, std::string_view key,
                        std::string_view value, steady_time deadline) {
  if (!token) return false;
  validate_lock_name(lock_name);
  std::string range = address_.key_prefix;
  range.append("/").append(lock_name).append("/");
  const auto revision = static_cast<std::int64_t>(token.value());
  range_options holder;
  holder.range_end = prefix_end(range);
  holder.min_create_revision = revision;
  holder.max_create_revision = revision;
  holder.limit = 1;
  holder.keys_only = true;
  const range_result found = client_.get(range, holder, deadline);
  if (found.kvs.empty()) return false;  // released or expired: not ours
  const txn_result r =
      client_.txn({compare::create_revision(found.kvs[0].key, compare::result::equal, revision)},
                  {operation::put(std::string(key), std::string(value))}, {}, deadline);
  return r.succeeded;
}

std::optional<std::string> guarded_store::get(std::string_view key, steady_time deadline) {
  const range_result r = client_.get(key, {}, deadline);
  if (r.kvs.empty()) return std::nullopt;
  return r.kvs[0].value;
}

}  // namespace hwsync::net::etcd
