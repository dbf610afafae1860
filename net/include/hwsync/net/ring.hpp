// hwsync/net/ring.hpp — net::ring, the io_uring event loop every network
// client shares; net::task<T>, the coroutine type it resumes; sync_wait and
// the blocking wrappers that let a plain thread wait for a completion.
//
// Contract
//   Threads       One ring = one io_uring instance + one loop thread that
//                 reaps completions. Any thread may submit (submissions are
//                 serialized by an hwsync::mutex around the submission
//                 queue); only the loop thread reaps. io_uring ties a
//                 request to the thread that submitted it: one still
//                 waiting for readiness (a recv on an idle socket) when
//                 that thread exits completes with -ECANCELED. Submit
//                 long-lived operations (a connection's reader) from the
//                 loop thread: `co_await ring.async(io_request{})` (a nop)
//                 moves a coroutine there. ring::default_ring()
//                 is the process-wide ring, started on first use and never
//                 destroyed (so a completion arriving during exit never finds
//                 it gone).
//   Coroutines    co_await ring.async(...) / an awaitable of tcp_connection
//                 suspends the coroutine; it resumes ON THE LOOP THREAD with
//                 the result. Code after a co_await must therefore not block
//                 (no blocking wrapper, no lock() of a distributed lock): it
//                 would stop the loop that must deliver its own completion.
//                 A blocking wrapper called on a loop thread aborts with a
//                 message saying so.
//   Blocking      ring.run(...), sync_wait(task) and tcp_connection's
//                 blocking members submit, then park the calling thread on
//                 an hwsync::binary_semaphore (spin briefly, then futex)
//                 until the loop thread posts the completion.
//   Deadlines     Every operation takes an absolute steady_clock deadline
//                 (no_deadline = none). It becomes a linked timeout
//                 (IORING_OP_LINK_TIMEOUT, IORING_TIMEOUT_ABS on
//                 CLOCK_MONOTONIC = steady_clock), so the kernel cancels the
//                 operation when it passes: the result is -ETIME.
//   Cancellation  Every operation takes a std::stop_token. A stop request
//                 submits IORING_OP_ASYNC_CANCEL for the operation; it then
//                 completes with -ECANCELED (or with its real result if it
//                 finished first). lost_token() of a distributed lock is such
//                 a token.
//   Results       ring.async/run return the raw result: >= 0 on success, a
//                 negative errno on failure, -ETIME when the deadline passed,
//                 -ECANCELED when cancelled. tcp_connection turns them into
//                 net::error (hwsync/net/error.hpp).
//   Ordering      Everything the submitting thread wrote before submitting
//                 happens-before the completion handler and the resumed
//                 coroutine; everything they wrote happens-before the return
//                 of the blocking wrapper. The kernel's hand-off is invisible
//                 to ThreadSanitizer, so the ring calls __tsan_release on the
//                 operation before io_uring_submit and __tsan_acquire after
//                 reaping its completion (hwsync/sanitizer.hpp).
//   Lifetime      An operation's memory (its awaiter or the blocking
//                 caller's frame) lives until its completion is posted; a
//                 ring must outlive every operation submitted to it.
//   Size          A ring: its io_uring (entries SQEs, 2 x entries CQEs) and
//                 one thread. An operation: about 100 bytes, no allocation.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <linux/time_types.h>
#include <sys/socket.h>

#include "hwsync/net/error.hpp"
#include "hwsync/semaphore.hpp"

namespace hwsync::net {

using steady_time = std::chrono::steady_clock::time_point;
inline constexpr steady_time no_deadline = steady_time::max();

// ---------------------------------------------------------------------------
// task<T>: a lazily started coroutine. It runs when awaited (or passed to
// sync_wait / ring::detach) and resumes its awaiter when it finishes
// (symmetric transfer, no stack growth). An exception leaving the body is
// rethrown to the awaiter. Move-only; destroying a task that never started
// destroys its frame.
// ---------------------------------------------------------------------------
template <class T = void>
class task;

namespace detail {

struct task_promise_base {
  std::coroutine_handle<> continuation = std::noop_coroutine();
  std::exception_ptr exception;

  std::suspend_always initial_suspend() const noexcept { return {}; }
  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) const noexcept {
      return h.promise().continuation;
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { exception = std::current_exception(); }
};

template <class T>
struct task_promise : task_promise_base {
  std::optional<T> value;
  task<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    if (exception) std::rethrow_exception(exception);
    return std::move(*value);
  }
};

template <>
struct task_promise<void> : task_promise_base {
  task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() const {
    if (exception) std::rethrow_exception(exception);
  }
};

}  // namespace detail

