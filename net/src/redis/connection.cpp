#include "redis/connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <deque>
#include <exception>
#include <mutex>
#include <utility>

#include "hwsync/semaphore.hpp"

namespace hwsync::net::redis {

namespace {

// One batch of commands waiting for its replies. `done` is released at
// most once (`signalled`): when the batch finishes (replies or failure), or
// earlier when the batch's caller is handed the reader's role, after which
// it never waits on `done` again. The caller tells which by looking at
// `finished` and `reader_turn` under the queue mutex.
struct pending_batch {
  explicit pending_batch(std::size_t n) : expected(n) { replies.reserve(n); }
  std::size_t expected;
  std::vector<reply> replies;  // guarded by the queue mutex until finished
  std::exception_ptr failure;  // ditto
  bool finished = false;       // ditto
  bool reader_turn = false;    // ditto: read for everyone now
  bool signalled = false;      // ditto: `done` has been released
  hwsync::binary_semaphore done{0};
};

std::string ms_text(steady_time deadline, steady_time start) {
  if (deadline == no_deadline) return "no deadline";
  const auto ms = std::chrono::round<std::chrono::milliseconds>(deadline - start).count();
  return std::to_string(ms) + " ms";
}

}  // namespace

// One TCP connection. Its callers send (under the connection's send mutex)
// and take turns reading: at most one reader at a time (reader_active),
// which completes every batch in FIFO order until its own is done, then
// hands the role to the caller of the oldest batch still waiting.
//
// State (guarded by queue_mutex):
//   broken  reader_active  meaning
//   no      no             idle, or batches waiting for a reader to be chosen
//   no      yes            one caller reads for everyone
//   yes     -              failed: every batch failed with `broken`; the
//                          next call reconnects (a new state)
struct connection::state {
  tcp_connection tcp;
  reply_decoder decoder;  // the current reader's (handed over under queue_mutex)

  hwsync::mutex queue_mutex;
  std::deque<std::shared_ptr<pending_batch>> queue;  // in wire order
  std::exception_ptr broken;                         // set once
  bool reader_active = false;
};

namespace {

void finish_locked(pending_batch& b, std::exception_ptr failure) {
  b.failure = std::move(failure);
  b.finished = true;
}

// Marks the connection broken (the first reason wins), fails every batch
// in flight with it, and shuts the socket down so that a reader blocked in
// poll() wakes up.
void fail_all(connection::state& st, std::exception_ptr why) {
  std::deque<std::shared_ptr<pending_batch>> failed;
  {
    std::lock_guard g(st.queue_mutex);
    if (!st.broken) st.broken = std::move(why);
    failed.swap(st.queue);
    for (auto& b : failed) finish_locked(*b, st.broken);
    std::erase_if(failed, [](const auto& b) { return std::exchange(b->signalled, true); });
  }
  ::shutdown(st.tcp.native_handle(), SHUT_RDWR);
  for (auto& b : failed) b->done.release();
}

// The reader's loop: recv(2) on the caller's thread, parse, complete
// batches in order, until `own` has finished (or the connection failed,
// which finishes it too). Never throws: failures go to fail_all.
void read_until_finished(connection::state& st, pending_batch& own, steady_time deadline,
                         steady_time start, std::string_view what) {
  std::array<char, 16 * 1024> buffer;
  for (;;) {
    {
      std::lock_guard g(st.queue_mutex);
      if (own.finished) return;
    }
    int wait_ms = -1;
    if (deadline != no_deadline) {
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      wait_ms = static_cast<int>(std::clamp<long long>(left.count(), 0, INT_MAX));
    }
    pollfd p{st.tcp.native_handle(), POLLIN, 0};
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      fail_all(st,
               std::make_exception_ptr(error(
                   errc::timed_out, "redis " + st.tcp.peer() + ": expected the replies to " +
                                        std::string(what) + " within " + ms_text(deadline, start) +
                                        ", got none (the connection is dropped)")));
      return;
    }
    try {
      if (ready < 0) {
        const int err = errno;  // before the message's allocations
        throw_errno(err, "poll on redis " + st.tcp.peer(), "replies");
      }
      const ssize_t n = ::recv(st.tcp.native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
      const int err = errno;
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) continue;
      if (n < 0) throw_errno(err, "recv from redis " + st.tcp.peer(), "replies");
      if (n == 0) {
        throw error(errc::closed_by_peer, "redis " + st.tcp.peer() + ": expected the replies to " +
                                              std::string(what) +
                                              ", got end of stream (the server closed the "
                                              "connection)");
      }
      st.decoder.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
      reply r;
      while (st.decoder.next(r)) {
        std::shared_ptr<pending_batch> complete;
        {
          std::lock_guard g(st.queue_mutex);
          if (st.queue.empty()) {
            throw error(errc::protocol_error,
                        "redis " + st.tcp.peer() +
                            ": expected no reply (no command is waiting for one), got " +
                            r.describe());
          }
          auto& front = st.queue.front();
          front->replies.push_back(std::move(r));
          if (front->replies.size() == front->expected) {
            complete = std::move(front);
            st.queue.pop_front();
            finish_locked(*complete, nullptr);
            if (complete.get() == &own || std::exchange(complete->signalled, true)) {
              complete.reset();
            }
          }
        }
        if (complete) complete->done.release();
      }
    } catch (...) {
      fail_all(st, std::current_exception());
      return;
    }
  }
}

// The reader is done: the oldest waiting batch's caller reads next.
void pass_reader_role(connection::state& st) {
  std::shared_ptr<pending_batch> next;
  {
    std::lock_guard g(st.queue_mutex);
    st.reader_active = false;
    if (!st.broken && !st.queue.empty()) {
      next = st.queue.front();
      next->reader_turn = true;
      st.reader_active = true;
      next->signalled = true;  // it waits: only finished batches were signalled
    }
  }
  if (next) next->done.release();
}

// Sends on the caller's thread with one non-blocking send(2) while the
// socket buffer has room (the usual case: a command is a few hundred
// bytes), and through the ring only for what does not fit. Going through
// the ring for every command would cost a trip through the loop thread and
// a futex wake-up of the caller before the command is even on the wire.
void send_commands(connection::state& st, std::string_view bytes, steady_time deadline) {
  while (!bytes.empty()) {
    const ssize_t n =
        ::send(st.tcp.native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    const int err = n < 0 ? errno : EPIPE;  // before the message's allocations
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
    } else if (err == EINTR) {
      continue;
    } else if (err == EAGAIN || err == EWOULDBLOCK) {
      st.tcp.send_all(bytes, deadline);  // waits for room on the ring, by the deadline
      return;
    } else {
      throw_errno(err, "send to redis " + st.tcp.peer(), "the command to go out");
    }
  }
}

}  // namespace

