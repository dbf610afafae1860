// etcd::session and etcd::election (hwsync/net/etcd_session.hpp,
// hwsync/net/etcd_election.hpp) against real etcd: the session keeps its
// lease and reports its loss (also to a campaign still waiting), the
// election serves candidates FIFO with create_revision tokens, observe sees
// every change, a session that expired while campaigning never becomes a
// phantom leader, a leader killed with -9 hands over at lease expiry, and a
// campaign survives the loss of the 3-member cluster's leader. etcd::mutex
// on a session: it excludes the etcd:// lock backend, and the session's
// loss ends every mutex and election on it, waiting ones included.
#include <signal.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "etcd_recipe_process.hpp"
#include "etcd_suite.hpp"
#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_election.hpp"
#include "hwsync/net/etcd_guarded_write.hpp"
#include "hwsync/net/etcd_mutex.hpp"
#include "hwsync/net/etcd_session.hpp"
#include "hwsync/net/lock_service.hpp"
#include "support/etcd_server.hpp"
#include "support/net_test.hpp"
#include "support/watchdog.hpp"

namespace {

using hwsync::test::eventually;

using namespace std::chrono_literals;
namespace net = hwsync::net;
namespace etcd = hwsync::net::etcd;
using hwsync::test::recipe_process;
using hwsync::test::watchdog;
using std::chrono::steady_clock;

using hwsync::test::keys_under;

class EtcdElection : public hwsync::test::single_etcd_suite {};

TEST_F(EtcdElection, SessionKeepsItsLeaseAliveBeyondItsTtl) {
  watchdog dog("SessionKeepsItsLeaseAliveBeyondItsTtl", 60s);
  etcd::client c(endpoints());
  etcd::session s(c, 2s);
  std::this_thread::sleep_for(s.ttl() * 2);  // two TTLs: only refreshes keep it
  EXPECT_FALSE(s.lost()) << s.lost_reason();
  EXPECT_TRUE(c.lease_time_to_live(s.lease()).has_value());
}

TEST_F(EtcdElection, SessionLossFiresItsStopTokenWithTheReason) {
  watchdog dog("SessionLossFiresItsStopTokenWithTheReason", 60s);
  etcd::client c(endpoints());
  etcd::session s(c, 3s);
  std::atomic<bool> fired{false};
  std::stop_callback on_lost(s.lost_token(), [&] { fired.store(true); });
  etcd::client other(endpoints());
  other.revoke_lease(s.lease());  // as if it expired
  ASSERT_TRUE(eventually([&] { return s.lost(); }));
  EXPECT_TRUE(fired.load());
  EXPECT_NE(s.lost_reason().find("is gone"), std::string::npos) << s.lost_reason();
  try {
    s.throw_if_lost("test");
    FAIL() << "expected lease_lost";
  } catch (const net::error& e) {
    EXPECT_EQ(e.code(), net::errc::lease_lost);
  }
}

TEST_F(EtcdElection, CampaignLeadsProclaimResignAndTokenIsCreateRevision) {
  watchdog dog("CampaignLeadsProclaimResign", 60s);
  etcd::client c(endpoints());
  etcd::session s(c, 10s);
  etcd::election e(s, "/elect/basic");
  EXPECT_FALSE(e.leader().has_value());
  ASSERT_TRUE(e.campaign("a"));
  const auto leader = e.leader();
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(leader->value, "a");
  EXPECT_EQ(*leader, *e.term());
  const auto stored = c.get(leader->key);
  ASSERT_EQ(stored.kvs.size(), 1u);
  EXPECT_EQ(stored.kvs[0].create_revision, e.term()->create_revision);
  EXPECT_EQ(stored.kvs[0].lease, s.lease());
  e.proclaim("b");
  EXPECT_EQ(e.leader()->value, "b");
  EXPECT_EQ(e.leader()->create_revision, leader->create_revision);  // same term
  EXPECT_TRUE(e.resign());
  EXPECT_FALSE(e.leader().has_value());
  EXPECT_FALSE(e.resign());
  EXPECT_THROW(e.proclaim("c"), net::error);
}

TEST_F(EtcdElection, CandidatesLeadInArrivalOrderWithIncreasingTokens) {
  watchdog dog("CandidatesLeadInArrivalOrder", 120s);
  etcd::client c(endpoints());
  etcd::session first_session(c, 10s);
  etcd::election first(first_session, "/elect/fifo");
  ASSERT_TRUE(first.campaign("first"));
  constexpr int candidates = 3;
  std::vector<std::promise<std::int64_t>> won(candidates);
  std::vector<std::promise<void>> resign(candidates);
  std::vector<std::thread> threads;
  for (int i = 0; i < candidates; ++i) {
    threads.emplace_back([&, i] {
      etcd::client mine(endpoints());
      etcd::session s(mine, 10s);
      etcd::election e(s, "/elect/fifo");
      e.campaign("c" + std::to_string(i));
      won[i].set_value(e.term()->create_revision);
      resign[i].get_future().wait();
      e.resign();
    });
    ASSERT_TRUE(eventually([&] { return keys_under(c, "/elect/fifo/") == i + 2; }));
  }
  std::int64_t previous = first.term()->create_revision;
  first.resign();
  for (int i = 0; i < candidates; ++i) {
    auto f = won[i].get_future();
    ASSERT_EQ(f.wait_for(60s), std::future_status::ready) << "candidate " << i;
    const std::int64_t token = f.get();
    EXPECT_GT(token, previous) << "candidate " << i;
    previous = token;
    // Nobody behind it leads while it does.
    EXPECT_EQ(first.leader()->value, "c" + std::to_string(i));
    resign[i].set_value();
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(keys_under(c, "/elect/fifo/"), 0);
}

TEST_F(EtcdElection, CampaignThatTimesOutReturnsFalseAndLeavesNoKey) {
  watchdog dog("CampaignThatTimesOut", 60s);
  etcd::client c(endpoints());
  etcd::session leader_session(c, 10s);
  etcd::election leader(leader_session, "/elect/timeout");
  ASSERT_TRUE(leader.campaign("leader"));
  etcd::session s(c, 10s);
  etcd::election e(s, "/elect/timeout");
  EXPECT_FALSE(e.campaign("late", steady_clock::now() + 300ms));
  EXPECT_FALSE(e.term().has_value());
  EXPECT_EQ(keys_under(c, "/elect/timeout/"), 1);
  leader.resign();
}

TEST_F(EtcdElection, ObserveSeesEveryChangeInOrder) {
  watchdog dog("ObserveSeesEveryChangeInOrder", 60s);
  etcd::client c(endpoints());
  etcd::election_observer observer(c, "/elect/observe");
  etcd::session sa(c, 10s), sb(c, 10s);
  etcd::election a(sa, "/elect/observe"), b(sb, "/elect/observe");
  ASSERT_TRUE(a.campaign("a"));
  a.proclaim("a2");
  std::thread queued([&] { b.campaign("b"); });
  ASSERT_TRUE(eventually([&] { return keys_under(c, "/elect/observe/") == 2; }));
  a.resign();
  queued.join();
  b.resign();
  std::vector<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    const auto change = observer.next(steady_clock::now() + 30s);
    ASSERT_TRUE(change.has_value()) << "change " << i;
    seen.push_back(change->has_value() ? (*change)->value : "(none)");
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"(none)", "a", "a2", "b", "(none)"}));
  EXPECT_FALSE(observer.next(steady_clock::now() + 100ms).has_value());
}

