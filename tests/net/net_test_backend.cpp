// A lock backend for end-to-end tests of lease loss, loaded into a process
// with LD_PRELOAD: it registers the scheme "lease-test" (lock_backend.hpp,
// "Registration"), whose leases expire and whose renewals answer "not yours"
// once `lose_after_ms` (a URI query parameter) have passed since the
// acquisition. One process, one holder: nothing is shared between processes.
//   lease-test://?lose_after_ms=200
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "hwsync/net/lock_backend.hpp"

namespace {

using hwsync::net::fencing_token;

class expiring_lock final : public hwsync::net::backend_lock {
 public:
  explicit expiring_lock(std::chrono::milliseconds lose_after) : lose_after_(lose_after) {}

  std::optional<fencing_token> try_acquire(std::chrono::milliseconds) override {
    if (held_) return std::nullopt;
    held_ = true;
    acquired_at_ = std::chrono::steady_clock::now();
    return fencing_token(++counter_);
  }
  void wait_for_release(hwsync::net::steady_time) override {}
  bool renew(std::chrono::milliseconds, hwsync::net::steady_time) override {
    if (std::chrono::steady_clock::now() - acquired_at_ >= lose_after_) held_ = false;
    return held_;
  }
  bool release() override {
    const bool was = held_;
    held_ = false;
    return was;
  }
  bool lease_expires() const noexcept override { return true; }

 private:
  std::chrono::milliseconds lose_after_;
  std::chrono::steady_clock::time_point acquired_at_{};
  bool held_ = false;
  std::uint64_t counter_ = 0;
};

class expiring_backend final : public hwsync::net::lock_backend {
 public:
  explicit expiring_backend(std::chrono::milliseconds lose_after) : lose_after_(lose_after) {}
  std::unique_ptr<hwsync::net::backend_lock> open(std::string_view, std::string_view) override {
    return std::make_unique<expiring_lock>(lose_after_);
  }

 private:
  std::chrono::milliseconds lose_after_;
};

const hwsync::net::backend_registration registered{
    "lease-test",
    [](const hwsync::net::service_uri& uri) -> std::shared_ptr<hwsync::net::lock_backend> {
      const auto it = uri.query.find("lose_after_ms");
      if (it == uri.query.end()) {
        throw hwsync::net::error(hwsync::net::errc::bad_uri,
                                 "lease-test URI '" + uri.text + "': expected ?lose_after_ms=N");
      }
      return std::make_shared<expiring_backend>(std::chrono::milliseconds(std::stoll(it->second)));
    }};

}  // namespace
