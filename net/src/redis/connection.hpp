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
//   Sending       On the caller's thread: non-blocking send(2), and
//                 poll(2) for room by the deadline when the socket buffer
//                 is full. Connecting: the ring's tcp_connection::connect
//                 (async_connect for a coroutine), before send_mutex_.
//   Why not the ring for blocking callers' replies   A reader coroutine on
//                 the loop thread costs every reply a futex wake-up of its
//                 blocking caller: measured
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
//   Coroutines    async_exchange()/async_eval() are the same for a
//                 coroutine (distributed_lock::async_*): the commands go out
//                 on the calling thread, the coroutine suspends, and it
//                 resumes on the ring's loop thread with its replies. When
//                 the oldest batch waiting belongs to a coroutine, nobody's
//                 thread can read for it, so a reader coroutine on the loop
//                 thread does (one io_uring recv for whatever arrived, then
//                 it resumes every finished coroutine inline and sends their
//                 next commands together in one send(2) before the next
//                 recv: one thread keeps many batches in flight). A
//                 blocking reader that finishes
//                 a coroutine's batch posts its resumption to the loop (a
//                 nop completion).
//   No waiting on the ring under send_mutex_   Connecting happens before
//                 it is taken, and a send that finds the socket buffer full
//                 waits in poll(2) on the sender's own thread (by the
//                 deadline), so a coroutine on the loop thread that takes
//                 send_mutex_ never waits for a thread that waits for the
//                 loop. (On the loop thread, that poll stalls the loop until
//                 the server reads: only with megabytes of commands unread.)
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

  // As exchange() and eval(), for a coroutine; resume on the ring's loop
  // thread. `keys_and_args`: the script's `numkeys` keys, then its args.
  task<std::vector<reply>> async_exchange(std::string commands, std::size_t count,
                                          steady_time deadline, std::string what);
  task<reply> async_eval(const lua_script& script, std::vector<std::string> keys_and_args,
                         std::size_t numkeys, steady_time deadline);

  // "host:port", for messages.
  const std::string& peer() const noexcept { return peer_; }

  struct state;  // one TCP connection and its queue (connection.cpp)

 private:
  std::shared_ptr<state> current();                    // the live connection, or null
  std::shared_ptr<state> install(tcp_connection tcp);  // unless another caller was first
  std::string load_script(const lua_script& script, steady_time deadline);
  task<std::string> async_load_script(const lua_script& script, steady_time deadline);
  std::string remember_sha(const lua_script& script, const reply& r);
  std::string evalsha_command(const std::string& sha,
                              std::span<const std::string_view> keys_and_args,
                              std::size_t numkeys) const;

  std::string host_;
  std::uint16_t port_;
  std::string peer_;
  ring* ring_;

  hwsync::mutex send_mutex_;  // the wire order: enqueue + send; guards state_
  std::shared_ptr<state> state_;

  hwsync::mutex scripts_mutex_;
  std::array<std::string, 8> script_sha_;  // by lua_script::id; empty: not loaded yet
};

}  // namespace hwsync::net::redis