template <class T>
class task {
 public:
  using promise_type = detail::task_promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;

  task() noexcept = default;
  explicit task(handle_type h) noexcept : h_(h) {}
  task(task&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (h_) h_.destroy();
  }

  bool valid() const noexcept { return static_cast<bool>(h_); }

  auto operator co_await() && noexcept {
    struct awaiter {
      handle_type h;
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
        h.promise().continuation = awaiting;
        return h;
      }
      T await_resume() { return h.promise().take(); }
    };
    return awaiter{h_};
  }

  // For sync_wait and ring::detach: hands the frame over.
  handle_type release() noexcept { return std::exchange(h_, {}); }

 private:
  handle_type h_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

// Aborts with a message when called on a ring's loop thread, where a
// blocking wait would wait for itself.
void check_may_block(const char* what) noexcept;

// The coroutine sync_wait runs: awaits the task, then releases `done`.
struct sync_wait_runner {
  struct promise_type {
    hwsync::binary_semaphore* done = nullptr;
    sync_wait_runner get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) const noexcept {
        h.promise().done->release();
      }
      void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // the body catches all
  };
  std::coroutine_handle<promise_type> h;
};
}  // namespace detail

// Runs `t` on the calling thread until its first suspension, then parks the
// thread (hwsync::binary_semaphore) until it finishes on the loop thread;
// returns its value or rethrows its exception. Must not be called on a loop
// thread.
template <class T>
T sync_wait(task<T> t) {
  detail::check_may_block("hwsync::net::sync_wait");
  hwsync::binary_semaphore done(0);
  std::exception_ptr failure;
  std::optional<std::conditional_t<std::is_void_v<T>, std::monostate, T>> result;
  auto runner = [](task<T> inner, decltype(result)& out,
                   std::exception_ptr& err) -> detail::sync_wait_runner {
    try {
      if constexpr (std::is_void_v<T>) {
        co_await std::move(inner);
        out.emplace();
      } else {
        out.emplace(co_await std::move(inner));
      }
    } catch (...) {
      err = std::current_exception();
    }
  }(std::move(t), result, failure);
  runner.h.promise().done = &done;
  runner.h.resume();
  done.acquire();
  runner.h.destroy();
  if (failure) std::rethrow_exception(failure);
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

// ---------------------------------------------------------------------------
// The ring.
// ---------------------------------------------------------------------------

// One submission: what to do (kind + arguments) and by when.
struct io_request {
  enum class kind : std::uint8_t { nop, connect, send, recv, sleep };
  kind op = kind::nop;
  int fd = -1;
  void* buffer = nullptr;  // send: const data; recv: where to write
  std::size_t length = 0;
  const sockaddr* address = nullptr;  // connect
  socklen_t address_length = 0;
  steady_time deadline = no_deadline;  // sleep: the wake-up time
};

class ring;

namespace detail {

// A submitted operation, from submission to the posting of its completion.
// Lives in the awaiter (coroutine frame) or the blocking caller's frame.
struct io_operation {
  explicit io_operation(const io_request& r) noexcept : request(r) {}
  io_operation(const io_operation&) = delete;
  io_operation& operator=(const io_operation&) = delete;

  io_request request;
  int result = 0;
  // Set by the stop callback (under the ring's submission lock); submit()
  // reads it under the same lock, the loop thread after the completion.
  std::atomic<bool> cancel_requested{false};
  bool submitted = false;  // guarded by the ring's submission lock
  // The deadline as the kernel reads it (linked timeout or sleep).
  __kernel_timespec timeout_spec{};
  // Runs on the loop thread once `result` is set.
  void (*on_complete)(io_operation*) noexcept = nullptr;
  void* context = nullptr;  // the coroutine handle's address or the semaphore

  struct stop_request {
    ring* r;
    io_operation* op;
    void operator()() const noexcept;
  };
  // Allocated only for a token that can be stopped.
  std::unique_ptr<std::stop_callback<stop_request>> stop_callback;
};

}  // namespace detail

class ring {
 public:
  // Starts an io_uring with `entries` submission slots and its loop thread.
  // Throws net::error(io_error) if io_uring_setup fails (e.g. disabled by
  // /proc/sys/kernel/io_uring_disabled or a seccomp profile).
  explicit ring(unsigned entries = 256);
  // Stops the loop thread. Every operation must have completed.
  ~ring();
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;

  // The process-wide ring (started on first use, never destroyed).
  static ring& default_ring();

  // True on this ring's loop thread.
  bool on_loop_thread() const noexcept;

  // co_await ring.async(req, stop) -> int (raw result, see "Results").
  auto async(io_request req, std::stop_token stop = {}) noexcept {
    struct awaiter {
      ring* self;
      detail::io_operation op;
      std::stop_token stop;
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> h) {
        op.context = h.address();
        op.on_complete = [](detail::io_operation* o) noexcept {
          std::coroutine_handle<>::from_address(o->context).resume();
        };
        return self->submit(op, stop);  // false: cancelled before submission
      }
      int await_resume() noexcept {
        op.stop_callback.reset();
        return op.result;
      }
    };
    return awaiter{this, detail::io_operation{req}, std::move(stop)};
  }

  // Blocking: submits and parks the calling thread until the completion.
  int run(const io_request& req, std::stop_token stop = {});

  // Starts `t` now and lets it run to its end on its own (its frame frees
  // itself). An exception leaving `t` aborts with its message: a detached
  // task has nobody to report to, so it must catch what it can handle.
  static void detach(task<void> t);

  // Low level: registers `stop`, then submits op (plus a linked timeout
  // when its deadline is set). op must stay put until op.on_complete has
  // run. Returns false, with op.result = -ECANCELED and on_complete NOT
  // called, when stop was requested before the submission.
  bool submit(detail::io_operation& op, const std::stop_token& stop);

 private:
  friend struct detail::io_operation::stop_request;
  void submit_cancel(detail::io_operation& op) noexcept;
  struct impl;
  std::unique_ptr<impl> impl_;
};