TEST_F(EtcdElection, SessionLostWhileCampaigningEndsTheCampaignWithLeaseLost) {
  watchdog dog("SessionLostWhileCampaigning", 60s);
  etcd::client c(endpoints());
  etcd::session leader_session(c, 10s);
  etcd::election leader(leader_session, "/elect/lost");
  ASSERT_TRUE(leader.campaign("leader"));
  etcd::session s(c, 3s);
  etcd::election e(s, "/elect/lost");
  std::promise<net::errc> outcome;
  std::thread campaigner([&] {
    try {
      e.campaign("waiter");
      outcome.set_value(net::errc{});
    } catch (const net::error& err) {
      outcome.set_value(err.code());
    }
  });
  ASSERT_TRUE(eventually([&] { return keys_under(c, "/elect/lost/") == 2; }));
  c.revoke_lease(s.lease());  // the session expires while its campaign waits
  auto f = outcome.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready) << "the campaign did not notice";
  EXPECT_EQ(f.get(), net::errc::lease_lost);
  campaigner.join();
  EXPECT_TRUE(s.lost());
  EXPECT_EQ(leader.leader()->value, "leader");
  leader.resign();
}

// etcd-io/etcd#11456 and its relatives: the session expired while the
// campaign waited, and the leader resigned at the same moment — the
// campaign must fail, not return leadership of a key that no longer
// exists. The session has not noticed its loss yet (its next keepalive is
// seconds away), so only the re-read of the candidate key stands between
// the campaign and a phantom leader.
TEST_F(EtcdElection, PhantomLeaderSessionExpiredWhileCampaigningIsAnError) {
  watchdog dog("PhantomLeader", 60s);
  etcd::client c(endpoints());
  etcd::session leader_session(c, 10s);
  etcd::election leader(leader_session, "/elect/phantom");
  ASSERT_TRUE(leader.campaign("leader"));
  etcd::session s(c, 30s);  // refreshes every 10 s: the loss goes unseen
  etcd::election e(s, "/elect/phantom");
  std::promise<net::errc> outcome;
  std::thread campaigner([&] {
    try {
      e.campaign("phantom");
      outcome.set_value(net::errc{});
    } catch (const net::error& err) {
      outcome.set_value(err.code());
    }
  });
  ASSERT_TRUE(eventually([&] { return keys_under(c, "/elect/phantom/") == 2; }));
  c.revoke_lease(s.lease());
  leader.resign();
  auto f = outcome.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(f.get(), net::errc::lease_lost) << "a campaign whose session expired returned";
  campaigner.join();
  EXPECT_FALSE(e.term().has_value());
  EXPECT_FALSE(leader.leader().has_value());
}

