// A real redis-server (/usr/bin/redis-server, Debian's redis-server package)
// for integration tests: started on 127.0.0.1 on a free port in a fresh
// temporary directory, ready (it has answered PING) when the constructor
// returns, and always stopped — by the destructor, and by the kernel if the
// test process dies first (the server gets SIGKILL through
// PR_SET_PDEATHSIG when the thread that started it exits: create it on the
// test's main thread, or on a thread that outlives it; after such a crash
// the temporary directory stays behind).
//
// It talks to the server only through its own blocking socket code, never
// through the client under test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <initializer_list>
#include <string>

#include "support/server_process.hpp"  // free_local_port

namespace hwsync::test {

struct redis_server_options {
  // Keep the data across restart(): append-only file, fsync'ed on every
  // write. Off by default: no file is written at all.
  bool persistent = false;
};

class redis_server {
 public:
  explicit redis_server(redis_server_options options = {});
  ~redis_server();
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  int port() const noexcept { return port_; }
  // "redis://127.0.0.1:<port>"
  std::string uri() const;
  const std::string& dir() const noexcept { return dir_; }
  bool running() const noexcept { return pid_ > 0; }
  pid_t pid() const noexcept { return pid_; }

  // SIGTERM (after SIGCONT if stopped), then SIGKILL if it has not exited
  // within 10 s. Idempotent.
  void stop();
  // SIGKILL at once: a crash, nothing flushed on the way out.
  void kill();
  // stop() if running, then start again on the same port and directory and
  // wait for PING; with `persistent` the data comes back.
  void restart();
  // Freezes and thaws the server (it keeps its sockets: clients see silence,
  // not a closed connection). Both return once the state change happened.
  void sigstop();
  void sigcont();

  // Sends one command (arguments as bulk strings) on a fresh connection and
  // returns the reply's raw bytes; for tests to look at the server's state
  // (e.g. the token counter) without the client under test.
  std::string command(std::initializer_list<std::string> args,
                      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  void start();
  bool wait_until_ready(std::chrono::seconds limit);
  std::string log_tail() const;

  redis_server_options options_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  bool stopped_ = false;  // SIGSTOPped
};

}  // namespace hwsync::test
