// net::ring: one io_uring and the thread that reaps it.
//
// Submitters serialize on submit_mutex (the SQ is single-producer in
// liburing); only the loop thread touches the CQ. Each SQE's user_data is its
// io_operation; linked timeouts and cancel requests carry user_data 0 and
// their completions are dropped (the operation's own completion says what
// happened). The stop marker (the impl's address) ends the loop.
#include "hwsync/net/ring.hpp"

#include <liburing.h>
#include <linux/time_types.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "hwsync/mutex.hpp"
#include "hwsync/sanitizer.hpp"

namespace hwsync::net {
namespace {

thread_local const ring* loop_of_this_thread = nullptr;

__kernel_timespec to_kernel_timespec(steady_time t) {
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  __kernel_timespec ts{};
  ts.tv_sec = ns / 1'000'000'000;
  ts.tv_nsec = ns % 1'000'000'000;
  return ts;
}

[[noreturn]] void fatal(const char* what, int err) noexcept {
  std::fprintf(stderr, "hwsync::net::ring: %s: %s\n", what, std::strerror(err));
  std::abort();
}

}  // namespace

namespace detail {

void check_may_block(const char* what) noexcept {
  if (loop_of_this_thread != nullptr) {
    std::fprintf(stderr,
                 "hwsync: %s called on a ring's loop thread (code after a co_await runs there): "
                 "it would wait for a completion that only this thread can deliver\n",
                 what);
    std::abort();
  }
}

void io_operation::stop_request::operator()() const noexcept {
  r->submit_cancel(*op);
}

}  // namespace detail

struct ring::impl {
  io_uring uring{};
  hwsync::mutex submit_mutex;
  std::thread loop;
  // A timespec per linked timeout lives in its operation; the kernel reads
  // it while the SQE is submitted (under submit_mutex), so nothing else
  // needs to outlive the submission.

  io_uring_sqe* get_sqe_pair(unsigned needed) {
    // A linked pair must go in together: flush first if it would not fit.
    if (io_uring_sq_space_left(&uring) < needed) {
      const int rc = io_uring_submit(&uring);
      if (rc < 0) fatal("io_uring_submit (flushing a full submission queue)", -rc);
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&uring);
    if (sqe == nullptr) fatal("io_uring_get_sqe after a flush", EBUSY);
    return sqe;
  }

  void submit_locked() {
    for (;;) {
      const int rc = io_uring_submit(&uring);
      if (rc >= 0) return;
      // EINTR: retry. EAGAIN/EBUSY: the kernel is short of memory or the
      // completion queue is full; the loop thread drains it, so retry.
      if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) {
        std::this_thread::yield();
        continue;
      }
      fatal("io_uring_submit", -rc);
    }
  }
};

ring::ring(unsigned entries) : impl_(std::make_unique<impl>()) {
  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE;
  params.cq_entries = 2 * entries;
  const int rc = io_uring_queue_init_params(entries, &impl_->uring, &params);
  if (rc < 0) {
    throw_errno(-rc, "io_uring_setup for hwsync::net::ring",
                "a ring (io_uring may be disabled: /proc/sys/kernel/io_uring_disabled, seccomp)");
  }
  impl_->loop = std::thread([this] {
    loop_of_this_thread = this;
    auto& u = impl_->uring;
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_wait_cqe(&u, &cqe);
      if (rc == -EINTR) continue;
      if (rc < 0) fatal("io_uring_wait_cqe", -rc);
      bool stop = false;
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_for_each_cqe(&u, head, cqe) {
        ++seen;
        void* data = io_uring_cqe_get_data(cqe);
        if (data == impl_.get()) {
          stop = true;
          continue;
        }
        if (data == nullptr) continue;  // a linked timeout's or a cancel's own completion
        auto* op = static_cast<detail::io_operation*>(data);
        // The kernel's hand-off: pairs with the release before submission.
        tsan::acquire(op);
        int res = cqe->res;
        // A linked timeout that fired cancels its operation (-ECANCELED);
        // report it as the deadline it was.
        if (res == -ECANCELED && !op->cancel_requested.load(std::memory_order_relaxed) &&
            op->request.op != io_request::kind::sleep && op->request.deadline != no_deadline) {
          res = -ETIME;
        }
        op->result = res;
        op->on_complete(op);
      }
      io_uring_cq_advance(&u, seen);
      if (stop) return;
    }
  });
}

