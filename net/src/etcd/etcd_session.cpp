// etcd::session: a lease granted here and kept alive by the client's lease
// keeper (etcd/lease_keeper.hpp), which also declares it lost.
#include "hwsync/net/etcd_session.hpp"

#include <utility>

#include "etcd/lease_keeper.hpp"

namespace hwsync::net::etcd {

session::session(client& c, std::chrono::seconds ttl, steady_time deadline) : client_(c) {
  // Before the grant is sent: the lease is certainly alive until this
  // moment + its TTL.
  const steady_time asked = std::chrono::steady_clock::now();
  const lease_grant granted = client_.grant_lease(ttl, deadline);
  lease_ = granted.id;
  ttl_ = granted.ttl;
  state_ = std::make_shared<detail::lease_state>(lease_, ttl_);
  client_.keeper().add(state_, asked);
}

session::~session() {
  client_.keeper().remove(lease_);
  if (!lost()) close();
}

bool session::lost() const noexcept {
  return state_->lost.load(std::memory_order_acquire);
}

std::string session::lost_reason() const {
  return state_->reason();
}

std::stop_token session::lost_token() const noexcept {
  return state_->lost_source.get_token();
}

void session::throw_if_lost(const std::string& what) const {
  if (!lost()) return;
  throw net::error(errc::lease_lost, what + ": expected the session's lease " +
                                         std::to_string(lease_) + " alive, got the session lost (" +
                                         lost_reason() + ")");
}

void session::close() {
  if (lost()) return;
  client_.keeper().remove(lease_);  // no refresh of a lease being revoked
  state_->mark_lost("closed");
  // Bounded by the TTL: by then the lease has expired by itself anyway.
  try {
    client_.revoke_lease(lease_, std::chrono::steady_clock::now() + ttl_);
  } catch (const net::error&) {
  }
}

}  // namespace hwsync::net::etcd
