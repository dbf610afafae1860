#include "redis/connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <coroutine>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <utility>

#include "hwsync/semaphore.hpp"

namespace hwsync::net::redis {

namespace {

// One batch of commands waiting for its replies. A blocking caller waits on
// `done`, released at most once (`signalled`): when the batch finishes
// (replies or failure), or earlier when the batch's caller is handed the
// reader's role, after which it never waits on `done` again. The caller
// tells which by looking at `finished` and `reader_turn` under the queue
// mutex. A coroutine caller (resume_ring set) stores its handle in `waiter`
// when it suspends and is resumed once, when the batch finishes; it is
// never handed the reader's role (a reader coroutine takes it instead).
struct pending_batch {
  explicit pending_batch(std::size_t n) : expected(n) { replies.reserve(n); }
  std::size_t expected;
  steady_time deadline = no_deadline;
  ring* resume_ring = nullptr;     // a coroutine waits, and resumes on this ring's loop
  std::vector<reply> replies;      // guarded by the queue mutex until finished
  std::exception_ptr failure;      // ditto
  bool finished = false;           // ditto
  bool reader_turn = false;        // ditto: read for everyone now
  bool signalled = false;          // ditto: `done` has been released
  std::coroutine_handle<> waiter;  // ditto: the suspended coroutine
  hwsync::binary_semaphore done{0};
  detail::io_operation post{io_request{}};  // a nop that resumes `waiter` on the loop
};

// Someone to wake, chosen under the queue mutex, woken after it is let go
// (a coroutine resumed inline may send at once, which takes the locks).
struct wake_up {
  std::shared_ptr<pending_batch> batch;
  std::coroutine_handle<> coroutine;  // empty: release batch->done
};

// Under the queue mutex, for a batch that just finished (or, blocking, was
// chosen to read): who must be woken, if anyone (a coroutine that has not
// suspended yet sees `finished` itself; `done` is released once).
std::optional<wake_up> claim_locked(const std::shared_ptr<pending_batch>& b) {
  if (b->resume_ring != nullptr) {
    if (!b->waiter) return std::nullopt;
    return wake_up{b, std::exchange(b->waiter, {})};
  }
  if (std::exchange(b->signalled, true)) return std::nullopt;
  return wake_up{b, {}};
}

void wake(const wake_up& w) {
  if (!w.coroutine) {
    w.batch->done.release();
    return;
  }
  ring& r = *w.batch->resume_ring;
  if (r.on_loop_thread()) {
    w.coroutine.resume();
    return;
  }
  detail::io_operation& op = w.batch->post;
  op.context = w.coroutine.address();
  op.on_complete = [](detail::io_operation* o) noexcept {
    std::coroutine_handle<>::from_address(o->context).resume();
  };
  r.submit(op, {});
}

void wake_all(const std::vector<wake_up>& wakes) {
  for (const auto& w : wakes) wake(w);
}

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

  std::array<char, 16 * 1024> coroutine_buffer;  // the reader coroutine's (one at a time)

