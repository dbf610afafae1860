// The etcd client (hwsync/net/etcd_client.hpp: gRPC over HTTP/2 on the
// ring) against a real single-member etcd (tests/support/etcd_server.hpp):
// KV and txn round trips, a lease granted, kept alive and expiring, a watch
// seeing a put and a delete, etcd's refusals as typed grpc_errors, many
// threads multiplexing on one connection; and without etcd: a refused
// connection, a fake server that answers bytes that are not HTTP/2, and one
// that hangs up.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/net/etcd_client.hpp"
#include "support/etcd_server.hpp"
#include "support/net_test.hpp"
#include "support/redis_server.hpp"  // free_local_port
#include "support/watchdog.hpp"

using hwsync::test::deadline_in;
using hwsync::test::expect_net_error;
using hwsync::test::net_error_of;

namespace {

using hwsync::test::eventually;

using namespace std::chrono_literals;
namespace net = hwsync::net;
namespace etcd = hwsync::net::etcd;
using hwsync::test::watchdog;

// Every error message says what was expected and what came instead; the
// message is kept in the test report (--gtest_output=xml) for reading.
void expect_explains(const std::string& what) {
  EXPECT_NE(what.find("expected"), std::string::npos) << what;
  ::testing::Test::RecordProperty("message", what);
}

// This process's established TCP connections to 127.0.0.1:`port` (its
// socket inodes matched against /proc/net/tcp).
int connections_to(int port) {
  std::set<std::string> inodes;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(fd.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) {
      inodes.insert(target.substr(8, target.size() - 9));
    }
  }
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);  // header
  char remote_port[8];
  std::snprintf(remote_port, sizeof remote_port, ":%04X", port);
  int n = 0;
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
        timeout >> inode;
    if (state == "01" && remote.size() >= 5 && remote.substr(remote.size() - 5) == remote_port &&
        inodes.count(inode) != 0) {
      ++n;
    }
  }
  return n;
}

class EtcdClient : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new hwsync::test::etcd_cluster(1); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  etcd::client make_client() { return etcd::client({cluster_->endpoint(0)}); }
  // A key prefix of its own per test, so tests never see each other's keys.
  std::string prefix() const {
    return std::string("/hwsync-test/") +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  }

  static hwsync::test::etcd_cluster* cluster_;
};
hwsync::test::etcd_cluster* EtcdClient::cluster_ = nullptr;

TEST_F(EtcdClient, PutRangeDeleteRoundTrip) {
  watchdog dog("PutRangeDeleteRoundTrip", 60s);
  etcd::client c = make_client();
  const std::string k = prefix() + "a";
  const auto put = c.put(k, "one");
  EXPECT_GT(put.revision, 0);

  const auto got = c.get(k);
  ASSERT_EQ(got.kvs.size(), 1u);
  EXPECT_EQ(got.kvs[0].key, k);
  EXPECT_EQ(got.kvs[0].value, "one");
  EXPECT_EQ(got.kvs[0].create_revision, put.revision);
  EXPECT_EQ(got.kvs[0].version, 1);

  const auto put2 = c.put(k, "two");
  EXPECT_GT(put2.revision, put.revision);
  const auto got2 = c.get(k);
  ASSERT_EQ(got2.kvs.size(), 1u);
  EXPECT_EQ(got2.kvs[0].value, "two");
  EXPECT_EQ(got2.kvs[0].create_revision, put.revision);  // same key incarnation
  EXPECT_EQ(got2.kvs[0].mod_revision, put2.revision);

  const auto erased = c.erase(k);
  EXPECT_EQ(erased.deleted, 1);
  EXPECT_TRUE(c.get(k).kvs.empty());
  EXPECT_EQ(c.erase(k).deleted, 0);
}

TEST_F(EtcdClient, PrefixRangeSortedByCreateRevision) {
  watchdog dog("PrefixRangeSortedByCreateRevision", 60s);
  etcd::client c = make_client();
  const std::string p = prefix();
  for (const char* name : {"c", "a", "b"}) c.put(p + name, name);
  etcd::range_options o;
  o.range_end = etcd::prefix_end(p);
  o.sort = etcd::range_options::order::ascending_create;
  const auto r = c.get(p, o);
  ASSERT_EQ(r.kvs.size(), 3u);
  EXPECT_EQ(r.kvs[0].value, "c");
  EXPECT_EQ(r.kvs[1].value, "a");
  EXPECT_EQ(r.kvs[2].value, "b");
  EXPECT_EQ(r.count, 3);
  EXPECT_EQ(c.erase(p, etcd::prefix_end(p)).deleted, 3);
}