connection::connection(std::string host, std::uint16_t port, ring& r)
    : host_(std::move(host)), port_(port), peer_(host_ + ":" + std::to_string(port)), ring_(&r) {}

// Nothing to wait for: no operation of a connection outlives the call that
// made it (the reader is always a caller).
connection::~connection() = default;

// Under send_mutex_: the live connection, reconnecting if it broke. The old
// socket closes when the last caller still holding its state lets go.
std::shared_ptr<connection::state> connection::connected(steady_time deadline) {
  if (state_) {
    std::lock_guard g(state_->queue_mutex);
    if (!state_->broken) return state_;
  }
  auto st = std::make_shared<state>();
  st->tcp = tcp_connection::connect(host_, port_, deadline, {}, *ring_);
  state_ = st;
  return st;
}

void connection::drop(const std::shared_ptr<state>& st, std::exception_ptr why) {
  fail_all(*st, std::move(why));
}

std::vector<reply> connection::exchange(std::string commands, std::size_t count,
                                        steady_time deadline, std::string_view what) {
  const steady_time start = std::chrono::steady_clock::now();
  auto batch = std::make_shared<pending_batch>(count);
  std::shared_ptr<state> st;
  {
    std::lock_guard g(send_mutex_);
    st = connected(deadline);
    {
      std::lock_guard q(st->queue_mutex);
      if (st->broken) std::rethrow_exception(st->broken);
      st->queue.push_back(batch);
    }
    try {
      send_commands(*st, commands, deadline);
    } catch (...) {
      // Part of the batch may be on the wire: nothing after it can be
      // matched any more.
      drop(st, std::current_exception());
      throw;
    }
  }
  // Read the replies ourselves if nobody is reading; otherwise wait until
  // the reader has completed our batch or handed us its role.
  bool reading;
  {
    std::lock_guard q(st->queue_mutex);
    reading = !batch->finished && !st->reader_active;
    if (reading) st->reader_active = true;
  }
  for (;;) {
    if (reading) {
      read_until_finished(*st, *batch, deadline, start, what);
      pass_reader_role(*st);
      break;
    }
    const bool woke = deadline == no_deadline ? (batch->done.acquire(), true)
                                              : batch->done.try_acquire_until(deadline);
    if (!woke) {
      drop(st, std::make_exception_ptr(error(
                   errc::timed_out, "redis " + peer_ + ": expected the replies to " +
                                        std::string(what) + " within " + ms_text(deadline, start) +
                                        ", got none (the connection is dropped)")));
    }
    std::lock_guard q(st->queue_mutex);
    if (batch->finished) break;
    if (batch->reader_turn) {
      batch->reader_turn = false;
      reading = true;
    }
  }
  std::lock_guard q(st->queue_mutex);
  if (batch->failure) std::rethrow_exception(batch->failure);
  return std::move(batch->replies);
}

reply connection::call(std::initializer_list<std::string_view> args, steady_time deadline) {
  std::string bytes;
  append_command(bytes, args);
  const std::string what = args.size() == 0 ? std::string("(empty)") : std::string(*args.begin());
  return std::move(exchange(std::move(bytes), 1, deadline, what).front());
}

std::string connection::load_script(const lua_script& script, steady_time deadline) {
  reply r = call({"SCRIPT", "LOAD", script.body}, deadline);
  if (r.type != reply::kind::bulk_string || r.text.size() != 40) {
    throw error(errc::protocol_error, "redis " + peer_ + " SCRIPT LOAD " + script.name +
                                          ": expected the script's SHA1 (40 hex digits), got " +
                                          r.describe());
  }
  std::lock_guard g(scripts_mutex_);
  script_sha_.at(script.id) = r.text;
  return r.text;
}

reply connection::eval(const lua_script& script, std::initializer_list<std::string_view> keys,
                       std::initializer_list<std::string_view> args, steady_time deadline) {
  std::string sha;
  {
    std::lock_guard g(scripts_mutex_);
    sha = script_sha_.at(script.id);
  }
  if (sha.empty()) sha = load_script(script, deadline);
  const std::string numkeys = std::to_string(keys.size());
  const std::string what = std::string("EVALSHA ") + script.name;
  auto send = [&] {
    std::vector<std::string_view> argv = {"EVALSHA", sha, numkeys};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    std::string bytes;
    append_command(bytes, argv);
    return std::move(exchange(std::move(bytes), 1, deadline, what).front());
  };
  reply r = send();
  if (r.is_error() && r.text.starts_with("NOSCRIPT")) {
    sha = load_script(script, deadline);
    r = send();
  }
  return r;
}

}  // namespace hwsync::net::redis