// The same bug across processes: the campaigner is frozen (SIGSTOP) past
// its TTL, its lease expires, the leader resigns, the campaigner resumes.
TEST_F(EtcdElection, PhantomLeaderPausedCampaignerPastItsTtlGetsAnError) {
  watchdog dog("PhantomLeaderPaused", 120s);
  etcd::client c(endpoints());
  etcd::session leader_session(c, 10s);
  etcd::election leader(leader_session, "/elect/paused");
  ASSERT_TRUE(leader.campaign("leader"));
  recipe_process child({"campaign", cluster().endpoint(0), "/elect/paused", "paused", "2"});
  ASSERT_EQ(child.read_line(60s), "campaigning");
  ASSERT_TRUE(eventually([&] { return keys_under(c, "/elect/paused/") == 2; }));
  child.signal(SIGSTOP);
  // Its lease expires unrenewed, taking its candidate key.
  ASSERT_TRUE(eventually([&] { return keys_under(c, "/elect/paused/") == 1; }));
  leader.resign();
  child.signal(SIGCONT);
  EXPECT_EQ(child.read_line(60s), "campaign=lease_lost");
  EXPECT_FALSE(leader.leader().has_value());
}

TEST_F(EtcdElection, LeaderKilledWithSigkillHandsOverAtLeaseExpiry) {
  watchdog dog("LeaderKilledWithSigkill", 120s);
  recipe_process child({"lead", cluster().endpoint(0), "/elect/killed", "child", "2"});
  const std::string line = child.read_line(60s);
  ASSERT_EQ(line.rfind("leader ", 0), 0u) << line;
  const std::int64_t dead_token = std::stoll(line.substr(7));
  etcd::client c(endpoints());
  etcd::election_observer observer(c, "/elect/killed");
  etcd::session s(c, 10s);
  etcd::election e(s, "/elect/killed");
  EXPECT_FALSE(e.campaign("successor", steady_clock::now() + 200ms));
  child.signal(SIGKILL);
  child.wait();
  ASSERT_TRUE(e.campaign("successor", steady_clock::now() + 30s));
  EXPECT_GT(e.term()->create_revision, dead_token);
  // The observer saw the dead leader, then the successor (its campaign
  // that timed out never led, so it is not a change).
  const auto first = observer.next(steady_clock::now() + 30s);
  ASSERT_TRUE(first && first->has_value());
  EXPECT_EQ((*first)->value, "child");
  auto next = observer.next(steady_clock::now() + 30s);
  ASSERT_TRUE(next.has_value());
  if (!next->has_value()) next = observer.next(steady_clock::now() + 30s);  // nobody, briefly
  ASSERT_TRUE(next && next->has_value());
  EXPECT_EQ((*next)->value, "successor");
  e.resign();
}

