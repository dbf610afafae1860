// A running etcd_recipe_child (path in HWSYNC_ETCD_RECIPE_CHILD) with a pipe
// to its stdin and one from its stdout: for the tests that pause, kill or
// resume a participant. The destructor kills it (SIGKILL) if still running.
#pragma once

#include "support/net_test.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/child_process.hpp"

namespace hwsync::test {

class recipe_process {
 public:
  explicit recipe_process(const std::vector<std::string>& args) {
    const std::string program = env_path("HWSYNC_ETCD_RECIPE_CHILD");
    if (program.empty()) {
      throw std::runtime_error(
          "expected HWSYNC_ETCD_RECIPE_CHILD set (run through ctest), got "
          "it unset");
    }
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe2 failed");
    }
    std::vector<char*> argv;
    std::vector<std::string> all{program};
    all.insert(all.end(), args.begin(), args.end());
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    in_ = to_child[1];
    out_ = from_child[0];
  }
  ~recipe_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
    close(in_);
    close(out_);
  }
  recipe_process(const recipe_process&) = delete;
  recipe_process& operator=(const recipe_process&) = delete;

  // One line of its stdout, or "" after `limit` or at its end.
  std::string read_line(std::chrono::seconds limit) { return hwsync::test::read_line(out_, limit); }
  void send_line() {
    if (write(in_, "go\n", 3) != 3) throw std::runtime_error("write to the child failed");
  }
  void signal(int sig) {
    if (::kill(pid_, sig) != 0) throw std::runtime_error("kill failed");
  }
  // Waits for it to end; its wait status.
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
};

// "host:port,host:port" from an etcd_cluster's uri "etcd://...".
inline std::string endpoints_of(const std::string& uri) {
  return uri.substr(std::string("etcd://").size());
}

}  // namespace hwsync::test
