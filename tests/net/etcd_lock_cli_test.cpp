// hwsync-lock with --service etcd://: the CLI end to end against a real
// single-member etcd. Tokens are the lock key's create_revision and strictly
// increase across runs; a lock held elsewhere times out with 75; an etcd
// that stops answering (SIGSTOP) past the TTL makes the CLI terminate its
// command and exit 76; an endpoint nobody listens on exits 69.
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "etcd_suite.hpp"
#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/lock_service.hpp"
#include "support/child_process.hpp"
#include "support/server_process.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
namespace net = hwsync::net;
using hwsync::test::run_child;
using hwsync::test::watchdog;

std::string cli() {
  const std::string p = hwsync::test::env_path("HWSYNC_LOCK_CLI");
  if (p.empty()) throw std::runtime_error("HWSYNC_LOCK_CLI is not set (run through ctest)");
  return p;
}

class EtcdLockCli : public hwsync::test::single_etcd_suite {
 protected:
  static std::vector<std::string> with_lock(const std::string& name,
                                            std::vector<std::string> command,
                                            std::vector<std::string> options = {}) {
    std::vector<std::string> argv{cli(), "--service", cluster().uri()};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back(name);
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }
  static std::int64_t keys_of(const std::string& name) {
    net::etcd::client c(endpoints());
    return hwsync::test::keys_under(c, "/hwsync/locks/" + name + "/");
  }
};

std::int64_t token_in(const std::string& output) {
  const auto at = output.find("token=");
  if (at == std::string::npos) return -1;
  return std::stoll(output.substr(at + 6));
}

TEST_F(EtcdLockCli, ExportsStrictlyIncreasingCreateRevisionsAsTokens) {
  watchdog dog("etcd cli tokens", 60s);
  const std::vector<std::string> echo{"/bin/sh", "-c", "echo token=$HWSYNC_FENCING_TOKEN"};
  const auto first = run_child(with_lock("cli-job", echo));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto second = run_child(with_lock("cli-job", echo));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_GT(token_in(first.output), 0) << first.output;
  EXPECT_GT(token_in(second.output), token_in(first.output)) << second.output;
  EXPECT_EQ(keys_of("cli-job"), 0) << "the CLI deletes its key when the command ends";
}

TEST_F(EtcdLockCli, ALockHeldElsewhereTimesOutWith75AndLeavesNoWaiterKey) {
  watchdog dog("etcd cli timeout", 60s);
  net::lock_service service(cluster().uri());
  net::distributed_lock holder(service, "cli-busy", {.ttl = 10s});
  holder.lock();
  const auto r = run_child(with_lock("cli-busy", {"/bin/true"}, {"--timeout", "300ms"}));
  EXPECT_EQ(r.exit_code, 75) << r.output;
  EXPECT_EQ(keys_of("cli-busy"), 1) << "only the holder's key is left";
  holder.unlock();
  const auto free = run_child(with_lock("cli-busy", {"/bin/true"}, {"--timeout", "0"}));
  EXPECT_EQ(free.exit_code, 0) << free.output;
}

TEST_F(EtcdLockCli, AnEtcdStoppedPastTheTtlTerminatesTheCommandAndExitsWith76) {
  watchdog dog("etcd cli lease lost", 120s);
  const std::string child = hwsync::test::env_path("HWSYNC_NET_LOCK_CHILD");
  ASSERT_FALSE(child.empty()) << "run through ctest";
  hwsync::test::child_result r;
  std::thread cli_thread([&] {
    r = run_child(with_lock("cli-lost", {child, "wait-term", "-", "-"}, {"--ttl", "2s"}));
  });
  // Held once the key exists; then etcd stops answering for longer than the
  // TTL, so the CLI cannot prove its lease alive and must give the lock up.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (keys_of("cli-lost") == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_EQ(keys_of("cli-lost"), 1);
  cluster().sigstop(0);
  std::this_thread::sleep_for(3500ms);
  cluster().sigcont(0);
  cli_thread.join();
  EXPECT_EQ(r.exit_code, 76) << r.output;
  EXPECT_NE(r.output.find("got SIGTERM"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lease lost"), std::string::npos) << r.output;
}

TEST_F(EtcdLockCli, AnEndpointNobodyListensOnExitsWith69AndSaysWhere) {
  watchdog dog("etcd cli refused", 60s);
  const std::string uri = "etcd://127.0.0.1:" + std::to_string(hwsync::test::free_local_port());
  const auto r = run_child({cli(), "--service", uri, "--timeout", "2s", "x", "--", "/bin/true"});
  EXPECT_EQ(r.exit_code, 69) << r.output;
  EXPECT_NE(r.output.find("127.0.0.1"), std::string::npos) << r.output;
}

}  // namespace