TEST_F(EtcdElection, CandidateOfAClosedSessionCannotCampaign) {
  etcd::client c(endpoints());
  etcd::session s(c, 10s);
  etcd::election e(s, "/elect/closed");
  s.close();
  EXPECT_TRUE(e.lost());
  try {
    e.campaign("x");
    FAIL() << "expected lease_lost";
  } catch (const net::error& err) {
    EXPECT_EQ(err.code(), net::errc::lease_lost);
    EXPECT_NE(std::string(err.what()).find("closed"), std::string::npos) << err.what();
  }
}

// The 3-member cluster loses its Raft leader while a candidate waits: the
// campaign (its reads, its watch) and its session's keepalives fail over to
// a surviving member, the lease survives, and the candidate leads once the
// old leader resigns.
TEST(EtcdElectionCluster, ClusterLeaderKilledDuringACampaign) {
  watchdog dog("ClusterLeaderKilledDuringACampaign", 180s);
  hwsync::test::etcd_cluster cluster(3);
  const std::size_t raft_leader = cluster.wait_for_leader();
  // Every client starts on the Raft leader, so its loss breaks their
  // connections.
  std::vector<std::string> endpoints{cluster.endpoint(raft_leader)};
  for (std::size_t m = 0; m < cluster.size(); ++m) {
    if (m != raft_leader) endpoints.push_back(cluster.endpoint(m));
  }
  etcd::client a_client(endpoints), b_client(endpoints);
  etcd::session a_session(a_client, 5s), b_session(b_client, 5s);
  etcd::election a(a_session, "/elect/cluster"), b(b_session, "/elect/cluster");
  ASSERT_TRUE(a.campaign("a"));
  std::promise<std::int64_t> won;
  std::thread campaigner([&] {
    try {
      b.campaign("b", steady_clock::now() + 60s);
      won.set_value(b.term() ? b.term()->create_revision : -1);
    } catch (const net::error& e) {
      ADD_FAILURE() << "campaign failed: " << e.what();
      won.set_value(-2);
    }
  });
  ASSERT_TRUE(eventually([&] {
    try {
      return keys_under(a_client, "/elect/cluster/") == 2;
    } catch (const net::error&) {
      return false;
    }
  }));
  cluster.kill(raft_leader);
  cluster.wait_for_leader();
  // A's resignation, through a client whose connection just died: retried
  // until it lands on a surviving member.
  ASSERT_TRUE(eventually([&] {
    try {
      a.resign();
      return true;
    } catch (const net::error&) {
      return false;
    }
  }));
  auto f = won.get_future();
  ASSERT_EQ(f.wait_for(90s), std::future_status::ready);
  const std::int64_t token = f.get();
  campaigner.join();
  EXPECT_GT(token, 0);
  EXPECT_FALSE(b_session.lost()) << b_session.lost_reason();
  EXPECT_FALSE(a_session.lost()) << a_session.lost_reason();
  EXPECT_NE(b_client.current_endpoint(), cluster.endpoint(raft_leader));
  EXPECT_EQ(b.leader()->value, "b");
  b.resign();
}

}  // namespace

