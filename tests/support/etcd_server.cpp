#include "support/etcd_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <initializer_list>
#include <random>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "support/server_process.hpp"

namespace hwsync::test {

namespace {

constexpr const char* etcd_path = "/usr/bin/etcd";

// Concatenation without operator+ on temporaries, which GCC 12 -O3 flags
// with a false -Wrestrict (char_traits.h memcpy "may overlap").
std::string cat(std::initializer_list<std::string_view> parts) {
  std::size_t n = 0;
  for (std::string_view p : parts) n += p.size();
  std::string out;
  out.reserve(n);
  for (std::string_view p : parts) out.append(p);
  return out;
}

std::string make_temp_dir() {
  std::string base = "/tmp";
  if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') base = t;
  std::string pattern = base + "/hwsync-etcd-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("etcd_cluster: mkdtemp(" + pattern + "): " + errno_text(errno));
  }
  return pattern;
}

std::string tail_of_file(const std::string& path, std::size_t max_lines) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > max_lines ? lines.size() - max_lines : 0; i < lines.size();
       ++i) {
    out += lines[i];
    out += '\n';
  }
  return out.empty() ? std::string("(empty log)\n") : out;
}

}  // namespace

std::optional<std::string> http_get(int port, const std::string& path,
                                    std::chrono::milliseconds timeout) {
  const int fd = connect_loopback(port, timeout);
  if (fd < 0) return std::nullopt;
  std::string request = "GET ";
  request.append(path).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return std::nullopt;
  }
  std::string got;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      ::close(fd);
      return std::nullopt;  // timed out before the server closed
    }
    if (n == 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto body = got.find("\r\n\r\n");
  if (got.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos) return std::nullopt;
  return got.substr(body + 4);
}

etcd_cluster::etcd_cluster(std::size_t members) : dir_(make_temp_dir()) {
  if (members == 0) throw std::invalid_argument("etcd_cluster: expected at least 1 member, got 0");
  std::random_device seed;
  cluster_token_ = cat({"hwsync-", std::to_string(seed())});
  members_.resize(members);
  for (std::size_t i = 0; i < members; ++i) {
    members_[i].name = cat({"m", std::to_string(i)});
    members_[i].data_dir = cat({dir_, "/", members_[i].name});
  }
  // A port found free can be taken before etcd binds it (etcd then exits):
  // start over on other ports, with fresh data directories.
  for (int attempt = 0;; ++attempt) {
    for (member& m : members_) {
      m.client_port = free_local_port();
      m.peer_port = free_local_port();
    }
    for (std::size_t i = 0; i < members; ++i) start(i);
    if (wait_until_healthy(std::chrono::seconds(30))) return;
    const std::string logs = log_tails();
    for (std::size_t i = 0; i < members; ++i) kill(i);
    for (member& m : members_) {
      std::error_code ignored;
      std::filesystem::remove_all(m.data_dir, ignored);
    }
    if (attempt == 3) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
      throw std::runtime_error("etcd_cluster: " + std::to_string(members) +
                               " etcd member(s) did not report healthy within 30 s; logs:\n" +
                               logs);
    }
  }
}

