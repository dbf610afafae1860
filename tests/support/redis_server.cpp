#include "support/redis_server.hpp"

#include "support/server_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace hwsync::test {

namespace {

constexpr const char* redis_server_path = "/usr/bin/redis-server";

// Reads until `complete(buffer)` or the socket's timeout / EOF.
template <class Complete>
std::string read_reply(int fd, Complete complete) {
  std::string got;
  char buf[4096];
  while (!complete(got)) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

// The end of the RESP2 reply starting at `at` in `s`, or npos while it is
// incomplete. Deliberately simple (the fixture trusts its server).
std::size_t reply_end(const std::string& s, std::size_t at) {
  const auto eol = s.find("\r\n", at);
  if (eol == std::string::npos) return std::string::npos;
  const char type = s[at];
  if (type != '$' && type != '*') return eol + 2;
  const long n = std::strtol(s.c_str() + at + 1, nullptr, 10);
  if (n < 0) return eol + 2;
  if (type == '$') {
    const std::size_t end = eol + 2 + static_cast<std::size_t>(n) + 2;
    return s.size() >= end ? end : std::string::npos;
  }
  std::size_t next = eol + 2;
  for (long i = 0; i < n; ++i) {
    next = reply_end(s, next);
    if (next == std::string::npos) return next;
  }
  return next;
}

bool one_reply(const std::string& s) {
  return !s.empty() && reply_end(s, 0) != std::string::npos;
}

}  // namespace

redis_server::redis_server(redis_server_options options) : options_(options) {
  std::string base = "/tmp";
  if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') base = t;
  std::string pattern = base + "/hwsync-redis-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("redis_server: mkdtemp(" + pattern + "): " + errno_text(errno));
  }
  dir_ = pattern;
  // A port found free can be taken before the server binds it: try again
  // on another one (the server exits at once when its port is in use).
  for (int attempt = 0;; ++attempt) {
    port_ = free_local_port();
    start();
    if (wait_until_ready(std::chrono::seconds(20))) return;
    const std::string log = log_tail();
    kill();
    if (attempt == 4) {
      std::filesystem::remove_all(dir_);
      throw std::runtime_error("redis_server: redis-server did not answer PING on 127.0.0.1:" +
                               std::to_string(port_) + " within 20 s; its log ends with:\n" + log);
    }
  }
}

redis_server::~redis_server() {
  stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string redis_server::uri() const {
  return "redis://127.0.0.1:" + std::to_string(port_);
}

void redis_server::start() {
  std::vector<std::string> args = {redis_server_path,
                                   "--port",
                                   std::to_string(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--dir",
                                   dir_,
                                   "--logfile",
                                   dir_ + "/redis.log",
                                   "--daemonize",
                                   "no",
                                   "--protected-mode",
                                   "no",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   options_.persistent ? "yes" : "no"};
  if (options_.persistent) {
    args.insert(args.end(), {"--appendfsync", "always"});
  }
  const pid_t pid = spawn_tied_to_this_thread(std::move(args), {}, "redis_server");
  pid_ = pid;
  stopped_ = false;
}

bool redis_server::wait_until_ready(std::chrono::seconds limit) {
  const auto give_up_at = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < give_up_at) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;  // it exited: port taken, bad config
      return false;
    }
    const int fd = connect_loopback(port_, std::chrono::milliseconds(500));
    if (fd >= 0) {
      static constexpr char ping[] = "*1\r\n$4\r\nPING\r\n";
      const bool sent = ::write(fd, ping, sizeof ping - 1) == static_cast<ssize_t>(sizeof ping - 1);
      const std::string got = sent ? read_reply(fd, one_reply) : std::string();
      ::close(fd);
      if (got == "+PONG\r\n") return true;
      // "-LOADING ...": the append-only file is still being read.
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::string redis_server::log_tail() const {
  std::ifstream in(dir_ + "/redis.log");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > 20 ? lines.size() - 20 : 0; i < lines.size(); ++i) {
    out += lines[i] + "\n";
  }
  return out.empty() ? "(empty log)\n" : out;
}

void redis_server::stop() {
  if (pid_ <= 0) return;
  if (stopped_) sigcont();
  ::kill(pid_, SIGTERM);
  const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up_at) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
}

void redis_server::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  stopped_ = false;
}

void redis_server::restart() {
  stop();
  start();
  if (!wait_until_ready(std::chrono::seconds(20))) {
    const std::string log = log_tail();
    kill();
    throw std::runtime_error("redis_server: restarted redis-server did not answer PING on port " +
                             std::to_string(port_) + " within 20 s; its log ends with:\n" + log);
  }
}

void redis_server::sigstop() {
  if (pid_ <= 0 || stopped_) return;
  ::kill(pid_, SIGSTOP);
  int status = 0;
  ::waitpid(pid_, &status, WUNTRACED);
  stopped_ = true;
}

void redis_server::sigcont() {
  if (pid_ <= 0 || !stopped_) return;
  ::kill(pid_, SIGCONT);
  int status = 0;
  ::waitpid(pid_, &status, WCONTINUED);
  stopped_ = false;
}

std::string redis_server::command(std::initializer_list<std::string> args,
                                  std::chrono::milliseconds timeout) const {
  const int fd = connect_loopback(port_, timeout);
  if (fd < 0) {
    throw std::runtime_error("redis_server::command: cannot connect to 127.0.0.1:" +
                             std::to_string(port_) + ": " + errno_text(errno));
  }
  std::ostringstream out;
  out << '*' << args.size() << "\r\n";
  for (const std::string& a : args) out << '$' << a.size() << "\r\n" << a << "\r\n";
  const std::string bytes = out.str();
  const bool sent = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  std::string got = sent ? read_reply(fd, one_reply) : std::string();
  ::close(fd);
  return got;
}

}  // namespace hwsync::test