  // Corking: while the reader coroutine resumes the coroutines whose
  // replies arrived, their commands are queued here and it sends them all
  // after the last resume: one send(2) per burst of replies instead of one
  // per command (what redis-benchmark -P does). Bytes go out in queue
  // order: anyone else who sends meanwhile sends `unsent` first.
  hwsync::mutex wire_mutex;  // taken under send_mutex_, before queue_mutex; guards:
  std::string unsent;
  steady_time unsent_deadline = no_deadline;
  bool corked = false;
};

namespace {

void finish_locked(pending_batch& b, std::exception_ptr failure) {
  b.failure = std::move(failure);
  b.finished = true;
}

// Marks the connection broken (the first reason wins), fails every batch
// in flight with it, and shuts the socket down so that a reader blocked in
// poll() or in an io_uring recv wakes up. Returns whom to wake (after the
// caller lets go of its locks).
[[nodiscard]] std::vector<wake_up> fail_all(connection::state& st, std::exception_ptr why) {
  std::vector<wake_up> wakes;
  {
    std::lock_guard g(st.queue_mutex);
    if (!st.broken) st.broken = std::move(why);
    for (auto& b : st.queue) {
      finish_locked(*b, st.broken);
      if (auto w = claim_locked(b)) wakes.push_back(std::move(*w));
    }
    st.queue.clear();
  }
  ::shutdown(st.tcp.native_handle(), SHUT_RDWR);
  return wakes;
}

// Parses `bytes` and completes batches in FIFO order; whoever must be woken
// is appended to `wakes` (never the caller of `own`: it is reading). Throws
// protocol_error for a reply nobody asked for or bytes that do not parse.
void deliver(connection::state& st, std::string_view bytes, const pending_batch* own,
             std::vector<wake_up>& wakes) {
  st.decoder.feed(bytes);
  reply r;
  while (st.decoder.next(r)) {
    std::lock_guard g(st.queue_mutex);
    if (st.queue.empty()) {
      throw error(errc::protocol_error,
                  "redis " + st.tcp.peer() +
                      ": expected no reply (no command is waiting for one), got " + r.describe());
    }
    auto& front = st.queue.front();
    front->replies.push_back(std::move(r));
    if (front->replies.size() == front->expected) {
      std::shared_ptr<pending_batch> complete = std::move(front);
      st.queue.pop_front();
      finish_locked(*complete, nullptr);
      if (complete.get() != own) {
        if (auto w = claim_locked(complete)) wakes.push_back(std::move(*w));
      }
    }
  }
}

// The reader while the oldest batch waiting is a coroutine's: on the loop
// thread, one recv for whatever arrived, then every finished coroutine is
// resumed inline (its next commands go out at once), until no batch is
// left. Never throws: failures go to fail_all.
void send_commands(connection::state& st, std::string_view bytes, steady_time deadline);

// Runs on the loop thread: a ring operation belongs to the thread that
// submitted it, and the kernel cancels one whose thread has exited before
// it completed (a recv waiting for data completes with -ECANCELED, which
// the ring reports as a missed deadline). The reader is started by
// whichever thread needs it (a blocking caller handing the role on, a
// coroutine's first call from a user thread), which may exit while the
// reader still waits for others' replies; so its recvs are submitted from
// the loop thread, which lives as long as the ring. Regression test:
// WaiterGetsTheLockAfterTheHolderReleases (the releasing thread handed the
// reader role to the waiting coroutine, then exited).
task<void> read_for_coroutines(std::shared_ptr<connection::state> st, ring& r) {
  if (!r.on_loop_thread()) co_await r.async(io_request{});  // a nop: resumes on the loop
  for (;;) {
    steady_time deadline = no_deadline;
    {
      std::lock_guard g(st->queue_mutex);
      if (st->broken || st->queue.empty()) {
        st->reader_active = false;
        co_return;
      }
      for (const auto& b : st->queue) deadline = std::min(deadline, b->deadline);
    }
    std::vector<wake_up> wakes;
    try {
      const std::size_t n = co_await st->tcp.async_recv_some(st->coroutine_buffer, deadline);
      deliver(*st, std::string_view(st->coroutine_buffer.data(), n), nullptr, wakes);
    } catch (...) {
      auto failed = fail_all(*st, std::current_exception());
      wakes.insert(wakes.end(), failed.begin(), failed.end());
    }
    {
      std::lock_guard w(st->wire_mutex);
      st->corked = true;
    }
    wake_all(wakes);
    std::exception_ptr send_failure;
    {
      std::lock_guard w(st->wire_mutex);
      st->corked = false;
      try {
        if (!st->unsent.empty()) send_commands(*st, st->unsent, st->unsent_deadline);
      } catch (...) {
        send_failure = std::current_exception();
      }
      st->unsent.clear();
      st->unsent_deadline = no_deadline;
    }
    if (send_failure) wake_all(fail_all(*st, send_failure));
  }
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
      wake_all(fail_all(
          st, std::make_exception_ptr(error(
                  errc::timed_out, "redis " + st.tcp.peer() + ": expected the replies to " +
                                       std::string(what) + " within " + ms_text(deadline, start) +
                                       ", got none (the connection is dropped)"))));
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
      std::vector<wake_up> wakes;
      deliver(st, std::string_view(buffer.data(), static_cast<std::size_t>(n)), &own, wakes);
      wake_all(wakes);
    } catch (...) {
      wake_all(fail_all(st, std::current_exception()));
      return;
    }
  }
}

// The reader is done: the oldest waiting batch's caller reads next, or a
// reader coroutine on the loop thread if that caller is a coroutine.
void pass_reader_role(const std::shared_ptr<connection::state>& st) {
  std::shared_ptr<pending_batch> next;
  bool coroutine_reads = false;
  {
    std::lock_guard g(st->queue_mutex);
    st->reader_active = false;
    if (!st->broken && !st->queue.empty()) {
      next = st->queue.front();
      st->reader_active = true;
      if (next->resume_ring != nullptr) {
        coroutine_reads = true;
      } else {
        next->reader_turn = true;
        next->signalled = true;  // it waits: only finished batches were signalled
      }
    }
  }
  if (coroutine_reads) {
    ring::detach(read_for_coroutines(st, *next->resume_ring));
  } else if (next) {
    next->done.release();
  }
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
      // Wait for room here, not on the ring: the caller holds send_mutex_,
      // which a coroutine on the loop thread may be waiting for.
      int wait_ms = -1;
      if (deadline != no_deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
          throw error(errc::timed_out, "redis " + st.tcp.peer() +
                                           ": expected room to send the command before its "
                                           "deadline, the server is not reading");
        }
        wait_ms = static_cast<int>(std::min<long long>(left.count(), INT_MAX));
      }
      pollfd p{st.tcp.native_handle(), POLLOUT, 0};
      if (::poll(&p, 1, wait_ms) < 0 && errno != EINTR) {
        throw_errno(errno, "poll on redis " + st.tcp.peer(), "room to send");
      }
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

