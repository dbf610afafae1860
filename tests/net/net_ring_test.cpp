// net::ring and net::tcp_connection against sockets the test opens on
// 127.0.0.1: typed errors for a refused connection, a deadline, a stop
// request, a short read and a reset; and data round trips through the
// blocking and the coroutine interfaces.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "hwsync/net/ring.hpp"
#include "support/child_process.hpp"
#include "support/net_test.hpp"
#include "support/server_process.hpp"
#include "support/watchdog.hpp"

using hwsync::test::deadline_in;
using hwsync::test::expect_net_error;
using hwsync::test::net_error_of;

namespace {

using namespace std::chrono_literals;
using hwsync::net::errc;
using hwsync::net::tcp_connection;

using listener = hwsync::test::loopback_listener;

TEST(NetRing, ConnectRefusedIsATypedErrorNamingThePeer) {
  hwsync::test::watchdog dog("connect refused", 60s);
  std::uint16_t port;
  {
    listener l;
    port = l.port();
  }  // closed: nothing listens there now
  const auto e =
      expect_net_error([&] { tcp_connection::connect("127.0.0.1", port, deadline_in(5s)); });
  EXPECT_EQ(e.code(), errc::connection_refused) << e.what();
  EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << e.what();
  EXPECT_NE(std::string(e.what()).find("ECONNREFUSED"), std::string::npos) << e.what();
  EXPECT_EQ(e.sys_errno(), ECONNREFUSED);
}

TEST(NetRing, SendAndReceiveThroughTheBlockingWrappers) {
  hwsync::test::watchdog dog("blocking echo", 60s);
  listener l;
  std::thread server([&] {
    const int fd = l.accept_one();
    char buf[64];
    std::size_t got = 0;
    while (got < 11) {
      const ssize_t n = ::recv(fd, buf + got, sizeof buf - got, 0);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    ::send(fd, buf, got, MSG_NOSIGNAL);
    ::close(fd);
  });
  auto c = tcp_connection::connect("127.0.0.1", l.port(), deadline_in(5s));
  c.send_all("hello world", deadline_in(5s));
  char reply[11];
  c.recv_exact(reply, deadline_in(5s));
  EXPECT_EQ(std::string(reply, sizeof reply), "hello world");
  server.join();
}

TEST(NetRing, ARecvPastItsDeadlineTimesOut) {
  hwsync::test::watchdog dog("recv deadline", 60s);
  listener l;
  auto c =
      tcp_connection::connect("127.0.0.1", l.port(), deadline_in(5s));  // accepted by the backlog
  char buf[8];
  const auto e = expect_net_error([&] { c.recv_some(buf, deadline_in(50ms)); });
  EXPECT_EQ(e.code(), errc::timed_out) << e.what();
  EXPECT_NE(std::string(e.what()).find("before the deadline"), std::string::npos) << e.what();
}

TEST(NetRing, AStopRequestCancelsAPendingRecv) {
  hwsync::test::watchdog dog("recv cancel", 60s);
  listener l;
  auto c = tcp_connection::connect("127.0.0.1", l.port(), deadline_in(5s));
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(20ms);
    stop.request_stop();
  });
  char buf[8];
  const auto e =
      expect_net_error([&] { c.recv_some(buf, hwsync::net::no_deadline, stop.get_token()); });
  canceller.join();
  EXPECT_EQ(e.code(), errc::cancelled) << e.what();
}

TEST(NetRing, AStopRequestedBeforeSubmissionCancelsAtOnce) {
  hwsync::test::watchdog dog("recv pre-cancelled", 60s);
  listener l;
  auto c = tcp_connection::connect("127.0.0.1", l.port(), deadline_in(5s));
  std::stop_source stop;
  stop.request_stop();
  char buf[8];
  const auto e =
      expect_net_error([&] { c.recv_some(buf, hwsync::net::no_deadline, stop.get_token()); });
  EXPECT_EQ(e.code(), errc::cancelled) << e.what();
}

TEST(NetRing, AShortReadSaysHowManyBytesArrived) {
  hwsync::test::watchdog dog("short read", 60s);
  listener l;
  std::thread server([&] {
    const int fd = l.accept_one();
    ::send(fd, "abc", 3, MSG_NOSIGNAL);
    ::close(fd);
  });
  auto c = tcp_connection::connect("127.0.0.1", l.port(), deadline_in(5s));
  char buf[10];
  const auto e = expect_net_error([&] { c.recv_exact(buf, deadline_in(5s)); });
  server.join();
  EXPECT_EQ(e.code(), errc::closed_by_peer) << e.what();
  EXPECT_NE(std::string(e.what()).find("expected 10 bytes, got 3"), std::string::npos) << e.what();
}