ring::~ring() {
  {
    std::lock_guard guard(impl_->submit_mutex);
    io_uring_sqe* sqe = impl_->get_sqe_pair(1);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, impl_.get());
    impl_->submit_locked();
  }
  impl_->loop.join();
  io_uring_queue_exit(&impl_->uring);
}

ring& ring::default_ring() {
  // Never destroyed: completions and lease renewals may still arrive while
  // static destructors run at exit.
  static ring* r = new ring();
  return *r;
}

bool ring::on_loop_thread() const noexcept {
  return loop_of_this_thread == this;
}

bool ring::submit(detail::io_operation& op, const std::stop_token& stop) {
  // Registered first, so a stop request racing with the submission is seen
  // either here (cancel_requested, under the lock) or by the cancel
  // callback (submitted, under the lock).
  if (stop.stop_possible()) {
    op.stop_callback = std::make_unique<std::stop_callback<detail::io_operation::stop_request>>(
        stop, detail::io_operation::stop_request{this, &op});
  }
  std::lock_guard guard(impl_->submit_mutex);
  if (op.cancel_requested.load(std::memory_order_relaxed)) {
    op.result = -ECANCELED;
    return false;
  }
  const io_request& req = op.request;
  const bool linked = req.deadline != no_deadline && req.op != io_request::kind::sleep;
  io_uring_sqe* sqe = impl_->get_sqe_pair(linked ? 2 : 1);
  switch (req.op) {
    case io_request::kind::nop:
      io_uring_prep_nop(sqe);
      break;
    case io_request::kind::connect:
      io_uring_prep_connect(sqe, req.fd, req.address, req.address_length);
      break;
    case io_request::kind::send:
      io_uring_prep_send(sqe, req.fd, req.buffer, req.length, MSG_NOSIGNAL);
      break;
    case io_request::kind::recv:
      io_uring_prep_recv(sqe, req.fd, req.buffer, req.length, 0);
      break;
    case io_request::kind::sleep:
      op.timeout_spec = to_kernel_timespec(req.deadline);
      io_uring_prep_timeout(sqe, &op.timeout_spec, 0, IORING_TIMEOUT_ABS);
      break;
  }
  io_uring_sqe_set_data(sqe, &op);
  if (linked) {
    sqe->flags |= IOSQE_IO_LINK;
    op.timeout_spec = to_kernel_timespec(req.deadline);
    io_uring_sqe* timeout = impl_->get_sqe_pair(1);
    io_uring_prep_link_timeout(timeout, &op.timeout_spec, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data(timeout, nullptr);
  }
  op.submitted = true;
  // The kernel's hand-off: the loop thread acquires this after reaping.
  tsan::release(&op);
  impl_->submit_locked();
  return true;
}

void ring::submit_cancel(detail::io_operation& op) noexcept {
  std::lock_guard guard(impl_->submit_mutex);
  op.cancel_requested.store(true, std::memory_order_relaxed);
  if (!op.submitted) return;  // submit() sees the flag and does not submit
  io_uring_sqe* sqe = impl_->get_sqe_pair(1);
  io_uring_prep_cancel(sqe, &op, 0);
  io_uring_sqe_set_data(sqe, nullptr);
  impl_->submit_locked();
}

int ring::run(const io_request& req, std::stop_token stop) {
  detail::check_may_block("hwsync::net::ring::run");
  hwsync::binary_semaphore done(0);
  detail::io_operation op(req);
  op.context = &done;
  op.on_complete = [](detail::io_operation* o) noexcept {
    static_cast<hwsync::binary_semaphore*>(o->context)->release();
  };
  if (submit(op, stop)) done.acquire();
  op.stop_callback.reset();
  return op.result;
}

namespace {

// A coroutine that owns its frame: starts at once, frees itself at the end.
struct detached_coroutine {
  struct promise_type {
    detached_coroutine get_return_object() const noexcept { return {}; }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // the body catches all
  };
};

detached_coroutine run_detached(task<void> t) {
  try {
    co_await std::move(t);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hwsync::net::ring::detach: a detached task threw: %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "hwsync::net::ring::detach: a detached task threw a non-std exception\n");
    std::abort();
  }
}

}  // namespace

void ring::detach(task<void> t) {
  run_detached(std::move(t));
}

task<bool> sleep_until(ring& r, steady_time t, std::stop_token stop) {
  io_request req;
  req.op = io_request::kind::sleep;
  req.deadline = t;
  const int res = co_await r.async(req, std::move(stop));
  // IORING_OP_TIMEOUT completes with -ETIME when the time passed.
  co_return res == -ETIME || res == 0;
}

}  // namespace hwsync::net
