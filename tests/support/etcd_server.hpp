// Real etcd processes (/usr/bin/etcd, Debian's etcd-server 3.4) for
// integration tests: one member or a real N-member Raft cluster, each member
// its own process on 127.0.0.1 with free client and peer ports and its own
// temporary data directory. The constructor returns once every member's
// /health endpoint answers {"health":"true"} (which etcd only says when the
// cluster has a leader). The processes are always stopped: by the
// destructor, and by the kernel if the test process dies first (SIGKILL
// through PR_SET_PDEATHSIG when the thread that started them exits: create
// the cluster on the test's main thread, or on one that outlives it).
//
// It talks to etcd only over plain HTTP/1.1 on the client port (/health,
// /metrics), never through the client under test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace hwsync::test {

class etcd_cluster {
 public:
  // Starts `members` etcd processes (1 = a single member) and waits until
  // all of them report healthy. Throws std::runtime_error with the tail of
  // the members' logs if they are not healthy within 30 s (after retrying
  // with other ports when a port was taken meanwhile).
  explicit etcd_cluster(std::size_t members = 1);
  ~etcd_cluster();
  etcd_cluster(const etcd_cluster&) = delete;
  etcd_cluster& operator=(const etcd_cluster&) = delete;

  std::size_t size() const noexcept { return members_.size(); }
  int client_port(std::size_t member) const { return members_.at(member).client_port; }
  // "127.0.0.1:<client port>"
  std::string endpoint(std::size_t member) const;
  // "etcd://127.0.0.1:<p0>,127.0.0.1:<p1>,..." (every member, in order).
  std::string uri() const;
  bool running(std::size_t member) const { return members_.at(member).pid > 0; }
  const std::string& dir() const noexcept { return dir_; }

  // SIGTERM (after SIGCONT if stopped), then SIGKILL after 10 s. Idempotent.
  void stop(std::size_t member);
  // SIGKILL at once: a crash.
  void kill(std::size_t member);
  // stop() if running, then start it again on the same ports and data
  // directory (it rejoins with its data) and wait until it is healthy.
  void restart(std::size_t member);
  // Freezes and thaws a member (it keeps its sockets: clients and peers see
  // silence, not a closed connection). Both return once the change happened.
  void sigstop(std::size_t member);
  void sigcont(std::size_t member);

  // The index of the running, not stopped member that reports itself leader
  // (its /metrics says etcd_server_is_leader 1), or nullopt if none does now.
  std::optional<std::size_t> leader() const;
  // Polls leader() until one is found; throws std::runtime_error after
  // `limit`.
  std::size_t wait_for_leader(std::chrono::milliseconds limit = std::chrono::seconds(30)) const;
  // Whether `member` answers {"health":"true"} on its /health endpoint now.
  bool healthy(std::size_t member) const;

 private:
  struct member {
    std::string name;
    std::string data_dir;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
    bool stopped = false;  // SIGSTOPped
  };

  void start(std::size_t member);
  bool wait_until_healthy(std::chrono::milliseconds limit);
  std::string log_tails() const;
  std::string initial_cluster() const;

  std::string dir_;
  std::string cluster_token_;
  std::vector<member> members_;
};

// GET `path` on 127.0.0.1:`port` (HTTP/1.1, Connection: close); the body, or
// nullopt if the connection or the exchange failed within `timeout`.
std::optional<std::string> http_get(int port, const std::string& path,
                                    std::chrono::milliseconds timeout);

}  // namespace hwsync::test
