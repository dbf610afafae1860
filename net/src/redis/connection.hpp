// net/src/redis/connection.hpp — a Redis connection on the ring, pipelined:
// any number of threads send commands on one TCP connection and each gets
// its own replies, matched in order. Private to the redis backend.
//
// Contract
//   Pipelining    exchange() sends a batch of commands (one send) and
//                 waits for as many replies. Batches from several threads
//                 are in flight at once: a FIFO of pending batches, appended
//                 in the order the bytes go on the wire (both under
//                 send_mutex_), is completed in order by whichever caller
//                 is reading at the moment: at most one reads (recv(2) on
//                 its own thread), completes every batch whose replies
//                 arrive, wakes their callers (a binary_semaphore each), and
//                 when its own batch is done hands the role to the caller of
//                 the oldest batch still waiting. A lone caller thus sends
//                 and receives on its own thread, as a blocking client does,
//                 without a hop through the ring's loop thread.
//   Sending       On the caller's thread: one non-blocking send(2) when
//                 the socket buffer has room, the ring's send_all (by the
//                 deadline) for the rest. Connecting: the ring's
//                 tcp_connection::connect.
//   Why not the ring for replies   A reader coroutine on the loop thread
//                 costs every reply a futex wake-up of its caller: measured
//                 with bench/redis_bench.cpp, lock+unlock's p50 went from
//                 1.51x hiredis's blocking client to 1.06x when callers read
//                 themselves (docs/distributed-locks.md, "Redis backend").
//   Connecting    Lazily, on the first command and after the connection
//                 broke; connection refused, timeouts and the like reach the
//                 caller as net::error.
//   Deadlines     Every call takes one. A reply that has not arrived by then
//                 throws net::error(timed_out), and the connection is
//                 dropped (the next call reconnects): replies still owed on
//                 it would otherwise arrive later and be matched with
//                 nothing, and a server that stays silent is not worth
//                 queueing behind. Other batches in flight on the dropped
//                 connection fail with the same error.
//   Failures      A reset, an EOF or a malformed reply fails every batch in
//                 flight with that net::error and drops the connection.
//                 An error *reply* (-ERR ...) is not a failure of the
//                 connection: it is returned as a reply of kind error.
//   Scripts       eval() sends EVALSHA; on NOSCRIPT it sends SCRIPT LOAD and
//                 retries once (a restarted server has an empty cache).
//   Threads       All members may be called from any thread but a ring loop
//                 thread (they block).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hwsync/mutex.hpp"
#include "hwsync/net/ring.hpp"
#include "redis/resp.hpp"

namespace hwsync::net::redis {

// A Lua script and the SHA1 the server reported for it (learned from the
// first SCRIPT LOAD; `id` indexes the connection's cache).
struct lua_script {
  std::string_view body;
  std::size_t id;
  const char* name;  // for messages
};

class connection {
 public:
  connection(std::string host, std::uint16_t port, ring& r = ring::default_ring());
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Sends `commands` (RESP2, append_command(), `count` of them back to
  // back) and returns their `count` replies in order. `what` names the
  // commands for messages ("EVALSHA acquire").
  std::vector<reply> exchange(std::string commands, std::size_t count, steady_time deadline,
                              std::string_view what);

  // One command.
  reply call(std::initializer_list<std::string_view> args, steady_time deadline);

  // EVALSHA of `script` with `keys` and `args`; SCRIPT LOAD and retry once
  // on NOSCRIPT. Returns the script's reply (an error reply is returned, not
  // thrown).
  reply eval(const lua_script& script, std::initializer_list<std::string_view> keys,
             std::initializer_list<std::string_view> args, steady_time deadline);

  // "host:port", for messages.
  const std::string& peer() const noexcept { return peer_; }

  struct state;  // one TCP connection and its queue (connection.cpp)

 private:
  std::shared_ptr<state> connected(steady_time deadline);
  void drop(const std::shared_ptr<state>& st, std::exception_ptr why);
  std::string load_script(const lua_script& script, steady_time deadline);

  std::string host_;
  std::uint16_t port_;
  std::string peer_;
  ring* ring_;

  hwsync::mutex send_mutex_;  // the wire order: connect, enqueue + send
  std::shared_ptr<state> state_;

  hwsync::mutex scripts_mutex_;
  std::array<std::string, 8> script_sha_;  // by lua_script::id; empty: not loaded yet
};

}  // namespace hwsync::net::redis