std::shared_ptr<connection::state> connection::current() {
  std::lock_guard g(send_mutex_);
  if (!state_) return nullptr;
  std::lock_guard q(state_->queue_mutex);
  return state_->broken ? nullptr : state_;
}

// A fresh connection becomes the live one unless another caller connected
// first while this one was connecting (then `tcp` closes here). The old
// socket closes when the last caller still holding its state lets go.
std::shared_ptr<connection::state> connection::install(tcp_connection tcp) {
  std::lock_guard g(send_mutex_);
  if (state_) {
    std::lock_guard q(state_->queue_mutex);
    if (!state_->broken) return state_;
  }
  auto st = std::make_shared<state>();
  st->tcp = std::move(tcp);
  state_ = st;
  return st;
}

namespace {

// Under send_mutex_: the batch joins the queue and its bytes go on the wire,
// in the same order. A failure fails the connection (part of the batch may
// be on the wire: nothing after it can be matched) and is rethrown.
// A coroutine's batch waits in `unsent` while the reader is corked.
void enqueue_and_send(connection::state& st, const std::shared_ptr<pending_batch>& batch,
                      std::string_view commands, steady_time deadline,
                      std::vector<wake_up>& wakes) {
  std::lock_guard w(st.wire_mutex);
  {
    std::lock_guard q(st.queue_mutex);
    if (st.broken) std::rethrow_exception(st.broken);
    st.queue.push_back(batch);
  }
  if (st.corked && batch->resume_ring != nullptr) {
    st.unsent.append(commands);
    st.unsent_deadline = std::min(st.unsent_deadline, deadline);
    return;
  }
  try {
    if (st.unsent.empty()) {
      send_commands(st, commands, deadline);
    } else {
      st.unsent.append(commands);
      send_commands(st, st.unsent, std::min(st.unsent_deadline, deadline));
      st.unsent.clear();
      st.unsent_deadline = no_deadline;
    }
  } catch (...) {
    st.unsent.clear();
    wakes = fail_all(st, std::current_exception());
    throw;
  }
}

// enqueue_and_send under the connection's send mutex. On a failure, wakes
// the callers whose batches it ended, outside every lock, and rethrows.
void send_batch(hwsync::mutex& send_mutex, connection::state& st,
                const std::shared_ptr<pending_batch>& batch, std::string_view commands,
                steady_time deadline) {
  std::vector<wake_up> wakes;
  try {
    std::lock_guard g(send_mutex);
    enqueue_and_send(st, batch, commands, deadline, wakes);
  } catch (...) {
    wake_all(wakes);
    throw;
  }
}

// Suspends a coroutine until its batch has finished (not at all if it has).
struct batch_finished {
  connection::state* st;
  pending_batch* batch;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    std::lock_guard q(st->queue_mutex);
    if (batch->finished) return false;
    batch->waiter = h;
    return true;
  }
  void await_resume() const noexcept {}
};

}  // namespace

