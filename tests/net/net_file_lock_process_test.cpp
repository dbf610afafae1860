// The file:// backend across processes: N child processes x M acquisitions
// with a fenced counter (exact count, tokens strictly increasing in
// acquisition order), kill -9 of a holder releases the lock, and the token
// counter survives the process that wrote it.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hwsync/debug_checks.hpp"
#include "hwsync/net/lock_service.hpp"
#include "support/child_process.hpp"
#include "support/net_test.hpp"
#include "support/watchdog.hpp"

using hwsync::test::deadline_in;
using hwsync::test::expect_net_error;
using hwsync::test::net_error_of;

extern char** environ;

namespace {

using namespace std::chrono_literals;

std::string child_path() {
  const std::string p = hwsync::test::env_path("HWSYNC_NET_LOCK_CHILD");
  if (p.empty()) throw std::runtime_error("HWSYNC_NET_LOCK_CHILD is not set (run through ctest)");
  return p;
}

TEST(FileLockProcesses, ChildrenIncrementAFencedCounterExactly) {
  hwsync::test::watchdog dog("file lock processes", 240s);
  hwsync::test::temp_dir dir("net-proc");
  constexpr int children = 4;
  constexpr int rounds = 100;
  const std::string store = dir.path() + "/store";
  std::vector<hwsync::test::child_result> results(children);
  std::vector<std::thread> launchers;
  for (int c = 0; c < children; ++c) {
    launchers.emplace_back([&, c] {
      results[c] = hwsync::test::run_child(
          {child_path(), "count", dir.file_uri("locks"), "counter", std::to_string(rounds), store},
          200);
    });
  }
  for (auto& t : launchers) t.join();
  for (const auto& r : results) {
    EXPECT_EQ(r.signal, 0) << r.output;
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  unsigned long long value = 0, last = 0;
  std::ifstream(store) >> value >> last;
  EXPECT_EQ(value, static_cast<unsigned long long>(children * rounds));
  std::ifstream log(store + ".log");
  std::vector<unsigned long long> tokens;
  for (unsigned long long t; log >> t;) tokens.push_back(t);
  ASSERT_EQ(tokens.size(), static_cast<std::size_t>(children * rounds));
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    ASSERT_LT(tokens[i - 1], tokens[i]) << "acquisition " << i << " got an older token";
  }
  EXPECT_EQ(last, tokens.back());
}

// Starts `argv` with stdout on a pipe; returns the pid and the read end.
std::pair<pid_t, int> spawn_with_pipe(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) throw std::runtime_error("posix_spawn failed");
  return {pid, fds[0]};
}

std::string read_line(int fd) {
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
  return line;
}

TEST(FileLockProcesses, KillNineOfTheHolderReleasesTheLock) {
  hwsync::test::watchdog dog("kill -9 holder", 120s);
  hwsync::test::temp_dir dir("net-proc");
  const auto [pid, out] = spawn_with_pipe({child_path(), "hold", dir.file_uri("locks"), "held"});
  const std::string line = read_line(out);  // "token N": the child holds the lock
  ::close(out);
  ASSERT_EQ(line.rfind("token ", 0), 0u) << line;
  const unsigned long long holder_token = std::stoull(line.substr(6));

  hwsync::net::lock_service service(dir.file_uri("locks"));
  hwsync::net::distributed_lock lock(service, "held");
  EXPECT_FALSE(lock.try_lock());
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_TRUE(lock.try_lock_for(30s));
  EXPECT_GT(lock.token().value(), holder_token);
  lock.unlock();
}

TEST(FileLockProcesses, TheTokenCounterSurvivesTheProcessThatWroteIt) {
  hwsync::test::watchdog dog("counter restart", 120s);
  hwsync::test::temp_dir dir("net-proc");
  unsigned long long last = 0;
  for (int i = 0; i < 3; ++i) {
    const auto r =
        hwsync::test::run_child({child_path(), "once", dir.file_uri("locks"), "restart"}, 60);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_EQ(r.output.rfind("token ", 0), 0u) << r.output;
    const unsigned long long token = std::stoull(r.output.substr(6));
    EXPECT_GT(token, last) << "a new process got a token that is not above the last one";
    last = token;
  }
  hwsync::net::lock_service service(dir.file_uri("locks"));
  hwsync::net::distributed_lock lock(service, "restart");
  lock.lock();
  EXPECT_EQ(lock.token().value(), last + 1);
  lock.unlock();
}

TEST(DistributedLockMisuse, RelockingAndUnlockingAFreeLockAbortWithDebugChecks) {
  if (!hwsync::debug::checks_enabled) GTEST_SKIP() << "HWSYNC_DEBUG_CHECKS is off in this build";
  hwsync::test::watchdog dog("misuse", 120s);
  hwsync::test::temp_dir dir("net-proc");
  const auto relock =
      hwsync::test::run_child({child_path(), "relock", dir.file_uri("locks"), "m"}, 60);
  EXPECT_EQ(relock.signal, SIGABRT) << relock.output;
  EXPECT_NE(relock.output.find("hwsync: misuse of hwsync::net::distributed_lock"),
            std::string::npos)
      << relock.output;
  EXPECT_NE(relock.output.find("already holds"), std::string::npos) << relock.output;
  const auto unlock_free =
      hwsync::test::run_child({child_path(), "unlock-free", dir.file_uri("locks"), "m"}, 60);
  EXPECT_EQ(unlock_free.signal, SIGABRT) << unlock_free.output;
  EXPECT_NE(unlock_free.output.find("does not hold"), std::string::npos) << unlock_free.output;
}

}  // namespace
