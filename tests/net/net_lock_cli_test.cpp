// hwsync-lock end to end: exit codes, HWSYNC_FENCING_TOKEN, and mutual
// exclusion between two CLIs running a non-atomic read-modify-write.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

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
using hwsync::test::run_child;

std::string cli() {
  const std::string p = hwsync::test::env_path("HWSYNC_LOCK_CLI");
  if (p.empty()) throw std::runtime_error("HWSYNC_LOCK_CLI is not set (run through ctest)");
  return p;
}

std::vector<std::string> with_lock(const hwsync::test::temp_dir& dir, const std::string& name,
                                   std::vector<std::string> command,
                                   std::vector<std::string> options = {}) {
  std::vector<std::string> argv{cli(), "--service", dir.file_uri("locks")};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back(name);
  argv.push_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

TEST(LockCli, ExportsTheFencingTokenAndPassesTheExitStatusThrough) {
  hwsync::test::watchdog dog("cli token", 60s);
  hwsync::test::temp_dir dir("net-cli");
  const auto first =
      run_child(with_lock(dir, "job", {"/bin/sh", "-c", "echo token=$HWSYNC_FENCING_TOKEN"}));
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(first.output, "token=1\n");
  const auto second = run_child(
      with_lock(dir, "job", {"/bin/sh", "-c", "echo token=$HWSYNC_FENCING_TOKEN; exit 7"}));
  EXPECT_EQ(second.exit_code, 7) << second.output;
  EXPECT_EQ(second.output, "token=2\n");
  const auto killed = run_child(with_lock(dir, "job", {"/bin/sh", "-c", "kill -9 $$"}));
  EXPECT_EQ(killed.exit_code, 128 + 9) << killed.output;
}

TEST(LockCli, UsageErrorsExitWith64AndSayWhatWasExpected) {
  hwsync::test::watchdog dog("cli usage", 60s);
  hwsync::test::temp_dir dir("net-cli");
  const auto bad_name = run_child(with_lock(dir, "a/b", {"/bin/true"}));
  EXPECT_EQ(bad_name.exit_code, 64) << bad_name.output;
  EXPECT_NE(bad_name.output.find("without '/'"), std::string::npos) << bad_name.output;
  const auto bad_uri = run_child({cli(), "--service", "nowhere", "x", "--", "/bin/true"});
  EXPECT_EQ(bad_uri.exit_code, 64) << bad_uri.output;
  EXPECT_NE(bad_uri.output.find("expected scheme://"), std::string::npos) << bad_uri.output;
  const auto bad_ttl = run_child(with_lock(dir, "x", {"/bin/true"}, {"--ttl", "ten"}));
  EXPECT_EQ(bad_ttl.exit_code, 64) << bad_ttl.output;
  EXPECT_NE(bad_ttl.output.find("expected a duration"), std::string::npos) << bad_ttl.output;
  const auto no_command = run_child({cli(), "--service", dir.file_uri("locks"), "x"});
  EXPECT_EQ(no_command.exit_code, 64) << no_command.output;
  EXPECT_NE(no_command.output.find("expected NAME -- COMMAND"), std::string::npos)
      << no_command.output;
  const auto help = run_child({cli(), "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("76 "), std::string::npos) << help.output;
}

TEST(LockCli, MissingCommandsExit127AndUnrunnableOnes126) {
  hwsync::test::watchdog dog("cli spawn", 60s);
  hwsync::test::temp_dir dir("net-cli");
  const auto missing = run_child(with_lock(dir, "x", {"/nonexistent/command"}));
  EXPECT_EQ(missing.exit_code, 127) << missing.output;
  const auto not_executable = run_child(with_lock(dir, "x", {dir.path()}));  // a directory
  EXPECT_EQ(not_executable.exit_code, 126) << not_executable.output;
}

TEST(LockCli, ALockHeldElsewhereTimesOutWith75) {
  hwsync::test::watchdog dog("cli timeout", 60s);
  hwsync::test::temp_dir dir("net-cli");
  hwsync::net::lock_service service(dir.file_uri("locks"));
  hwsync::net::distributed_lock holder(service, "busy");
  holder.lock();
  const auto r = run_child(with_lock(dir, "busy", {"/bin/true"}, {"--timeout", "100ms"}));
  EXPECT_EQ(r.exit_code, 75) << r.output;
  EXPECT_NE(r.output.find("within 100 ms"), std::string::npos) << r.output;
  const auto once = run_child(with_lock(dir, "busy", {"/bin/true"}, {"--timeout", "0"}));
  EXPECT_EQ(once.exit_code, 75) << once.output;
  holder.unlock();
  const auto free = run_child(with_lock(dir, "busy", {"/bin/true"}, {"--timeout", "0"}));
  EXPECT_EQ(free.exit_code, 0) << free.output;
}

TEST(LockCli, TwoClisExcludeEachOther) {
  hwsync::test::watchdog dog("cli exclusion", 240s);
  hwsync::test::temp_dir dir("net-cli");
  const std::string counter = dir.path() + "/counter";
  std::ofstream(counter) << 0;
  // read, yield the CPU, write back: without the lock, increments get lost.
  const std::string script = "for i in 1 2 3 4 5 6 7 8 9 10; do :; done; v=$(cat " + counter +
                             "); sleep 0.01; echo $((v+1)) > " + counter;
  constexpr int per_cli = 15;
  std::vector<std::string> failures;
  std::mutex failures_mutex;
  std::vector<std::thread> clis;
  for (int c = 0; c < 2; ++c) {
    clis.emplace_back([&] {
      for (int i = 0; i < per_cli; ++i) {
        const auto r =
            run_child(with_lock(dir, "rmw", {"/bin/sh", "-c", script}, {"--timeout", "inf"}));
        if (r.exit_code != 0) {
          std::lock_guard g(failures_mutex);
          failures.push_back(r.output);
        }
      }
    });
  }
  for (auto& t : clis) t.join();
  EXPECT_TRUE(failures.empty()) << failures.front();
  int value = 0;
  std::ifstream(counter) >> value;
  EXPECT_EQ(value, 2 * per_cli);
}

TEST(LockCli, ALostLeaseTerminatesTheCommandAndExitsWith76) {
  hwsync::test::watchdog dog("cli lease lost", 120s);
  const std::string backend = hwsync::test::env_path("HWSYNC_NET_TEST_BACKEND");
  const std::string child = hwsync::test::env_path("HWSYNC_NET_LOCK_CHILD");
  ASSERT_FALSE(backend.empty() || child.empty()) << "run through ctest";
  // The CLI (and the command, the same kind of binary) load the test backend,
  // which answers "not yours" to renewals 300 ms after the acquisition.
  ::setenv("LD_PRELOAD", backend.c_str(), 1);
  const auto r = run_child({cli(), "--service", "lease-test://?lose_after_ms=300", "--ttl", "90ms",
                            "job", "--", child, "wait-term", "-", "-"});
  ::unsetenv("LD_PRELOAD");
  EXPECT_EQ(r.exit_code, 76) << r.output;
  EXPECT_NE(r.output.find("ready"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("got SIGTERM"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lease lost"), std::string::npos) << r.output;
}

// True once a thread of `pid` blocks `sig` (SigBlk in /proc): the CLI
// blocks its signals before it starts any thread, so from then on a signal
// sent to it is handled, not fatal. (A thread inside sigwaitinfo shows the
// signals it waits for as unblocked, hence any thread.)
bool blocks_signal(pid_t pid, int sig) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("SigBlk:", 0) == 0 &&
          ((std::stoull(line.substr(7), nullptr, 16) >> (sig - 1)) & 1)) {
        return true;
      }
    }
  }
  return false;
}

TEST(LockCli, SigtermWhileWaitingForTheLockEndsTheWait) {
  hwsync::test::watchdog dog("cli interrupted wait", 120s);
  hwsync::test::temp_dir dir("net-cli");
  hwsync::net::lock_service service(dir.file_uri("locks"));
  hwsync::net::distributed_lock holder(service, "busy");
  holder.lock();
  const auto argv = with_lock(dir, "busy", {"/bin/true"}, {"--timeout", "inf"});
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), environ), 0);
  while (!blocks_signal(pid, SIGTERM)) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);  // into the wait (either way SIGTERM must end it)
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  holder.unlock();
}

}  // namespace