std::vector<reply> connection::exchange(std::string commands, std::size_t count,
                                        steady_time deadline, std::string_view what) {
  const steady_time start = std::chrono::steady_clock::now();
  auto batch = std::make_shared<pending_batch>(count);
  batch->deadline = deadline;
  std::shared_ptr<state> st = current();
  if (!st) st = install(tcp_connection::connect(host_, port_, deadline, {}, *ring_));
  send_batch(send_mutex_, *st, batch, commands, deadline);
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
      pass_reader_role(st);
      break;
    }
    const bool woke = deadline == no_deadline ? (batch->done.acquire(), true)
                                              : batch->done.try_acquire_until(deadline);
    if (!woke) {
      wake_all(fail_all(
          *st, std::make_exception_ptr(error(
                   errc::timed_out, "redis " + peer_ + ": expected the replies to " +
                                        std::string(what) + " within " + ms_text(deadline, start) +
                                        ", got none (the connection is dropped)"))));
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

task<std::vector<reply>> connection::async_exchange(std::string commands, std::size_t count,
                                                    steady_time deadline, std::string what) {
  auto batch = std::make_shared<pending_batch>(count);
  batch->deadline = deadline;
  batch->resume_ring = ring_;
  std::shared_ptr<state> st = current();
  if (!st) {
    // Connected from the loop thread, for the reason read_for_coroutines
    // gives: the caller's thread may be one that exits meanwhile.
    if (!ring_->on_loop_thread()) co_await ring_->async(io_request{});
    st = install(co_await tcp_connection::async_connect(host_, port_, deadline, {}, *ring_));
  }
  send_batch(send_mutex_, *st, batch, commands, deadline);
  bool start_reader = false;
  {
    std::lock_guard q(st->queue_mutex);
    if (!batch->finished && !st->reader_active) start_reader = st->reader_active = true;
  }
  if (start_reader) ring::detach(read_for_coroutines(st, *ring_));
  co_await batch_finished{st.get(), batch.get()};
  std::lock_guard q(st->queue_mutex);
  if (batch->failure) {
    // The ring's recv error names no command: say which replies were lost.
    try {
      std::rethrow_exception(batch->failure);
    } catch (const error& e) {
      throw error(e.code(), std::string(e.what()) + " (waiting for the replies to " + what + ")");
    }
  }
  co_return std::move(batch->replies);
}

reply connection::call(std::initializer_list<std::string_view> args, steady_time deadline) {
  std::string bytes;
  append_command(bytes, args);
  const std::string what = args.size() == 0 ? std::string("(empty)") : std::string(*args.begin());
  return std::move(exchange(std::move(bytes), 1, deadline, what).front());
}

std::string connection::remember_sha(const lua_script& script, const reply& r) {
  if (r.type != reply::kind::bulk_string || r.text.size() != 40) {
    throw error(errc::protocol_error, "redis " + peer_ + " SCRIPT LOAD " + script.name +
                                          ": expected the script's SHA1 (40 hex digits), got " +
                                          r.describe());
  }
  std::lock_guard g(scripts_mutex_);
  script_sha_.at(script.id) = r.text;
  return r.text;
}

std::string connection::load_script(const lua_script& script, steady_time deadline) {
  return remember_sha(script, call({"SCRIPT", "LOAD", script.body}, deadline));
}

task<std::string> connection::async_load_script(const lua_script& script, steady_time deadline) {
  std::string bytes;
  append_command(bytes, {std::string_view("SCRIPT"), std::string_view("LOAD"), script.body});
  auto replies = co_await async_exchange(std::move(bytes), 1, deadline, "SCRIPT LOAD");
  co_return remember_sha(script, replies.front());
}

std::string connection::evalsha_command(const std::string& sha,
                                        std::span<const std::string_view> keys_and_args,
                                        std::size_t numkeys) const {
  const std::string numkeys_text = std::to_string(numkeys);
  std::vector<std::string_view> argv = {"EVALSHA", sha, numkeys_text};
  argv.insert(argv.end(), keys_and_args.begin(), keys_and_args.end());
  std::string bytes;
  append_command(bytes, argv);
  return bytes;
}

reply connection::eval(const lua_script& script, std::initializer_list<std::string_view> keys,
                       std::initializer_list<std::string_view> args, steady_time deadline) {
  std::string sha;
  {
    std::lock_guard g(scripts_mutex_);
    sha = script_sha_.at(script.id);
  }
  if (sha.empty()) sha = load_script(script, deadline);
  const std::string what = std::string("EVALSHA ") + script.name;
  std::vector<std::string_view> keys_and_args(keys);
  keys_and_args.insert(keys_and_args.end(), args.begin(), args.end());
  auto send = [&] {
    return std::move(
        exchange(evalsha_command(sha, keys_and_args, keys.size()), 1, deadline, what).front());
  };
  reply r = send();
  if (r.is_error() && r.text.starts_with("NOSCRIPT")) {
    sha = load_script(script, deadline);
    r = send();
  }
  return r;
}

task<reply> connection::async_eval(const lua_script& script, std::vector<std::string> keys_and_args,
                                   std::size_t numkeys, steady_time deadline) {
  std::string sha;
  {
    std::lock_guard g(scripts_mutex_);
    sha = script_sha_.at(script.id);
  }
  if (sha.empty()) sha = co_await async_load_script(script, deadline);
  const std::string what = std::string("EVALSHA ") + script.name;
  const std::vector<std::string_view> views(keys_and_args.begin(), keys_and_args.end());
  reply r = std::move(
      (co_await async_exchange(evalsha_command(sha, views, numkeys), 1, deadline, what)).front());
  if (r.is_error() && r.text.starts_with("NOSCRIPT")) {
    sha = co_await async_load_script(script, deadline);
    r = std::move(
        (co_await async_exchange(evalsha_command(sha, views, numkeys), 1, deadline, what)).front());
  }
  co_return r;
}

}  // namespace hwsync::net::redis