TEST_F(EtcdClient, TxnCreatesOnlyIfAbsent) {
  watchdog dog("TxnCreatesOnlyIfAbsent", 60s);
  etcd::client c = make_client();
  const std::string k = prefix() + "lock";
  const auto absent = etcd::compare::create_revision(k, etcd::compare::result::equal, 0);
  const auto first = c.txn({absent}, {etcd::operation::put(k, "me")}, {etcd::operation::get(k)});
  EXPECT_TRUE(first.succeeded);
  ASSERT_EQ(first.results.size(), 1u);
  EXPECT_EQ(first.results[0].what, etcd::operation::kind::put);

  const auto second =
      c.txn({absent}, {etcd::operation::put(k, "other")}, {etcd::operation::get(k)});
  EXPECT_FALSE(second.succeeded);
  ASSERT_EQ(second.results.size(), 1u);
  ASSERT_EQ(second.results[0].what, etcd::operation::kind::range);
  ASSERT_EQ(second.results[0].range.kvs.size(), 1u);
  EXPECT_EQ(second.results[0].range.kvs[0].value, "me");
  EXPECT_EQ(second.results[0].range.kvs[0].create_revision, first.revision);
  EXPECT_EQ(second.revision, first.revision);  // a failed compare writes nothing

  // The guarded-write shape: only while the key is still our incarnation.
  const auto guarded =
      c.txn({etcd::compare::create_revision(k, etcd::compare::result::equal, first.revision)},
            {etcd::operation::erase(k)});
  EXPECT_TRUE(guarded.succeeded);
  ASSERT_EQ(guarded.results.size(), 1u);
  EXPECT_EQ(guarded.results[0].erased.deleted, 1);
}

TEST_F(EtcdClient, LeaseKeptAliveThenExpiresAndTakesItsKey) {
  watchdog dog("LeaseKeptAliveThenExpiresAndTakesItsKey", 90s);
  etcd::client c = make_client();
  const std::string k = prefix() + "leased";
  const auto lease = c.grant_lease(2s);
  EXPECT_NE(lease.id, 0);
  EXPECT_GE(lease.ttl, 2s);
  c.put(k, "v", lease.id);
  ASSERT_EQ(c.get(k).kvs.size(), 1u);
  EXPECT_EQ(c.get(k).kvs[0].lease, lease.id);

  {
    // Kept alive past twice its TTL: the key stays.
    etcd::lease_keepalive keeper(c);
    const auto until = deadline_in(4500ms);
    while (std::chrono::steady_clock::now() < until) {
      EXPECT_EQ(keeper.keep_alive(lease.id), lease.ttl);
      std::this_thread::sleep_for(500ms);
    }
    EXPECT_EQ(c.get(k).kvs.size(), 1u);
  }
  // Left alone it expires, and etcd deletes the key with it.
  EXPECT_TRUE(eventually([&] { return !c.lease_time_to_live(lease.id).has_value(); }, 30s));
  EXPECT_TRUE(c.get(k).kvs.empty());

  // A keepalive of the expired lease is lease_lost, typed.
  etcd::lease_keepalive keeper(c);
  const auto [code, what] = net_error_of([&] { keeper.keep_alive(lease.id); });
  EXPECT_EQ(code, net::errc::lease_lost) << what;
  expect_explains(what);
}

