// etcd::session's shared lease keeper (hwsync/net/etcd_session.hpp,
// net/src/etcd/lease_keeper.hpp) against a real etcd: many sessions on one
// client cost one thread, not one each, and all stay alive past two TTLs;
// a lease revoked behind one session's back ends that session only; and
// sessions destroyed while their refreshes are in flight (some of them
// being declared lost at that moment) leave nothing dangling (run it under
// the tsan preset: a use-after-free or a race there is the failure).
#include <dirent.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "etcd_suite.hpp"
#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_session.hpp"
#include "support/net_test.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
namespace net = hwsync::net;
namespace etcd = hwsync::net::etcd;
using hwsync::test::eventually;
using hwsync::test::watchdog;
using std::chrono::steady_clock;

class EtcdSession : public hwsync::test::single_etcd_suite {};

// Entries of /proc/self/task: the process's threads.
std::size_t thread_count() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  std::size_t n = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

TEST_F(EtcdSession, TwoHundredSessionsOnOneClientShareOneKeeperThreadAndAllOutliveTwoTtls) {
  watchdog dog("TwoHundredSessionsOnOneClientShareOneKeeperThread", 120s);
  constexpr int sessions = 200;
  std::optional<etcd::client> c(std::in_place, endpoints());
  c->get("/session/warm-up");  // the ring's loop thread and the connection exist
  const std::size_t before = thread_count();
  ASSERT_GT(before, 0u) << "expected /proc/self/task to list this process's threads";

  std::vector<std::unique_ptr<etcd::session>> all;
  all.push_back(std::make_unique<etcd::session>(*c, 2s));
  const std::size_t with_one = thread_count();
  EXPECT_LE(with_one, before + 1) << "one session: at most the client's keeper thread more";
  while (all.size() < sessions) all.push_back(std::make_unique<etcd::session>(*c, 2s));
  EXPECT_EQ(thread_count(), with_one)
      << "expected the thread count not to grow with the number of sessions";

  const std::chrono::seconds ttl = all.front()->ttl();
  std::this_thread::sleep_for(2 * ttl + 500ms);  // two TTLs: only refreshes keep them
  for (const auto& s : all) {
    ASSERT_FALSE(s->lost()) << "lease " << s->lease() << ": " << s->lost_reason();
    ASSERT_TRUE(c->lease_time_to_live(s->lease()).has_value()) << "lease " << s->lease();
  }
  EXPECT_EQ(thread_count(), with_one);

  std::vector<std::int64_t> leases;
  for (const auto& s : all) leases.push_back(s->lease());
  all.clear();  // each destructor revokes its lease
  for (const std::int64_t lease : leases) {
    EXPECT_FALSE(c->lease_time_to_live(lease).has_value()) << "lease " << lease << " not revoked";
  }
  c.reset();  // the keeper goes with its client
  EXPECT_EQ(thread_count(), before);
}

TEST_F(EtcdSession, LeaseRevokedBehindOneSessionsBackFiresThatSessionsLostOnly) {
  watchdog dog("LeaseRevokedBehindOneSessionsBackFiresThatSessionsLostOnly", 60s);
  etcd::client c(endpoints());
  std::vector<std::unique_ptr<etcd::session>> all;
  for (int i = 0; i < 3; ++i) all.push_back(std::make_unique<etcd::session>(c, 3s));
  std::atomic<int> fired[3] = {0, 0, 0};
  std::vector<std::unique_ptr<std::stop_callback<std::function<void()>>>> on_lost;
  for (int i = 0; i < 3; ++i) {
    on_lost.push_back(std::make_unique<std::stop_callback<std::function<void()>>>(
        all[i]->lost_token(), std::function<void()>([&fired, i] { fired[i].fetch_add(1); })));
  }

  etcd::client other(endpoints());
  other.revoke_lease(all[1]->lease());  // as if it expired
  ASSERT_TRUE(eventually([&] { return all[1]->lost(); })) << "the revoked session never noticed";
  EXPECT_NE(all[1]->lost_reason().find("is gone"), std::string::npos) << all[1]->lost_reason();
  EXPECT_EQ(fired[1].load(), 1);

  // Two more refresh periods of the others on the same stream: still alive.
  std::this_thread::sleep_for(2 * all[0]->ttl());
  for (int i : {0, 2}) {
    EXPECT_FALSE(all[i]->lost()) << "session " << i << ": " << all[i]->lost_reason();
    EXPECT_EQ(fired[i].load(), 0) << "session " << i;
    EXPECT_TRUE(c.lease_time_to_live(all[i]->lease()).has_value()) << "session " << i;
  }
  on_lost.clear();
}

// Sessions destroyed at about the moment their first refresh is sent
// (the sleep sweeps across that moment round by round), half of them
// revoked behind their back just before, so the keeper may be answering,
// timing out or firing a loss for a session that is being destroyed.
TEST_F(EtcdSession, DestroyingSessionsWhileRefreshesAreInFlightIsSafe) {
  watchdog dog("DestroyingSessionsWhileRefreshesAreInFlightIsSafe", 120s);
  constexpr int rounds = 12;
  constexpr int per_round = 16;
  const auto give_up = steady_clock::now() + 40s;
  etcd::client c(endpoints());
  etcd::client other(endpoints());
  int lost_seen = 0;
  int round = 0;
  for (; round < rounds && steady_clock::now() < give_up; ++round) {
    std::vector<std::unique_ptr<etcd::session>> all;
    std::atomic<int> callbacks{0};
    std::vector<std::unique_ptr<std::stop_callback<std::function<void()>>>> on_lost;
    for (int i = 0; i < per_round; ++i) {
      all.push_back(std::make_unique<etcd::session>(c, 1s));
      on_lost.push_back(std::make_unique<std::stop_callback<std::function<void()>>>(
          all.back()->lost_token(),
          std::function<void()>([&callbacks] { callbacks.fetch_add(1); })));
    }
    const auto period = std::chrono::duration_cast<std::chrono::milliseconds>(all[0]->ttl()) / 3;
    for (int i = 0; i < per_round; i += 2) other.revoke_lease(all[i]->lease());
    // From 40 ms before the first refresh to 40 ms after, across the rounds.
    std::this_thread::sleep_for(period - 40ms + round * 80ms / rounds);
    std::thread half([&] {
      for (int i = 0; i < per_round; i += 2) {
        on_lost[i].reset();
        all[i].reset();
      }
    });
    for (int i = 1; i < per_round; i += 2) {
      lost_seen += all[i]->lost() ? 1 : 0;
      on_lost[i].reset();
      all[i].reset();
    }
    half.join();
    EXPECT_LE(callbacks.load(), per_round);
  }
  EXPECT_GE(round, 3) << "expected at least 3 rounds within the time bound";
  EXPECT_EQ(lost_seen, 0) << "a session whose lease was not revoked was lost";
  // The keeper still serves the client afterwards.
  etcd::session after(c, 2s);
  std::this_thread::sleep_for(after.ttl() + 500ms);
  EXPECT_FALSE(after.lost()) << after.lost_reason();
}

}  // namespace