TEST(NetRing, EndOfStreamOnRecvSomeIsClosedByPeer) {
  hwsync::test::watchdog dog("eof", 60s);
  listener l;
  std::thread server([&] { ::close(l.accept_one()); });
  auto c = tcp_connection::connect("127.0.0.1", l.port(), deadline_in(5s));
  server.join();
  char buf[4];
  const auto e = expect_net_error([&] { c.recv_some(buf, deadline_in(5s)); });
  EXPECT_EQ(e.code(), errc::closed_by_peer) << e.what();
}

TEST(NetRing, AResetConnectionIsConnectionReset) {
  hwsync::test::watchdog dog("reset", 60s);
  listener l;
  std::thread server([&] {
    const int fd = l.accept_one();
    // Wait for the client's byte: a reset that overtakes the end of the
    // client's connect would fail the connect instead of the recv.
    char byte;
    (void)::recv(fd, &byte, 1, 0);
    const linger abort_on_close{1, 0};  // close sends RST
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    ::close(fd);
  });
  auto c = tcp_connection::connect("127.0.0.1", l.port(), deadline_in(5s));
  c.send_all("x", deadline_in(5s));
  server.join();
  char buf[4];
  const auto e = expect_net_error([&] { c.recv_some(buf, deadline_in(5s)); });
  EXPECT_EQ(e.code(), errc::connection_reset) << e.what();
}

hwsync::net::task<std::string> echo_through_coroutines(std::uint16_t port) {
  auto c = co_await tcp_connection::async_connect("127.0.0.1", port, deadline_in(5s));
  co_await c.async_send_all("ping", deadline_in(5s));
  std::string reply;
  char buf[16];
  while (reply.size() < 4) {
    const std::size_t n = co_await c.async_recv_some(buf, deadline_in(5s));
    reply.append(buf, n);
  }
  co_return reply;
}

TEST(NetRing, CoroutinesRunOnTheLoopThreadAndSyncWaitReturnsTheirValue) {
  hwsync::test::watchdog dog("coroutine echo", 60s);
  listener l;
  std::thread server([&] {
    const int fd = l.accept_one();
    char buf[4];
    std::size_t got = 0;
    while (got < 4) {
      const ssize_t n = ::recv(fd, buf + got, 4 - got, 0);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    ::send(fd, buf, got, MSG_NOSIGNAL);
    ::close(fd);
  });
  EXPECT_EQ(hwsync::net::sync_wait(echo_through_coroutines(l.port())), "ping");
  server.join();
}

hwsync::net::task<void> connect_refused(std::uint16_t port) {
  co_await tcp_connection::async_connect("127.0.0.1", port, deadline_in(5s));
}

TEST(NetRing, SyncWaitRethrowsTheCoroutinesError) {
  hwsync::test::watchdog dog("coroutine error", 60s);
  std::uint16_t port;
  {
    listener l;
    port = l.port();
  }
  const auto e = expect_net_error([&] { hwsync::net::sync_wait(connect_refused(port)); });
  EXPECT_EQ(e.code(), errc::connection_refused) << e.what();
}

TEST(NetRing, SleepUntilElapsesOrIsCancelled) {
  hwsync::test::watchdog dog("sleep", 60s);
  auto& r = hwsync::net::ring::default_ring();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(hwsync::net::sync_wait(hwsync::net::sleep_until(r, start + 10ms)));
  EXPECT_GE(std::chrono::steady_clock::now(), start + 10ms);  // never early

  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(20ms);
    stop.request_stop();
  });
  EXPECT_FALSE(hwsync::net::sync_wait(
      hwsync::net::sleep_until(r, std::chrono::steady_clock::now() + 1h, stop.get_token())));
  canceller.join();
}

TEST(NetRing, ManyThreadsShareOneRing) {
  hwsync::test::watchdog dog("shared ring", 120s);
  auto& r = hwsync::net::ring::default_ring();
  constexpr int threads = 4;
  constexpr int ops = 500;
  std::atomic<int> completed{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < ops; ++i) {
        if (r.run(hwsync::net::io_request{}) == 0) completed.fetch_add(1);
      }
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(completed.load(), threads * ops);
}

TEST(NetRing, ABlockingWaitOnTheLoopThreadAbortsWithAMessage) {
  hwsync::test::watchdog dog("block on loop", 120s);
  const std::string child = hwsync::test::env_path("HWSYNC_NET_LOCK_CHILD");
  ASSERT_FALSE(child.empty()) << "HWSYNC_NET_LOCK_CHILD is not set (run through ctest)";
  const auto r = hwsync::test::run_child({child, "block-on-loop", "-", "-"}, 60);
  EXPECT_EQ(r.signal, SIGABRT) << r.output;
  EXPECT_NE(r.output.find("called on a ring's loop thread"), std::string::npos) << r.output;
}

TEST(NetRing, AnOwnRingStartsAndStops) {
  hwsync::test::watchdog dog("own ring", 60s);
  hwsync::net::ring r(8);
  EXPECT_FALSE(r.on_loop_thread());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(r.run(hwsync::net::io_request{}), 0);
}

}  // namespace