// co_await sleep_until(ring, t, stop): true when t passed, false when
// cancelled first.
task<bool> sleep_until(ring& r, steady_time t, std::stop_token stop = {});

// ---------------------------------------------------------------------------
// tcp_connection: a connected TCP socket whose I/O goes through a ring.
// Full duplex: one sender and one receiver may use it at the same time;
// two senders (or two receivers) at once are undefined. Move-only; the
// destructor closes the socket.
// ---------------------------------------------------------------------------
class tcp_connection {
 public:
  tcp_connection() noexcept = default;
  tcp_connection(tcp_connection&& other) noexcept;
  tcp_connection& operator=(tcp_connection&& other) noexcept;
  tcp_connection(const tcp_connection&) = delete;
  tcp_connection& operator=(const tcp_connection&) = delete;
  ~tcp_connection();

  // Resolves host (getaddrinfo, on the calling thread: a numeric address
  // costs nothing, a name may block) and connects to the first address that
  // accepts, by `deadline`. Throws net::error: connection_refused,
  // timed_out, cancelled, address_unresolved, io_error. TCP_NODELAY is set.
  static tcp_connection connect(std::string_view host, std::uint16_t port,
                                steady_time deadline = no_deadline, std::stop_token stop = {},
                                ring& r = ring::default_ring());
  static task<tcp_connection> async_connect(std::string host, std::uint16_t port,
                                            steady_time deadline = no_deadline,
                                            std::stop_token stop = {},
                                            ring& r = ring::default_ring());

  // Sends every byte of `data` (looping over partial sends) by `deadline`.
  // Throws connection_reset, timed_out, cancelled, io_error.
  void send_all(std::string_view data, steady_time deadline = no_deadline,
                std::stop_token stop = {});
  task<void> async_send_all(std::string_view data, steady_time deadline = no_deadline,
                            std::stop_token stop = {});

  // Receives at least one byte into `buffer` by `deadline`; returns how
  // many. EOF throws closed_by_peer (every protocol here expects a reply),
  // as do connection_reset, timed_out, cancelled, io_error.
  std::size_t recv_some(std::span<char> buffer, steady_time deadline = no_deadline,
                        std::stop_token stop = {});
  task<std::size_t> async_recv_some(std::span<char> buffer, steady_time deadline = no_deadline,
                                    std::stop_token stop = {});

  // Fills all of `buffer`; EOF before that throws closed_by_peer saying how
  // many of how many bytes arrived.
  void recv_exact(std::span<char> buffer, steady_time deadline = no_deadline,
                  std::stop_token stop = {});

  void close() noexcept;
  bool is_open() const noexcept { return fd_ >= 0; }
  int native_handle() const noexcept { return fd_; }
  // "host:port", for messages.
  const std::string& peer() const noexcept { return peer_; }

 private:
  tcp_connection(int fd, std::string peer, ring& r) noexcept
      : fd_(fd), peer_(std::move(peer)), ring_(&r) {}
  int fd_ = -1;
  std::string peer_;
  ring* ring_ = nullptr;
};

}  // namespace hwsync::net
