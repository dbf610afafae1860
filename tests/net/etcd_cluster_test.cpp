// A real 3-member etcd cluster (three processes, tests/support/etcd_server.hpp)
// under the etcd client: writes through one member are read through the
// others; the fixture finds the leader; a killed member's clients move to
// the next endpoint; a SIGSTOPped member times out instead of hanging; a
// restarted member rejoins with its data.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/fenced_resource.hpp"
#include "hwsync/net/lock_service.hpp"
#include "support/etcd_server.hpp"
#include "support/net_test.hpp"
#include "support/watchdog.hpp"

using hwsync::test::deadline_in;
using hwsync::test::expect_net_error;
using hwsync::test::net_error_of;

namespace {

using namespace std::chrono_literals;
namespace net = hwsync::net;
namespace etcd = hwsync::net::etcd;
using hwsync::test::watchdog;

TEST(EtcdCluster, ThreeMembersFailoverAndRejoin) {
  watchdog dog("ThreeMembersFailoverAndRejoin", 240s);
  hwsync::test::etcd_cluster cluster(3);
  ASSERT_EQ(cluster.size(), 3u);
  const std::size_t leader = cluster.wait_for_leader();
  for (std::size_t i = 0; i < 3; ++i) EXPECT_TRUE(cluster.healthy(i)) << "member " << i;

  // Linearizable reads: a write through member 0 is seen through 1 and 2.
  {
    etcd::client writer({cluster.endpoint(0)});
    const auto put = writer.put("/cluster/k", "v1");
    for (std::size_t i = 1; i < 3; ++i) {
      etcd::client reader({cluster.endpoint(i)});
      const auto got = reader.get("/cluster/k");
      ASSERT_EQ(got.kvs.size(), 1u) << "member " << i;
      EXPECT_EQ(got.kvs[0].value, "v1");
      EXPECT_EQ(got.kvs[0].mod_revision, put.revision);
    }
  }

  // A client connected to the leader: kill the leader; the call in flight
  // or the next one fails, then the client moves on to a live member.
  std::vector<std::string> endpoints;
  endpoints.push_back(cluster.endpoint(leader));
  for (std::size_t i = 0; i < 3; ++i) {
    if (i != leader) endpoints.push_back(cluster.endpoint(i));
  }
  etcd::client c(endpoints, {.connect_timeout = 2000ms, .call_timeout = 10000ms});
  const auto before = c.put("/cluster/k", "v2");
  EXPECT_EQ(c.current_endpoint(), cluster.endpoint(leader));
  cluster.kill(leader);

  bool recovered = false;
  std::int64_t last_revision = before.revision;
  for (int attempt = 0; attempt < 40 && !recovered; ++attempt) {
    try {
      const auto after = c.put("/cluster/k", "v3", 0, deadline_in(5s));
      EXPECT_GT(after.revision, last_revision);
      last_revision = after.revision;
      recovered = true;
    } catch (const net::error& e) {
      // The dead connection, then "no leader" (UNAVAILABLE) or a timeout
      // while the two survivors elect one.
      EXPECT_TRUE(e.code() == net::errc::closed_by_peer ||
                  e.code() == net::errc::connection_reset ||
                  e.code() == net::errc::connection_refused || e.code() == net::errc::timed_out)
          << e.what();
      std::this_thread::sleep_for(250ms);
    }
  }
  ASSERT_TRUE(recovered) << "the client never wrote through a surviving member";
  EXPECT_NE(c.current_endpoint(), cluster.endpoint(leader));
  const std::size_t new_leader = cluster.wait_for_leader();
  EXPECT_NE(new_leader, leader);

  // A frozen member: a call to it times out at its deadline, no hang.
  const std::size_t frozen =
      (new_leader + 1) % 3 == leader ? (new_leader + 2) % 3 : (new_leader + 1) % 3;
  ASSERT_NE(frozen, leader);
  ASSERT_NE(frozen, new_leader);
  {
    etcd::client to_frozen({cluster.endpoint(frozen)});
    to_frozen.get("/cluster/k");  // connected while it was alive
    cluster.sigstop(frozen);
    try {
      to_frozen.get("/cluster/k", {}, deadline_in(500ms));
      ADD_FAILURE() << "expected a read from a SIGSTOPped member to time out";
    } catch (const net::error& e) {
      EXPECT_EQ(e.code(), net::errc::timed_out) << e.what();
    }
    cluster.sigcont(frozen);
  }

  // The killed member rejoins with its data and catches up.
  cluster.restart(leader);
  etcd::client rejoined({cluster.endpoint(leader)});
  bool caught_up = false;
  for (int attempt = 0; attempt < 100 && !caught_up; ++attempt) {
    try {
      const auto got = rejoined.get("/cluster/k", {}, deadline_in(5s));
      caught_up = got.kvs.size() == 1 && got.kvs[0].value == "v3";
    } catch (const net::error&) {
    }
    if (!caught_up) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(caught_up);
}

TEST(EtcdCluster, LeaderKilledWhileLocksAreHeldAndAwaited) {
  watchdog dog("LeaderKilledWhileLocksAreHeldAndAwaited", 280s);
  hwsync::test::etcd_cluster cluster(3);
  const std::size_t leader = cluster.wait_for_leader();
  // The leader first, so every client connects to the member that dies.
  // (append, not operator+: GCC 12's false -Wrestrict on string temporaries)
  std::string uri = "etcd://";
  uri.append(cluster.endpoint(leader));
  for (std::size_t i = 0; i < 3; ++i) {
    if (i != leader) uri.append(",").append(cluster.endpoint(i));
  }

  net::fenced_resource<long> counter;
  std::mutex tokens_mutex;
  std::vector<std::uint64_t> tokens_in_write_order;
  std::atomic<int> holders{0}, most_holders{0}, accepted{0}, errors{0};
  std::atomic<bool> killed{false};
  constexpr int threads = 3, rounds_after_kill = 3;
  const auto give_up = std::chrono::steady_clock::now() + 150s;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      net::lock_service service(uri);  // a connection per thread
      net::distributed_lock lock(service, "failover", {.ttl = 5s});
      int after_kill = 0;
      while (after_kill < rounds_after_kill && std::chrono::steady_clock::now() < give_up) {
        // Counted only if it began after the kill: its write comes after the
        // 15 accepted before it.
        const bool began_after_kill = killed.load();
        try {
          lock.lock();
        } catch (const net::error&) {
          errors++;  // the connection died or no leader yet: try again
          std::this_thread::sleep_for(100ms);
          continue;
        }
        const int now_holding = ++holders;
        int seen = most_holders.load();
        while (now_holding > seen && !most_holders.compare_exchange_weak(seen, now_holding)) {
        }
        if (counter.write(lock.token(), [&](long& v) {
              ++v;
              std::lock_guard g(tokens_mutex);
              tokens_in_write_order.push_back(lock.token().value());
            })) {
          accepted++;
        }
        std::this_thread::sleep_for(5ms);
        --holders;
        try {
          lock.unlock();
        } catch (const net::error&) {
          errors++;
        }
        if (began_after_kill) after_kill++;
      }
    });
  }
  // Let the three hand the lock around, then kill the leader under them.
  while (accepted.load() < 15 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  cluster.kill(leader);
  killed = true;
  for (auto& w : workers) w.join();

  EXPECT_EQ(most_holders.load(), 1) << "two holders at once";
  EXPECT_EQ(counter.read([](const long& v) { return v; }), accepted.load());
  EXPECT_EQ(counter.rejected_writes(), 0u);
  ASSERT_GE(accepted.load(), 15 + threads * rounds_after_kill)
      << "the clients did not get through the failover (errors: " << errors.load() << ")";
  for (std::size_t i = 1; i < tokens_in_write_order.size(); ++i) {
    EXPECT_GT(tokens_in_write_order[i], tokens_in_write_order[i - 1]) << "at write " << i;
  }
  EXPECT_NE(cluster.wait_for_leader(), leader);
}

}  // namespace