etcd_cluster::~etcd_cluster() {
  for (std::size_t i = 0; i < members_.size(); ++i) stop(i);
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string etcd_cluster::endpoint(std::size_t member) const {
  return cat({"127.0.0.1:", std::to_string(members_.at(member).client_port)});
}

std::string etcd_cluster::uri() const {
  std::string out = "etcd://";
  for (std::size_t i = 0; i < members_.size(); ++i) {
    if (i != 0) out += ',';
    out += endpoint(i);
  }
  return out;
}

std::string etcd_cluster::initial_cluster() const {
  std::string out;
  for (const member& m : members_) {
    if (!out.empty()) out += ',';
    out += cat({m.name, "=http://127.0.0.1:", std::to_string(m.peer_port)});
  }
  return out;
}

void etcd_cluster::start(std::size_t index) {
  member& m = members_.at(index);
  const std::string client_url = cat({"http://127.0.0.1:", std::to_string(m.client_port)});
  const std::string peer_url = cat({"http://127.0.0.1:", std::to_string(m.peer_port)});
  std::vector<std::string> args = {etcd_path,
                                   cat({"--name=", m.name}),
                                   cat({"--data-dir=", m.data_dir}),
                                   cat({"--listen-client-urls=", client_url}),
                                   cat({"--advertise-client-urls=", client_url}),
                                   cat({"--listen-peer-urls=", peer_url}),
                                   cat({"--initial-advertise-peer-urls=", peer_url}),
                                   cat({"--initial-cluster=", initial_cluster()}),
                                   cat({"--initial-cluster-token=", cluster_token_}),
                                   "--initial-cluster-state=new",
                                   "--logger=zap",
                                   cat({"--log-outputs=", dir_, "/", m.name, ".log"})};
  // etcd's Go runtime would use every core for GC workers; two are plenty on
  // a shared 2-core machine.
  const pid_t pid =
      spawn_tied_to_this_thread(std::move(args), {{"GOMAXPROCS", "2"}}, "etcd_cluster");
  m.pid = pid;
  m.stopped = false;
}

bool etcd_cluster::healthy(std::size_t index) const {
  const member& m = members_.at(index);
  if (m.pid <= 0 || m.stopped) return false;
  const auto body = http_get(m.client_port, "/health", std::chrono::milliseconds(1000));
  return body && body->find("\"health\":\"true\"") != std::string::npos;
}

bool etcd_cluster::wait_until_healthy(std::chrono::milliseconds limit) {
  const auto give_up_at = std::chrono::steady_clock::now() + limit;
  std::vector<bool> ok(members_.size(), false);
  while (std::chrono::steady_clock::now() < give_up_at) {
    bool all = true;
    for (std::size_t i = 0; i < members_.size(); ++i) {
      if (ok[i] || members_[i].pid <= 0) continue;
      int status = 0;
      if (::waitpid(members_[i].pid, &status, WNOHANG) == members_[i].pid) {
        members_[i].pid = -1;  // it exited: a port taken, a bad flag
        return false;
      }
      ok[i] = healthy(i);
      all = all && ok[i];
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string etcd_cluster::log_tails() const {
  std::string out;
  for (const member& m : members_) {
    out += "--- " + m.name + " (client port " + std::to_string(m.client_port) + ", peer port " +
           std::to_string(m.peer_port) + ")\n";
    out += tail_of_file(dir_ + "/" + m.name + ".log", 10);
  }
  return out;
}

void etcd_cluster::stop(std::size_t index) {
  member& m = members_.at(index);
  if (m.pid <= 0) return;
  if (m.stopped) sigcont(index);
  ::kill(m.pid, SIGTERM);
  const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (::waitpid(m.pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up_at) {
      ::kill(m.pid, SIGKILL);
      ::waitpid(m.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  m.pid = -1;
}

void etcd_cluster::kill(std::size_t index) {
  member& m = members_.at(index);
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  int status = 0;
  ::waitpid(m.pid, &status, 0);
  m.pid = -1;
  m.stopped = false;
}

void etcd_cluster::restart(std::size_t index) {
  stop(index);
  start(index);
  const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!healthy(index)) {
    int status = 0;
    if (::waitpid(members_[index].pid, &status, WNOHANG) == members_[index].pid ||
        std::chrono::steady_clock::now() > give_up_at) {
      const std::string logs = log_tails();
      kill(index);
      throw std::runtime_error("etcd_cluster: restarted member " + members_[index].name +
                               " did not report healthy within 30 s; logs:\n" + logs);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void etcd_cluster::sigstop(std::size_t index) {
  member& m = members_.at(index);
  if (m.pid <= 0 || m.stopped) return;
  ::kill(m.pid, SIGSTOP);
  int status = 0;
  ::waitpid(m.pid, &status, WUNTRACED);
  m.stopped = true;
}

void etcd_cluster::sigcont(std::size_t index) {
  member& m = members_.at(index);
  if (m.pid <= 0 || !m.stopped) return;
  ::kill(m.pid, SIGCONT);
  int status = 0;
  ::waitpid(m.pid, &status, WCONTINUED);
  m.stopped = false;
}

std::optional<std::size_t> etcd_cluster::leader() const {
  for (std::size_t i = 0; i < members_.size(); ++i) {
    const member& m = members_[i];
    if (m.pid <= 0 || m.stopped) continue;
    const auto metrics = http_get(m.client_port, "/metrics", std::chrono::milliseconds(1000));
    if (metrics && metrics->find("\netcd_server_is_leader 1") != std::string::npos) return i;
  }
  return std::nullopt;
}

std::size_t etcd_cluster::wait_for_leader(std::chrono::milliseconds limit) const {
  const auto give_up_at = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (const auto l = leader()) return *l;
    if (std::chrono::steady_clock::now() > give_up_at) {
      throw std::runtime_error("etcd_cluster: no member reported itself leader within " +
                               std::to_string(limit.count()) + " ms; logs:\n" + log_tails());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace hwsync::test
