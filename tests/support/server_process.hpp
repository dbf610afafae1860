// What the fixtures that run real servers (redis_server.hpp, etcd_server.hpp)
// and the net tests share: starting a server process that cannot outlive the
// test, and plain loopback sockets that never go through the client under
// test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hwsync::test {

// Starts args[0] (a path) with `args` as a child with stdin, stdout and
// stderr on /dev/null and `env` added to its environment. The child gets
// SIGKILL when the thread that started it exits (PR_SET_PDEATHSIG), so a
// crashed or killed test leaves no server behind: start servers on the
// test's main thread, or on a thread that outlives them. Throws
// std::runtime_error naming `who` if fork fails.
pid_t spawn_tied_to_this_thread(std::vector<std::string> args,
                                const std::vector<std::pair<std::string, std::string>>& env,
                                const std::string& who);

// A TCP port on 127.0.0.1 that nothing listens on at the moment of the call.
int free_local_port();

// A blocking connection to 127.0.0.1:port whose connect, sends and receives
// each give up after `timeout`; -1 (errno set) if it cannot connect.
int connect_loopback(int port, std::chrono::milliseconds timeout);

// A listening TCP socket on 127.0.0.1 on a port the kernel chose.
class loopback_listener {
 public:
  explicit loopback_listener(int backlog = 8);
  ~loopback_listener() { close(); }
  loopback_listener(const loopback_listener&) = delete;
  loopback_listener& operator=(const loopback_listener&) = delete;

  int fd() const noexcept { return fd_; }
  std::uint16_t port() const noexcept { return port_; }
  // Accepts one connection (blocking; SOCK_CLOEXEC); the caller closes it.
  int accept_one() const;
  void close() noexcept;

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

std::string errno_text(int e);

}  // namespace hwsync::test