TEST_F(EtcdClient, RevokedLeaseIsATypedGrpcError) {
  watchdog dog("RevokedLeaseIsATypedGrpcError", 60s);
  etcd::client c = make_client();
  const auto lease = c.grant_lease(30s);
  c.revoke_lease(lease.id);
  try {
    c.put(prefix() + "k", "v", lease.id);
    FAIL() << "expected a put with a revoked lease to throw";
  } catch (const etcd::grpc_error& e) {
    EXPECT_EQ(e.status(), etcd::grpc_status::not_found) << e.what();
    EXPECT_EQ(e.code(), net::errc::lease_lost) << e.what();
    EXPECT_NE(e.grpc_message().find("lease not found"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/etcdserverpb.KV/Put"), std::string::npos) << e.what();
  }
  const auto [code, what] = net_error_of([&] { c.revoke_lease(lease.id); });
  EXPECT_EQ(code, net::errc::lease_lost) << what;
}

TEST_F(EtcdClient, DuplicateKeyInTxnIsInvalidArgument) {
  watchdog dog("DuplicateKeyInTxnIsInvalidArgument", 60s);
  etcd::client c = make_client();
  const std::string k = prefix() + "dup";
  try {
    c.txn({}, {etcd::operation::put(k, "1"), etcd::operation::put(k, "2")});
    FAIL() << "expected a txn putting one key twice to throw";
  } catch (const etcd::grpc_error& e) {
    EXPECT_EQ(e.status(), etcd::grpc_status::invalid_argument) << e.what();
    EXPECT_EQ(e.code(), net::errc::protocol_error) << e.what();
    EXPECT_NE(e.grpc_message().find("duplicate key"), std::string::npos) << e.what();
  }
  // The connection is still good after a refused call.
  EXPECT_GT(c.put(k, "ok").revision, 0);
}

TEST_F(EtcdClient, WatchSeesPutAndDelete) {
  watchdog dog("WatchSeesPutAndDelete", 60s);
  etcd::client c = make_client();
  const std::string p = prefix();
  etcd::watch w(c, p, etcd::prefix_end(p));
  // Nothing happened yet: a bounded wait returns nothing, the stream stays.
  EXPECT_FALSE(w.next(deadline_in(100ms)).has_value());

  const auto put = c.put(p + "x", "1");
  const auto erased = c.erase(p + "x");
  std::vector<etcd::event> seen;
  while (seen.size() < 2) {
    auto batch = w.next(deadline_in(10s));
    ASSERT_TRUE(batch.has_value()) << "the watch saw " << seen.size() << " of 2 events";
    seen.insert(seen.end(), batch->begin(), batch->end());
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].what, etcd::event::type::put);
  EXPECT_EQ(seen[0].kv.key, p + "x");
  EXPECT_EQ(seen[0].kv.value, "1");
  EXPECT_EQ(seen[0].kv.mod_revision, put.revision);
  EXPECT_EQ(seen[1].what, etcd::event::type::erase);
  EXPECT_EQ(seen[1].kv.key, p + "x");
  EXPECT_EQ(seen[1].kv.mod_revision, erased.revision);
}

TEST_F(EtcdClient, WatchFromAnOldRevisionReplaysHistory) {
  watchdog dog("WatchFromAnOldRevisionReplaysHistory", 60s);
  etcd::client c = make_client();
  const std::string k = prefix() + "k";
  const auto first = c.put(k, "1");
  c.put(k, "2");
  etcd::watch w(c, k, {}, first.revision);
  std::vector<etcd::event> seen;
  while (seen.size() < 2) {
    auto batch = w.next(deadline_in(10s));
    ASSERT_TRUE(batch.has_value());
    seen.insert(seen.end(), batch->begin(), batch->end());
  }
  EXPECT_EQ(seen[0].kv.value, "1");
  EXPECT_EQ(seen[1].kv.value, "2");
}

TEST_F(EtcdClient, ManyThreadsShareOneConnection) {
  watchdog dog("ManyThreadsShareOneConnection", 120s);
  etcd::client c = make_client();
  const std::string p = prefix();
  // A watch stream and a keepalive stream stay open on the same connection
  // while unary calls from several threads interleave with them.
  etcd::watch w(c, p, etcd::prefix_end(p));
  const auto lease = c.grant_lease(30s);
  etcd::lease_keepalive keeper(c);
  constexpr int threads = 4, puts_per_thread = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < puts_per_thread; ++i) {
        try {
          const std::string k = p + std::to_string(t) + "/" + std::to_string(i);
          c.put(k, std::to_string(i));
          const auto got = c.get(k);
          if (got.kvs.size() != 1 || got.kvs[0].value != std::to_string(i)) failures++;
        } catch (const net::error&) {
          failures++;
        }
      }
    });
  }
  int events = 0;
  while (events < threads * puts_per_thread) {
    auto batch = w.next(deadline_in(20s));
    ASSERT_TRUE(batch.has_value()) << "saw " << events << " events";
    events += static_cast<int>(batch->size());
    EXPECT_EQ(keeper.keep_alive(lease.id), lease.ttl);
  }
  for (auto& t : workers) t.join();
  // One connection carried all of it (earlier tests' clients may still be
  // closing theirs on the ring's thread: wait for those to go).
  EXPECT_TRUE(eventually([&] { return connections_to(cluster_->client_port(0)) == 1; }, 10s))
      << connections_to(cluster_->client_port(0)) << " connections to etcd";
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(events, threads * puts_per_thread);
  EXPECT_EQ(c.get(p, {.range_end = etcd::prefix_end(p), .count_only = true}).count,
            threads * puts_per_thread);
}

