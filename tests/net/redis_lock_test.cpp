// The redis:// backend against real redis-server processes
// (tests/support/redis_server.hpp): locking and tokens, try_lock_for's
// deadline, waiters on pub/sub (blocking and coroutine sleepers on the
// subscriber), pipelining from many threads, the fenced
// store, mutual exclusion across processes, the Kleppmann scenario, a
// restarted and a SIGSTOPped server, a fake server sending garbage, a
// refused connection and bad URIs.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/debug_checks.hpp"
#include "hwsync/net/lock_service.hpp"
#include "hwsync/net/redis_fenced_write.hpp"
#include "redis/connection.hpp"
#include "redis/subscriber.hpp"
#include "redis_restart_check.hpp"
#include "support/child_process.hpp"
#include "support/net_test.hpp"
#include "support/redis_server.hpp"
#include "support/watchdog.hpp"

using hwsync::test::deadline_in;
using hwsync::test::expect_net_error;
using hwsync::test::net_error_of;

namespace {

using hwsync::test::eventually;
using hwsync::test::read_line;

using namespace std::chrono_literals;
namespace net = hwsync::net;
using hwsync::test::redis_server;
using hwsync::test::watchdog;

TEST(RedisLock, TokensIncreaseAndTheLockExcludes) {
  watchdog dog("TokensIncreaseAndTheLockExcludes", 120s);
  redis_server server;
  net::lock_service service(server.uri());
  net::distributed_lock a(service, "basic");
  net::distributed_lock b(service, "basic");
  a.lock();
  const auto first = a.token();
  EXPECT_TRUE(first);
  EXPECT_FALSE(b.try_lock());
  a.unlock();
  ASSERT_TRUE(b.try_lock());
  EXPECT_GT(b.token(), first);
  b.unlock();
  a.lock();
  EXPECT_GT(a.token(), b.token());
  a.unlock();
  // The counter is the server's: three acquisitions, tokens 1, 2, 3.
  EXPECT_EQ(server.command({"GET", "hwsync:lock:{basic}:token"}), "$1\r\n3\r\n");
}

TEST(RedisLock, TryLockForHonoursItsDeadline) {
  watchdog dog("TryLockForHonoursItsDeadline", 120s);
  redis_server server;
  net::lock_service service(server.uri());
  net::distributed_lock holder(service, "busy");
  net::distributed_lock waiter(service, "busy");
  holder.lock();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(waiter.try_lock_for(300ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  holder.unlock();
  EXPECT_TRUE(waiter.try_lock_for(300ms));
  waiter.unlock();
}

TEST(RedisLock, WaitersSubscribeToTheReleaseChannelAndWakeOnRelease) {
  watchdog dog("WaitersSubscribe", 120s);
  redis_server server;
  net::lock_service service(server.uri());
  net::distributed_lock holder(service, "pubsub", {.ttl = 60s});
  holder.lock();
  std::atomic<bool> waiter_has_it{false};
  std::thread waiter_thread([&] {
    net::distributed_lock waiter(service, "pubsub", {.ttl = 60s});
    waiter.lock();
    waiter_has_it = true;
    waiter.unlock();
  });
  // The waiter is subscribed (not polling) before the release.
  const std::string channel = "hwsync:lock:{pubsub}:released";
  const std::string numsub =
      "*2\r\n$" + std::to_string(channel.size()) + "\r\n" + channel + "\r\n:";
  const std::string one = numsub + "1\r\n";
  EXPECT_TRUE(eventually(
      [&] {
        return server.command({"PUBSUB", "NUMSUB", channel}) == one;
      },
      30s));
  EXPECT_FALSE(waiter_has_it.load());
  holder.unlock();
  waiter_thread.join();
  EXPECT_TRUE(waiter_has_it.load());
  // ...and unsubscribed once it has the lock.
  const std::string none = numsub + "0\r\n";
  EXPECT_TRUE(eventually(
      [&] {
        return server.command({"PUBSUB", "NUMSUB", channel}) == none;
      },
      30s));
}

TEST(RedisLock, ThreadsShareOnePipelinedServiceAndExcludeEachOther) {
  watchdog dog("ThreadsShareOneService", 240s);
  redis_server server;
  net::lock_service service(server.uri());
  constexpr int threads = 6;
  constexpr int rounds = 40;
  // Read-modify-write in two steps: only the distributed lock keeps
  // increments from being lost. (Atomics so that TSan, which cannot see the
  // exclusion Redis provides, sees no race in the counter itself.)
  std::atomic<int> shared_count{0};
  std::vector<std::thread> pool;
  std::vector<std::vector<std::uint64_t>> own_tokens(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      net::distributed_lock shared_lock(service, "shared");
      net::distributed_lock own(service, "own-" + std::to_string(t));
      for (int i = 0; i < rounds; ++i) {
        shared_lock.lock();
        const int seen = shared_count.load(std::memory_order_relaxed);
        std::this_thread::yield();
        shared_count.store(seen + 1, std::memory_order_relaxed);
        shared_lock.unlock();
        own.lock();
        own_tokens[t].push_back(own.token().value());
        own.unlock();
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(shared_count.load(), threads * rounds);
  for (int t = 0; t < threads; ++t) {
    ASSERT_EQ(own_tokens[t].size(), static_cast<std::size_t>(rounds));
    for (int i = 0; i < rounds; ++i) EXPECT_EQ(own_tokens[t][i], static_cast<std::uint64_t>(i + 1));
  }
}

TEST(RedisConnection, PipelinedBatchesFromManyThreadsGetTheirOwnRepliesInOrder) {
  watchdog dog("PipelinedBatches", 120s);
  redis_server server;
  hwsync::net::redis::connection conn("127.0.0.1", static_cast<std::uint16_t>(server.port()));
  constexpr int threads = 4;
  constexpr int batches = 50;
  constexpr int per_batch = 10;
  std::vector<std::thread> pool;
  std::vector<int> mismatches(threads, 0);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const std::string key = "counter-" + std::to_string(t);
      long long expected = 0;
      for (int b = 0; b < batches; ++b) {
        std::string bytes;
        for (int i = 0; i < per_batch; ++i)
          hwsync::net::redis::append_command(bytes, {"INCR", key});
        const auto replies = conn.exchange(std::move(bytes), per_batch,
                                           std::chrono::steady_clock::now() + 30s, "INCR batch");
        for (const auto& r : replies) {
          if (r.type != hwsync::net::redis::reply::kind::integer || r.integer != ++expected) {
            ++mismatches[t];
          }
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  for (int t = 0; t < threads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
  EXPECT_EQ(server.command({"GET", "counter-0"}), "$3\r\n500\r\n");
}

// Several callers waiting on one connection to a stalled server (one of
// them the reader, the others waiting for it): every one gets timed_out —
// none hangs, none is woken twice — and the connection works again after.
TEST(RedisConnection, ConcurrentCallersOnAStalledServerAllTimeOutThenRecover) {
  watchdog dog("StalledServerCallers", 120s);
  redis_server server;
  hwsync::net::redis::connection conn("127.0.0.1", static_cast<std::uint16_t>(server.port()));
  EXPECT_EQ(conn.call({"PING"}, std::chrono::steady_clock::now() + 30s).text, "PONG");
  server.sigstop();
  constexpr int threads = 5;
  std::vector<std::thread> pool;
  std::vector<net::errc> codes(threads, net::errc::io_error);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      // Different deadlines: the reader is not always the first to give up.
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(200 + 50 * t);
      codes[t] = net_error_of([&] { conn.call({"INCR", "n"}, deadline); }).first;
    });
  }
  for (auto& th : pool) th.join();
  for (int t = 0; t < threads; ++t) {
    EXPECT_TRUE(codes[t] == net::errc::timed_out)
        << "thread " << t << ": " << net::to_string(codes[t]);
  }
  server.sigcont();
  EXPECT_EQ(conn.call({"PING"}, std::chrono::steady_clock::now() + 30s).text, "PONG");
}

// A coroutine sleeping on the subscriber (async_wait_for_change, as
// async_lock waits) is woken by a message on its channel, by the loss of
// the pub/sub connection and by its stop token; never by its deadline here
// (an hour away: the watchdog fails the test long before). After the loss
// it reconnects and hears messages again.
TEST(RedisSubscriber, AsyncSleeperWakesOnMessageLossAndStopNotItsDeadline) {
  watchdog dog("AsyncSleeper", 120s);
  redis_server server;
  hwsync::net::redis::subscriber subs("127.0.0.1", static_cast<std::uint16_t>(server.port()));
  const std::string channel = "hwsync:test:async-sleeper";
  const auto sub = net::sync_wait(subs.async_subscribe(channel));
  ASSERT_TRUE(sub->confirmed(std::chrono::steady_clock::now() + 30s));
  const auto an_hour = [] { return std::chrono::steady_clock::now() + 1h; };
  const auto subscribed = [&] {
    return server.command({"PUBSUB", "NUMSUB", channel}) ==
           "*2\r\n$" + std::to_string(channel.size()) + "\r\n" + channel + "\r\n:1\r\n";
  };

  // A message.
  std::uint64_t seen = sub->generation();
  std::thread publisher([&] { server.command({"PUBLISH", channel, "released"}); });
  EXPECT_TRUE(net::sync_wait(sub->async_wait_for_change(seen, an_hour(), {})));
  publisher.join();
  EXPECT_NE(sub->generation(), seen);

  // The stop token.
  std::stop_source stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    stop.request_stop();
  });
  EXPECT_FALSE(
      net::sync_wait(sub->async_wait_for_change(sub->generation(), an_hour(), stop.get_token())));
  stopper.join();

  // The loss of the connection (the server restarts): a release may have
  // gone unheard, so the sleeper must retry.
  // (restart() on this thread: the server dies with the thread that
  // started it.)
  seen = sub->generation();
  std::atomic<bool> woken{false};
  std::thread sleeper(
      [&] { woken = net::sync_wait(sub->async_wait_for_change(seen, an_hour(), {})); });
  server.restart();
  sleeper.join();
  EXPECT_TRUE(woken.load());

  // Reconnected (by the next wait) and subscribed again: messages wake it.
  seen = sub->generation();
  std::thread late_publisher([&] {
    ASSERT_TRUE(eventually(subscribed, 30s));
    server.command({"PUBLISH", channel, "released"});
  });
  EXPECT_TRUE(net::sync_wait(sub->async_wait_for_change(seen, an_hour(), {})));
  late_publisher.join();
  EXPECT_NE(sub->generation(), seen);
}

// Regression: the reader coroutine's recv was submitted from whichever
// thread started it (in WaiterGetsTheLockAfterTheHolderReleases, a blocking
// caller handing the reader role on, then exiting). The kernel runs a
// completion's work on the submitting thread, and cancels it when that
// thread is exiting at the time, so the reply failed as a missed deadline
// (-ECANCELED without a stop request reads as ETIME). Here a thread starts
// a coroutine's PING and exits at once, while the reply is on its way;
// the window is narrow, so it is tried many times (bounded in iterations
// and seconds).
TEST(RedisConnection, CoroutineReaderSurvivesTheExitOfTheThreadThatStartedIt) {
  watchdog dog("ReaderOutlivesItsStarter", 120s);
  redis_server server;
  hwsync::net::redis::connection conn("127.0.0.1", static_cast<std::uint16_t>(server.port()));
  const auto give_up_at = std::chrono::steady_clock::now() + 20s;
  int tries = 0;
  for (; tries < 400 && std::chrono::steady_clock::now() < give_up_at; ++tries) {
    std::latch finished(1);
    std::string failure;
    auto ping = [&]() -> net::task<void> {
      std::string bytes;
      hwsync::net::redis::append_command(bytes, {"PING"});
      try {
        auto replies = co_await conn.async_exchange(std::move(bytes), 1,
                                                    std::chrono::steady_clock::now() + 30s, "PING");
        if (replies.front().text != "PONG") failure = "got " + replies.front().describe();
      } catch (const std::exception& e) {
        failure = e.what();
      }
      finished.count_down();
    };
    std::thread starter([&] { net::ring::detach(ping()); });
    starter.join();
    finished.wait();
    ASSERT_EQ(failure, "") << "try " << tries;
  }
  EXPECT_GT(tries, 0);
}

TEST(RedisFencedStore, RefusesStaleTokensComparingAll64Bits) {
  watchdog dog("RedisFencedStore", 60s);
  redis_server server;
  net::redis_fenced_store store(server.uri());
  EXPECT_EQ(store.read("k"), std::nullopt);
  auto w = store.write("k", net::fencing_token(5), "five");
  EXPECT_TRUE(w.accepted);
  EXPECT_EQ(w.fence, net::fencing_token(5));
  w = store.write("k", net::fencing_token(4), "four");
  EXPECT_FALSE(w.accepted);
  EXPECT_EQ(w.fence, net::fencing_token(5));
  EXPECT_EQ(store.read("k"), "five");
  EXPECT_TRUE(store.write("k", net::fencing_token(5), "five again").accepted);  // same holder
  EXPECT_FALSE(store.write("k", net::fencing_token{}, "null token").accepted);
  EXPECT_EQ(store.read("k"), "five again");
  // 2^63 and 2^63 + 1 are one double: a Lua-number comparison would accept.
  EXPECT_TRUE(store.write("big", net::fencing_token((1ull << 63) + 1), "a").accepted);
  EXPECT_FALSE(store.write("big", net::fencing_token(1ull << 63), "b").accepted);
  EXPECT_TRUE(store.write("big", net::fencing_token(~0ull), "c").accepted);
  EXPECT_EQ(store.read("big"), "c");
}

// 8 MiB both ways: more than a socket buffer holds, so the send falls back
// to the ring's send_all and the reply arrives in many recv(2)s.
TEST(RedisFencedStore, ValuesLargerThanTheSocketBufferGoBothWays) {
  watchdog dog("LargeValues", 120s);
  redis_server server;
  net::redis_fenced_store store(server.uri());
  std::string big(8 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  EXPECT_TRUE(store.write("big", net::fencing_token(1), big).accepted);
  EXPECT_EQ(store.read("big"), big);
}

TEST(RedisFencedStore, RecoversFromAnEmptiedScriptCache) {
  watchdog dog("RecoversFromAnEmptiedScriptCache", 60s);
  redis_server server;
  net::redis_fenced_store store(server.uri());
  EXPECT_TRUE(store.write("k", net::fencing_token(1), "a").accepted);
  EXPECT_EQ(server.command({"SCRIPT", "FLUSH"}), "+OK\r\n");
  EXPECT_TRUE(store.write("k", net::fencing_token(2), "b").accepted);  // NOSCRIPT -> LOAD
  EXPECT_EQ(store.read("k"), "b");
}

// --- across processes --------------------------------------------------------

struct spawned {
  pid_t pid = -1;
  int to_child = -1;
  int from_child = -1;
};

spawned spawn(const std::vector<std::string>& argv) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  return {pid, in[1], out[0]};
}

std::string child_program() {
  const std::string p = hwsync::test::env_path("HWSYNC_REDIS_LOCK_CHILD");
  if (p.empty()) ADD_FAILURE() << "HWSYNC_REDIS_LOCK_CHILD is not set (run through ctest)";
  return p;
}

TEST(RedisLockProcesses, MutualExclusionWithExactCountAndStrictlyIncreasingTokens) {
  watchdog dog("MutualExclusionAcrossProcesses", 280s);
  redis_server server;
  const std::string program = child_program();
  ASSERT_FALSE(program.empty());
  constexpr int children = 4;
  constexpr int rounds = 30;
  std::vector<std::thread> runners;
  std::vector<hwsync::test::child_result> results(children);
  for (int c = 0; c < children; ++c) {
    runners.emplace_back([&, c] {
      results[c] = hwsync::test::run_child(
          {program, "count", server.uri(), "counter-lock", "counter", std::to_string(rounds)}, 240);
    });
  }
  for (auto& r : runners) r.join();

  std::set<std::uint64_t> all_tokens;
  for (int c = 0; c < children; ++c) {
    ASSERT_EQ(results[c].exit_code, 0) << results[c].output;
    std::istringstream in(results[c].output);
    std::uint64_t previous = 0;
    int lines = 0;
    for (std::string word; in >> word;) {
      if (word != "token") continue;
      std::uint64_t token = 0;
      int accepted = 0;
      in >> token >> accepted;
      EXPECT_EQ(accepted, 1) << "the fence refused a holder's write: exclusion failed";
      EXPECT_GT(token, previous) << "a child's tokens must increase";
      previous = token;
      EXPECT_TRUE(all_tokens.insert(token).second) << "token " << token << " granted twice";
      ++lines;
    }
    EXPECT_EQ(lines, rounds) << results[c].output;
  }
  // Every write was accepted by the fence (token >= every earlier one) and
  // every token is distinct, so in write order the tokens strictly
  // increase; the exact count says no increment was lost.
  net::redis_fenced_store store(server.uri());
  EXPECT_EQ(store.read("counter"), std::to_string(children * rounds));
  EXPECT_EQ(all_tokens.size(), static_cast<std::size_t>(children * rounds));
}

TEST(RedisLockProcesses, AsyncMisuseAbortsWithAMessageNamingTheLock) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "HWSYNC_DEBUG_CHECKS is off in this build";
  watchdog dog("AsyncMisuse", 120s);
  redis_server server;
  const std::string program = child_program();
  ASSERT_FALSE(program.empty());
  const auto relock =
      hwsync::test::run_child({program, "async-relock", server.uri(), "async-misuse"}, 60);
  EXPECT_EQ(relock.signal, SIGABRT) << relock.output;
  EXPECT_NE(relock.output.find("hwsync: misuse of hwsync::net::distributed_lock"),
            std::string::npos)
      << relock.output;
  EXPECT_NE(relock.output.find("async_lock() by the object that already holds"), std::string::npos)
      << relock.output;
  const auto unlock_free =
      hwsync::test::run_child({program, "async-unlock-free", server.uri(), "async-misuse"}, 60);
  EXPECT_EQ(unlock_free.signal, SIGABRT) << unlock_free.output;
  EXPECT_NE(unlock_free.output.find("async_unlock() of a lock this object does not hold"),
            std::string::npos)
      << unlock_free.output;
}

TEST(RedisLockProcesses, KleppmannPausedHolderIsFencedAndToldItLost) {
  watchdog dog("Kleppmann", 120s);
  redis_server server;
  const std::string program = child_program();
  ASSERT_FALSE(program.empty());
  spawned holder = spawn({program, "holder", server.uri(), "kleppmann", "resource", "1000"});
  const std::string acquired = read_line(holder.from_child, 60s);
  ASSERT_EQ(acquired.rfind("acquired ", 0), 0u) << acquired;
  const std::uint64_t old_token = std::stoull(acquired.substr(9));

  // The holder pauses (a GC pause, a page fault storm) past its lease.
  ASSERT_EQ(kill(holder.pid, SIGSTOP), 0);
  net::lock_service service(server.uri());
  net::distributed_lock successor(service, "kleppmann", {.ttl = 60s});
  ASSERT_TRUE(successor.try_lock_for(30s)) << "the paused holder's lease never expired";
  EXPECT_GT(successor.token().value(), old_token);
  net::redis_fenced_store store(server.uri());
  ASSERT_TRUE(store.write("resource", successor.token(), "successor").accepted);

  // It resumes and writes with its old token, believing it still holds.
  ASSERT_EQ(kill(holder.pid, SIGCONT), 0);
  ASSERT_EQ(write(holder.to_child, "go\n", 3), 3);
  const std::string stale = read_line(holder.from_child, 60s);
  EXPECT_EQ(stale, "stale_write accepted=0 fence=" + successor.token().to_string());
  EXPECT_EQ(read_line(holder.from_child, 60s), "lost=1 handler=1");
  EXPECT_EQ(read_line(holder.from_child, 60s), "unlock=lease_lost");
  EXPECT_EQ(store.read("resource"), "successor");
  successor.unlock();

  close(holder.to_child);
  close(holder.from_child);
  int status = 0;
  waitpid(holder.pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(RedisServerFixture, ServerDiesWithTheProcessThatStartedIt) {
  watchdog dog("FixtureCleanup", 120s);
  const std::string program = child_program();
  ASSERT_FALSE(program.empty());
  spawned child = spawn({program, "fixture"});
  const std::string line = read_line(child.from_child, 60s);
  ASSERT_EQ(line.rfind("server ", 0), 0u) << line;
  std::istringstream in(line.substr(7));
  int server_pid = 0;
  std::string dir;
  in >> server_pid >> dir;
  ASSERT_GT(server_pid, 0) << line;
  ASSERT_EQ(kill(child.pid, SIGKILL), 0);  // no destructor runs
  int status = 0;
  waitpid(child.pid, &status, 0);
  close(child.to_child);
  close(child.from_child);
  // PR_SET_PDEATHSIG: the server gets SIGKILL; gone, or a zombie until
  // whoever adopted it reaps it.
  const std::string stat_path = "/proc/" + std::to_string(server_pid) + "/stat";
  EXPECT_TRUE(eventually(
      [&] {
        std::ifstream stat(stat_path);
        std::string pid_field, comm, state;
        return !(stat >> pid_field >> comm >> state) || state == "Z";
      },
      30s));
  std::filesystem::remove_all(dir);
}

// --- the server misbehaving ---------------------------------------------------

TEST(RedisLockFailures, RestartedServerLosesTheLeaseAndLostFires) {
  watchdog dog("RestartedServer", 120s);
  hwsync::test::expect_restart_fires_lost(
      "restart", [](net::distributed_lock& l) { l.lock(); },
      [](net::distributed_lock& l) { l.unlock(); });
}

TEST(RedisLockFailures, TokensSurviveARestartOnlyWithPersistence) {
  watchdog dog("TokensAndRestarts", 120s);
  for (const bool persistent : {true, false}) {
    redis_server server({.persistent = persistent});
    std::uint64_t before = 0;
    {
      net::lock_service service(server.uri());
      net::distributed_lock lock(service, "persist");
      for (int i = 0; i < 3; ++i) {
        lock.lock();
        before = lock.token().value();
        lock.unlock();
      }
    }
    server.restart();
    net::lock_service service(server.uri());
    net::distributed_lock lock(service, "persist");
    lock.lock();
    if (persistent) {
      EXPECT_EQ(lock.token().value(), before + 1);
    } else {
      // What docs/distributed-locks.md warns about: the counter is gone,
      // tokens start again at 1.
      EXPECT_EQ(lock.token().value(), 1u);
    }
    lock.unlock();
  }
}

TEST(RedisLockFailures, StoppedServerTimesOutThenRecoversAfterSigcont) {
  watchdog dog("StoppedServer", 120s);
  redis_server server;
  net::lock_service service(server.uri() + "?timeout_ms=300");
  net::distributed_lock lock(service, "frozen");
  lock.lock();
  lock.unlock();
  server.sigstop();
  const auto [code, message] = net_error_of([&] { lock.try_lock(); });
  EXPECT_EQ(code, net::errc::timed_out) << message;
  EXPECT_NE(message.find("within 300 ms"), std::string::npos) << message;
  server.sigcont();
  EXPECT_TRUE(eventually(
      [&] {
        try {
          return lock.try_lock();
        } catch (const net::error&) {
          return false;
        }
      },
      30s));
  lock.unlock();
}

// Regression: an acquire that timed out on a stalled server still reaches
// it when the server continues and takes the lock for the owner, who was
// told "timed out". The owner's next attempt must get the lock (the script
// re-takes a key that holds the same owner), not wait out a 60 s lease.
TEST(RedisLockFailures, TimedOutAcquireDoesNotLockItsOwnerOut) {
  watchdog dog("TimedOutAcquire", 120s);
  redis_server server;
  net::lock_service service(server.uri() + "?timeout_ms=300");
  net::distributed_lock lock(service, "stalled", {.ttl = 60s});
  lock.lock();  // token 1; the scripts are loaded, so the stalled command is EVALSHA acquire
  lock.unlock();
  server.sigstop();
  EXPECT_EQ(net_error_of([&] { lock.try_lock(); }).first, net::errc::timed_out);
  server.sigcont();
  // The stalled command has now run: the key holds this lock's owner.
  ASSERT_TRUE(eventually(
      [&] {
        return server.command({"EXISTS", "hwsync:lock:{stalled}"}) == ":1\r\n";
      },
      30s));
  EXPECT_TRUE(lock.try_lock());
  EXPECT_EQ(lock.token().value(), 3u);  // the stalled attempt's INCR was 2
  lock.unlock();
  EXPECT_EQ(server.command({"EXISTS", "hwsync:lock:{stalled}"}), ":0\r\n");
}

// A TCP server that answers whatever it is sent with `reply`, then keeps
// the connection open (or closes it) until the test ends.
class fake_server {
 public:
  fake_server(std::string reply, bool close_after) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        listen(listen_fd_, 8) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("fake_server: bind/listen failed");
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, reply = std::move(reply), close_after] {
      std::vector<int> clients;
      while (!stop_.load()) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (poll(&p, 1, 20) > 0) {
          const int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (c < 0) continue;
          char buf[4096];
          pollfd q{c, POLLIN, 0};
          if (poll(&q, 1, 5000) > 0 && ::read(c, buf, sizeof buf) > 0) {
            (void)!::write(c, reply.data(), reply.size());
          }
          if (close_after) {
            ::close(c);
          } else {
            clients.push_back(c);
          }
        }
      }
      for (int c : clients) ::close(c);
    });
  }
  ~fake_server() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  std::string uri() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(RedisLockFailures, MalformedRepliesAreTypedErrorsWithoutHangs) {
  watchdog dog("MalformedReplies", 120s);
  struct bad_case {
    const char* bytes;
    bool close_after;
    net::errc code;
    const char* says;
  };
  const bad_case cases[] = {
      {"?garbage\r\n", false, net::errc::protocol_error, "\"?garbage\\r\\n\""},
      {"$5\r\nabcdeXY", false, net::errc::protocol_error, "followed by"},
      {":notanumber\r\n", false, net::errc::protocol_error, "Bad integer"},
      {"+OK\r\n", false, net::errc::protocol_error, "expected the script's SHA1"},
      {"$40\r\nabc", true, net::errc::closed_by_peer, ""},
  };
  for (const bad_case& c : cases) {
    fake_server fake(c.bytes, c.close_after);
    net::lock_service service(fake.uri() + "?timeout_ms=5000");
    net::distributed_lock lock(service, "garbage");
    const auto [code, message] = net_error_of([&] { lock.try_lock(); });
    EXPECT_EQ(code, c.code) << c.bytes << " -> " << message;
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
  }
}

TEST(RedisLockFailures, RefusedConnectionIsAClearError) {
  const int port = hwsync::test::free_local_port();
  net::lock_service service("redis://127.0.0.1:" + std::to_string(port));
  net::distributed_lock lock(service, "nobody-home");
  const auto [code, message] = net_error_of([&] { lock.try_lock(); });
  EXPECT_EQ(code, net::errc::connection_refused) << message;
  EXPECT_NE(message.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << message;
}

TEST(RedisLockFailures, BadUrisSayWhatWasExpected) {
  const std::pair<const char*, const char*> cases[] = {
      {"redis://", "redis://host[:port]"},
      {"redis://127.0.0.1:6379/3", "no path"},
      {"redis://127.0.0.1?color=blue", "timeout_ms"},
      {"redis://127.0.0.1?timeout_ms=0", "timeout_ms from 1 to 3600000"},
  };
  for (const auto& [uri, says] : cases) {
    const auto [code, message] = net_error_of([&] { net::lock_service service(uri); });
    EXPECT_EQ(code, net::errc::bad_uri) << uri;
    EXPECT_NE(message.find(says), std::string::npos) << message;
  }
  EXPECT_EQ(net_error_of([] { net::redis_fenced_store s("file:///tmp"); }).first,
            net::errc::bad_uri);
}

}  // namespace
