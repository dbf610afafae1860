// net/src/redis/subscriber.hpp — one pub/sub connection per Redis backend,
// shared by every lock waiting for a release: waiters wake on the release
// message of their lock instead of polling. Private to the redis backend.
//
// Contract
//   subscribe(channel) registers interest (counted: the first waiter sends
//   SUBSCRIBE, the last one's ~subscription sends UNSUBSCRIBE), connecting
//   lazily. A subscription's generation() grows by one for every message on
//   its channel and for every loss of the connection (whoever waits must
//   retry then: a release may have gone unseen). wait_for_change(seen,
//   until) parks until generation() != seen or `until` passes; it never
//   throws for a server that is down — the caller's next command reports
//   that — it just waits out `until` (the caller's bounded backoff).
//   confirmed(until) waits for the server's "subscribe" reply for the
//   channel, after which every release is seen (true), or for `until`.
//   Wire order: the decision to (un)subscribe and its send happen under one
//   mutex, so SUBSCRIBE and UNSUBSCRIBE of one channel never cross.
//   Coroutines: async_subscribe, async_confirmed and async_wait_for_change
//   are the same for a coroutine (distributed_lock::async_lock): they sleep
//   on the ring (a timer cancelled by the reader when a push for the
//   channel or a loss arrives, or by the caller's stop token) instead of
//   parking a thread, and connect with the ring's async_connect.
//   No waiting under send_mutex_: connecting happens before it is taken,
//   and (UN)SUBSCRIBE go out with one non-blocking send(2) (a command that
//   does not fit in the socket buffer breaks the link, and the reconnect
//   subscribes again), so the loop thread may take it: a coroutine's
//   subscription can be made and dropped there.
//   Threads: the blocking members on any thread but a ring loop thread; the
//   async members and ~subscription on any thread.
//
// State (the pub/sub connection, under send_mutex_; `broken` is also set
// by the reader coroutine on the loop thread):
//   current  broken  meaning                     next
//   none     -       never connected / given up  subscribe() or a waiter connects
//                                                (at most every 100 ms)
//   link     no      subscribed to every channel with waiters
//   link     yes     lost (reset, EOF, garbage)  waiters woken (epoch + 1);
//                                                the next caller reconnects and
//                                                resubscribes
// Per channel (under the shared mutex): waiters (count), messages (count),
// confirmed (the server's "subscribe" reply seen on the current link),
// sleepers (the coroutines sleeping on the ring for it: woken by any push
// for the channel and by a loss).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>

#include "hwsync/condition_variable.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/net/ring.hpp"

namespace hwsync::net::redis {

class subscriber {
 public:
  subscriber(std::string host, std::uint16_t port, ring& r = ring::default_ring());
  ~subscriber();
  subscriber(const subscriber&) = delete;
  subscriber& operator=(const subscriber&) = delete;

  class subscription {
   public:
    ~subscription();
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;

    std::uint64_t generation() const;
    bool confirmed(steady_time until) const;
    void wait_for_change(std::uint64_t seen, steady_time until) const;

    // The coroutine forms: false when `stop` was requested first, true
    // otherwise (confirmed / changed, or `until` passed: as the blocking
    // forms, the caller's next attempt decides).
    task<bool> async_confirmed(steady_time until, std::stop_token stop) const;
    task<bool> async_wait_for_change(std::uint64_t seen, steady_time until,
                                     std::stop_token stop) const;

   private:
    friend class subscriber;
    // Sleeps on the ring until `ready` (checked under the shared mutex
    // first and after every wake-up), `until`, or `stop`.
    task<bool> async_sleep(std::function<bool()> ready, steady_time until,
                           std::stop_token stop) const;
    subscription(subscriber& owner, std::string channel)
        : owner_(owner), channel_(std::move(channel)) {}
    subscriber& owner_;
    std::string channel_;
  };

  // Registers interest in `channel`; sends SUBSCRIBE if this is the first
  // waiter (a failure to connect is not thrown: see the contract).
  std::unique_ptr<subscription> subscribe(const std::string& channel);
  task<std::unique_ptr<subscription>> async_subscribe(std::string channel);

  struct shared;  // what the reader coroutine shares (subscriber.cpp)

 private:
  void send_locked(std::string_view verb, const std::string& channel);
  std::unique_ptr<subscription> register_locked(const std::string& channel);
  // Whether a new connection is to be made now (none is live, and the last
  // failure is older than the reconnect interval).
  bool needs_connection();
  void connection_failed();
  void install(tcp_connection tcp);  // unless a live one was installed first
  void ensure_connected();
  task<void> async_ensure_connected();

  std::string host_;
  std::uint16_t port_;
  ring* ring_;
  hwsync::mutex send_mutex_;  // (un)subscribe decisions + sends + reconnects
  std::shared_ptr<shared> shared_;
  steady_time next_connect_attempt_{};
};

}  // namespace hwsync::net::redis