namespace {

// etcd::mutex (hwsync/net/etcd_mutex.hpp): the lock algorithm on a session.
class EtcdMutex : public EtcdElection {};

TEST_F(EtcdMutex, MutexOnASessionExcludesTheLockBackendAndIsFenced) {
  watchdog dog("MutexOnASessionExcludesTheLockBackend", 60s);
  etcd::client c(endpoints());
  etcd::session s(c, 10s);
  etcd::mutex m(s, "/hwsync/locks/shared");
  ASSERT_TRUE(m.lock(steady_clock::now() + 30s));
  net::lock_service service(cluster().uri());
  net::distributed_lock other(service, "shared", {.ttl = 5s});
  EXPECT_FALSE(other.try_lock());
  etcd::guarded_store store(cluster().uri());
  EXPECT_TRUE(store.put("shared", net::fencing_token(static_cast<std::uint64_t>(m.token())),
                        "/shared/resource", "mutex"));
  const std::int64_t held_token = m.token();
  EXPECT_TRUE(m.unlock());
  EXPECT_FALSE(m.unlock());
  ASSERT_TRUE(other.try_lock());
  EXPECT_GT(other.token().value(), static_cast<std::uint64_t>(held_token));
  EXPECT_FALSE(m.try_lock());
  EXPECT_EQ(keys_under(c, "/hwsync/locks/shared/"), 1);  // the refused try withdrew
  other.unlock();
  ASSERT_TRUE(m.try_lock());
  EXPECT_GT(static_cast<std::uint64_t>(m.token()), other.token().value());
  m.unlock();
}

// One session, a held mutex, a leading election and a waiting mutex: its
// loss ends all three, the waiting one included (etcd-io/etcd#11456).
TEST_F(EtcdMutex, SessionLossFiresLostOnEveryMutexAndElectionOnIt) {
  watchdog dog("SessionLossFiresLostOnEveryMutexAndElection", 60s);
  etcd::client c(endpoints());
  etcd::session other_session(c, 10s);
  etcd::mutex blocker(other_session, "/mutex/busy");
  ASSERT_TRUE(blocker.lock());

  etcd::session s(c, 3s);
  etcd::mutex held(s, "/mutex/held");
  etcd::election leading(s, "/elect/with-mutex");
  etcd::mutex waiting(s, "/mutex/busy");
  ASSERT_TRUE(held.lock());
  ASSERT_TRUE(leading.campaign("me"));
  std::atomic<int> fired{0};
  std::stop_callback on_held_lost(held.lost_token(), [&] { fired.fetch_add(1); });
  std::stop_callback on_leader_lost(leading.lost_token(), [&] { fired.fetch_add(1); });
  std::promise<net::errc> outcome;
  std::thread waiter([&] {
    try {
      waiting.lock(steady_clock::now() + 60s);
      outcome.set_value(net::errc{});
    } catch (const net::error& e) {
      outcome.set_value(e.code());
    }
  });
  ASSERT_TRUE(eventually([&] { return keys_under(c, "/mutex/busy/") == 2; }));
  c.revoke_lease(s.lease());
  auto f = outcome.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(f.get(), net::errc::lease_lost);
  waiter.join();
  EXPECT_EQ(fired.load(), 2);
  EXPECT_TRUE(held.lost());
  EXPECT_TRUE(leading.lost());
  EXPECT_FALSE(held.unlock());  // its key went with the lease
  EXPECT_FALSE(leading.leader().has_value());
  EXPECT_TRUE(blocker.unlock());
}

}  // namespace
