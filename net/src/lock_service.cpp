// net::lock_service: a URI, parsed once, and the backend its scheme names.
#include "hwsync/net/lock_service.hpp"

#include <cstdlib>

#include "internal.hpp"

namespace hwsync::net {

std::string lock_service::default_uri() {
  if (const char* configured = std::getenv("HWSYNC_LOCK_SERVICE");
      configured != nullptr && *configured != '\0') {
    return configured;
  }
  // XDG_RUNTIME_DIR is per user, on tmpfs, and cleared at logout; /tmp is
  // the fallback where there is none (containers, cron).
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR");
      runtime != nullptr && runtime[0] == '/') {
    return std::string("file://") + runtime + "/hwsync-locks";
  }
  return "file:///tmp/hwsync-locks";
}

lock_service::lock_service() : lock_service(default_uri()) {}

lock_service::lock_service(std::string_view text)
    : uri_(std::make_shared<const service_uri>(service_uri::parse(text))) {
  const auto factory = detail::find_backend(uri_->scheme);
  if (!factory) {
    if (uri_->scheme == "etcd" || uri_->scheme == "redis") {
      throw error(errc::not_built, "lock service URI '" + uri_->text + "': the " + uri_->scheme +
                                       " backend is not built into this libhwsync_net yet; "
                                       "file:///dir works everywhere");
    }
    std::string known;
    for (const auto& scheme : registered_schemes()) {
      known.append(known.empty() ? "" : ", ").append(scheme).append("://");
    }
    throw error(errc::bad_uri, "lock service URI '" + uri_->text + "': expected one of " + known +
                                   ", got scheme '" + uri_->scheme + "'");
  }
  backend_ = factory(*uri_);
}

}  // namespace hwsync::net