// --- without etcd ----------------------------------------------------------

TEST(EtcdClientErrors, ConnectionRefusedSaysWhichEndpoints) {
  watchdog dog("ConnectionRefusedSaysWhichEndpoints", 60s);
  const std::string a = "127.0.0.1:" + std::to_string(hwsync::test::free_local_port());
  const std::string b = "127.0.0.1:" + std::to_string(hwsync::test::free_local_port());
  etcd::client c({a, b});
  const auto [code, what] = net_error_of([&] { c.put("k", "v"); });
  EXPECT_EQ(code, net::errc::connection_refused) << what;
  expect_explains(what);
  EXPECT_NE(what.find(a), std::string::npos) << what;
  EXPECT_NE(what.find(b), std::string::npos) << what;
}

TEST(EtcdClientErrors, BadEndpointIsBadUri) {
  EXPECT_EQ(net_error_of([] { etcd::client c({"127.0.0.1"}); }).first, net::errc::bad_uri);
  EXPECT_EQ(net_error_of([] { etcd::client c({"127.0.0.1:99999"}); }).first, net::errc::bad_uri);
  EXPECT_EQ(net_error_of([] { etcd::client c({}); }).first, net::errc::bad_uri);
}

// A TCP server on 127.0.0.1 that accepts one connection, reads what comes,
// answers `reply` once, then either keeps the connection open (silence, not
// EOF) or closes it.
class fake_server {
 public:
  fake_server(std::string reply, bool close_after) : reply_(std::move(reply)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 4) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("fake_server: bind/listen failed");
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, close_after] {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      char buf[4096];
      (void)::read(fd, buf, sizeof buf);  // the client's preface
      (void)::write(fd, reply_.data(), reply_.size());
      if (close_after) {
        ::close(fd);
        return;
      }
      // Keep it open until the client hangs up (or the listener is shut).
      while (::read(fd, buf, sizeof buf) > 0) {
      }
      ::close(fd);
    });
  }
  ~fake_server() {
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::string reply_;
  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(EtcdClientErrors, Http1AnswerIsAProtocolErrorNotAHang) {
  watchdog dog("Http1AnswerIsAProtocolErrorNotAHang", 60s);
  fake_server server("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", false);
  etcd::client c({server.endpoint()});
  const auto [code, what] = net_error_of([&] { c.put("k", "v", 0, deadline_in(20s)); });
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  EXPECT_NE(what.find("HTTP/2"), std::string::npos) << what;
  expect_explains(what);
}

TEST(EtcdClientErrors, GarbageFrameIsAProtocolErrorNotAHang) {
  watchdog dog("GarbageFrameIsAProtocolErrorNotAHang", 60s);
  // A well-formed frame header of an unknown-length SETTINGS frame whose
  // payload is not a multiple of 6: FRAME_SIZE_ERROR.
  std::string bad(
      "\x00\x00\x05\x04\x00\x00\x00\x00\x00"
      "abcde",
      14);
  fake_server server(bad, false);
  etcd::client c({server.endpoint()});
  const auto [code, what] = net_error_of([&] { c.get("k", {}, deadline_in(20s)); });
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  expect_explains(what);
}

TEST(EtcdClientErrors, PeerHangingUpIsClosedByPeer) {
  watchdog dog("PeerHangingUpIsClosedByPeer", 60s);
  fake_server server("", true);
  etcd::client c({server.endpoint()});
  const auto [code, what] = net_error_of([&] { c.get("k", {}, deadline_in(20s)); });
  EXPECT_TRUE(code == net::errc::closed_by_peer || code == net::errc::connection_reset) << what;
  expect_explains(what);
}

TEST(EtcdClientErrors, SilentServerTimesOutAtTheDeadline) {
  watchdog dog("SilentServerTimesOutAtTheDeadline", 60s);
  fake_server server("", false);  // accepts, never answers
  etcd::client c({server.endpoint()});
  const auto [code, what] = net_error_of([&] { c.get("k", {}, deadline_in(300ms)); });
  EXPECT_EQ(code, net::errc::timed_out) << what;
  expect_explains(what);
}

}  // namespace
