// net::distributed_lock and the lease keeper that renews every held lease.
//
// The keeper is one process-wide thread (started on the first acquisition
// through a backend whose leases expire) with a queue of due renewals. A
// renewal entry names a lock's state and the acquisition (generation) it was
// made for; an entry for an older generation, or for a lock no longer held,
// is dropped when it comes due. Each lock's mutex serializes the keeper's
// renew() with the user's unlock(), never with lock(): while lock() waits
// the lock is not held, so the keeper has nothing to renew.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "hwsync/condition_variable.hpp"
#include "hwsync/debug_checks.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/net/lock_service.hpp"

namespace hwsync::net {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct distributed_lock::state {
  std::shared_ptr<lock_backend> backend;  // outlives handle
  std::unique_ptr<backend_lock> handle;
  std::string name;
  milliseconds ttl;

  hwsync::mutex mutex;  // serializes handle calls between user and keeper; guards what follows
  bool held = false;
  std::uint64_t generation = 0;  // acquisitions so far
  steady_time lease_expiry{};    // start of the last successful acquire/renew + ttl
  std::string renew_failure;     // why the last renewal failed, while retrying

  std::atomic<std::uint64_t> token{0};
  std::atomic<bool> held_flag{false};
  std::atomic<bool> lost_flag{false};

  hwsync::mutex signal_mutex;           // guards what follows, and lost_flag's changes
  std::uint64_t signal_generation = 0;  // the acquisition lost_source belongs to
  std::stop_source lost_source;
  std::function<void(const error&)> on_lost;
  std::string loss;  // why, once lost
};

namespace {

class lease_keeper {
 public:
  static lease_keeper& instance() {
    // Never destroyed: a lock may be held (and its entry queued) at exit.
    static lease_keeper* keeper = new lease_keeper();
    return *keeper;
  }

  void schedule(const std::shared_ptr<distributed_lock::state>& s, std::uint64_t generation,
                steady_time when) {
    std::lock_guard guard(mutex_);
    const bool earliest = queue_.empty() || when < queue_.begin()->first;
    queue_.emplace(when, entry{s, generation});
    if (earliest) wake_.notify_one();
  }

 private:
  struct entry {
    std::weak_ptr<distributed_lock::state> lock;
    std::uint64_t generation;
  };

  lease_keeper() {
    std::thread([this] { run(); }).detach();
  }

  void run() {
    std::unique_lock guard(mutex_);
    for (;;) {
      if (queue_.empty()) {
        wake_.wait(guard);
        continue;
      }
      const auto due = queue_.begin()->first;
      if (steady_clock::now() < due) {
        wake_.wait_until(guard, due);
        continue;
      }
      entry e = std::move(queue_.begin()->second);
      queue_.erase(queue_.begin());
      guard.unlock();
      renew(e);
      guard.lock();
    }
  }

  void renew(const entry& e) {
    const auto s = e.lock.lock();
    if (!s) return;
    std::string lost_because;
    {
      std::lock_guard guard(s->mutex);
      if (!s->held || s->generation != e.generation) return;
      const auto start = steady_clock::now();
      std::optional<bool> renewed;
      if (start < s->lease_expiry) {  // else a retry came due at the expiry itself
        try {
          renewed = s->handle->renew(s->ttl, s->lease_expiry);
        } catch (const std::exception& ex) {
          s->renew_failure = ex.what();
        }
      }
      const auto now = steady_clock::now();
      if (renewed == true) {
        s->lease_expiry = start + s->ttl;
        s->renew_failure.clear();
        schedule(s, e.generation, start + s->ttl / 3);
        return;
      }
      if (renewed == false) {
        lost_because =
            "the service says the lock is no longer held by this owner (the lease "
            "expired and may have been taken)";
      } else if (now >= s->lease_expiry) {
        lost_because = "renewals failed until the lease expired; last failure: " + s->renew_failure;
      } else {
        // Retry soon, but never past the point where the lease must be
        // proved alive.
        schedule(s, e.generation,
                 std::min(s->lease_expiry, now + std::max(s->ttl / 10, milliseconds(1))));
        return;
      }
    }
    distributed_lock_lost(*s, e.generation, lost_because);
  }

 public:
  // Raises the loss signals of acquisition `generation` once; nothing if
  // the lock has been acquired again since (that acquisition is not lost).
  static void distributed_lock_lost(distributed_lock::state& s, std::uint64_t generation,
                                    const std::string& why) {
    std::function<void(const error&)> handler;
    std::stop_source source;
    std::string message;
    {
      std::lock_guard guard(s.signal_mutex);
      if (s.signal_generation != generation || s.lost_flag.load()) return;
      message = "lock '" + s.name + "' (fencing token " + std::to_string(s.token.load()) +
                "): lease lost: " + why;
      s.loss = message;
      s.lost_flag.store(true);
      handler = s.on_lost;
      source = s.lost_source;
    }
    source.request_stop();
    if (handler) handler(error(errc::lease_lost, message));
  }

  // After the backend granted `token`: the lock is held, with fresh loss
  // signals, and (if leases expire) its first renewal queued.
  static void begin_hold(const std::shared_ptr<distributed_lock::state>& s, fencing_token token,
                         steady_time start) {
    std::lock_guard guard(s->mutex);
    s->held = true;
    ++s->generation;
    s->lease_expiry = start + s->ttl;
    s->renew_failure.clear();
    s->token.store(token.value());
    {
      std::lock_guard signals(s->signal_mutex);
      s->signal_generation = s->generation;
      s->lost_source = std::stop_source();
      s->loss.clear();
      s->lost_flag.store(false);
    }
    s->held_flag.store(true, std::memory_order_relaxed);
    if (s->handle->lease_expires()) instance().schedule(s, s->generation, start + s->ttl / 3);
  }

 private:
  hwsync::mutex mutex_;
  hwsync::condition_variable wake_;
  std::multimap<steady_time, entry> queue_;
};

constexpr const char* type_name = "hwsync::net::distributed_lock";

// co_await off_loop<T>{work}: runs `work` on a thread of its own and resumes
// the coroutine on the default ring's loop thread with its result (or its
// exception). A thread per call, not a pool: the blocking calls it runs may
// wait for a release that a call queued behind them in a bounded pool would
// make.
template <class T>
struct off_loop {
  explicit off_loop(std::function<T()> w) : work(std::move(w)) {}
  std::function<T()> work;
  std::optional<T> value;
  std::exception_ptr failure;
  detail::io_operation post{io_request{}};

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    post.context = h.address();
    post.on_complete = [](detail::io_operation* o) noexcept {
      std::coroutine_handle<>::from_address(o->context).resume();
    };
    std::thread([this] {
      try {
        value.emplace(work());
      } catch (...) {
        failure = std::current_exception();
      }
      ring::default_ring().submit(post, {});  // the last touch of *this
    }).detach();
  }
  T await_resume() {
    if (failure) std::rethrow_exception(failure);
    return std::move(*value);
  }
};

}  // namespace

task<std::optional<fencing_token>> backend_lock::async_try_acquire(milliseconds ttl) {
  co_return co_await off_loop<std::optional<fencing_token>>(
      [this, ttl] { return try_acquire(ttl); });
}

task<std::optional<fencing_token>> backend_lock::async_acquire_until(milliseconds ttl,
                                                                     steady_time deadline,
                                                                     std::stop_token stop) {
  // Slices, so that a stop request is seen between them: a blocking
  // acquire_until could not be interrupted.
  constexpr auto slice = milliseconds(100);
  for (;;) {
    if (stop.stop_requested()) {
      throw error(errc::cancelled, "expected to wait for the lock, got a stop request first");
    }
    if (auto token = co_await async_try_acquire(ttl)) co_return token;
    const auto now = steady_clock::now();
    if (now >= deadline) co_return std::nullopt;
    const steady_time until = deadline - now > slice ? now + slice : deadline;
    co_await off_loop<bool>([this, until] {
      wait_for_release(until);
      return true;
    });
  }
}

task<bool> backend_lock::async_release() {
  co_return co_await off_loop<bool>([this] { return release(); });
}

distributed_lock::distributed_lock(const lock_service& service, std::string_view name,
                                   lock_options options)
    : state_(std::make_shared<state>()) {
  validate_lock_name(name);
  if (options.ttl < milliseconds(3)) {
    throw std::invalid_argument("hwsync::net::distributed_lock '" + std::string(name) +
                                "': expected a ttl of at least 3 ms, got " +
                                std::to_string(options.ttl.count()) + " ms");
  }
  state_->backend = service.backend();
  state_->name = std::string(name);
  state_->ttl = options.ttl;
  state_->handle = state_->backend->open(name, random_owner_id());
}

distributed_lock::~distributed_lock() {
  if (state_->held_flag.load(std::memory_order_relaxed)) {
    try {
      unlock();
    } catch (const std::exception&) {
      // A loss or a failed release cannot be reported from a destructor;
      // lost() / on_lost already told whoever asked.
    }
  }
}

void distributed_lock::lock() {
  try_lock_until_steady(no_deadline);
}

bool distributed_lock::try_lock() {
  if constexpr (debug::checks_enabled) {
    if (state_->held_flag.load(std::memory_order_relaxed)) {
      debug::misuse(type_name, this,
                    "try_lock() by the object that already holds the lock (it is not recursive)");
    }
  }
  const auto start = steady_clock::now();
  const auto token = state_->handle->try_acquire(state_->ttl);
  if (!token) return false;
  lease_keeper::begin_hold(state_, *token, start);
  return true;
}

bool distributed_lock::try_lock_until_steady(steady_time deadline) {
  detail::check_may_block("hwsync::net::distributed_lock::lock");
  if constexpr (debug::checks_enabled) {
    if (state_->held_flag.load(std::memory_order_relaxed)) {
      debug::misuse(type_name, this,
                    "lock() by the object that already holds the lock (it is not recursive)");
    }
  }
  const auto start = steady_clock::now();
  const auto token = state_->handle->acquire_until(state_->ttl, deadline);
  if (!token) return false;
  lease_keeper::begin_hold(state_, *token, start);
  return true;
}

task<fencing_token> distributed_lock::async_lock(std::stop_token stop) {
  const auto token = co_await async_try_lock_until(no_deadline, std::move(stop));
  co_return *token;  // no deadline: a token or an exception
}

task<std::optional<fencing_token>> distributed_lock::async_try_lock_until(steady_time deadline,
                                                                          std::stop_token stop) {
  const std::shared_ptr<state> s = state_;
  if constexpr (debug::checks_enabled) {
    if (s->held_flag.load(std::memory_order_relaxed)) {
      debug::misuse(type_name, this,
                    "async_lock() by the object that already holds the lock (it is not "
                    "recursive)");
    }
  }
  const auto start = steady_clock::now();
  const auto token = co_await s->handle->async_acquire_until(s->ttl, deadline, std::move(stop));
  if (token) lease_keeper::begin_hold(s, *token, start);
  co_return token;
}

task<std::optional<fencing_token>> distributed_lock::async_try_lock() {
  const std::shared_ptr<state> s = state_;
  if constexpr (debug::checks_enabled) {
    if (s->held_flag.load(std::memory_order_relaxed)) {
      debug::misuse(type_name, this,
                    "async_try_lock() by the object that already holds the lock (it is not "
                    "recursive)");
    }
  }
  const auto start = steady_clock::now();
  const auto token = co_await s->handle->async_try_acquire(s->ttl);
  if (token) lease_keeper::begin_hold(s, *token, start);
  co_return token;
}

task<void> distributed_lock::async_unlock() {
  const std::shared_ptr<state> s = state_;
  if constexpr (debug::checks_enabled) {
    if (!s->held_flag.load(std::memory_order_relaxed)) {
      debug::misuse(type_name, this, "async_unlock() of a lock this object does not hold");
    }
  }
  // Marked released under the mutex, so no renewal of this acquisition
  // starts after it; the release itself goes out without the mutex (it
  // cannot be held across a suspension). The keeper holds the mutex through
  // a renewal whose reply may need this loop thread: when it is busy, take
  // it on another thread rather than stall the loop.
  std::uint64_t generation = 0;
  auto mark_released = [&] {
    s->held = false;
    s->held_flag.store(false, std::memory_order_relaxed);
    generation = s->generation;
  };
  if (s->mutex.try_lock()) {
    mark_released();
    s->mutex.unlock();
  } else {
    co_await off_loop<bool>([&] {
      std::lock_guard guard(s->mutex);
      mark_released();
      return true;
    });
  }
  const bool released = co_await s->handle->async_release();
  if (!released) {
    lease_keeper::distributed_lock_lost(
        *s, generation, "at unlock the service said the lock was no longer held by this owner");
  }
  if (s->lost_flag.load()) {
    std::string why;
    {
      std::lock_guard signals(s->signal_mutex);
      why = s->loss;
    }
    throw error(errc::lease_lost,
                "unlock of " + why + "; the critical section may not have been exclusive");
  }
}

void distributed_lock::unlock() {
  detail::check_may_block("hwsync::net::distributed_lock::unlock");
  bool released = false;
  std::uint64_t generation = 0;
  {
    std::lock_guard guard(state_->mutex);
    if constexpr (debug::checks_enabled) {
      if (!state_->held) {
        debug::misuse(type_name, this, "unlock() of a lock this object does not hold");
      }
    }
    state_->held = false;
    state_->held_flag.store(false, std::memory_order_relaxed);
    generation = state_->generation;
    released = state_->handle->release();
  }
  if (!released) {
    lease_keeper::distributed_lock_lost(
        *state_, generation,
        "at unlock the service said the lock was no longer held by this owner");
  }
  if (state_->lost_flag.load()) {
    std::string why;
    {
      std::lock_guard signals(state_->signal_mutex);
      why = state_->loss;
    }
    throw error(errc::lease_lost,
                "unlock of " + why + "; the critical section may not have been exclusive");
  }
}

bool distributed_lock::owns_lock() const noexcept {
  return state_->held_flag.load(std::memory_order_relaxed);
}

fencing_token distributed_lock::token() const noexcept {
  return fencing_token(state_->token.load());
}

bool distributed_lock::lost() const noexcept {
  return state_->lost_flag.load();
}

std::stop_token distributed_lock::lost_token() const noexcept {
  std::lock_guard signals(state_->signal_mutex);
  return state_->lost_source.get_token();
}

void distributed_lock::on_lost(std::function<void(const error&)> handler) {
  std::lock_guard signals(state_->signal_mutex);
  state_->on_lost = std::move(handler);
}

const std::string& distributed_lock::name() const noexcept {
  return state_->name;
}

milliseconds distributed_lock::ttl() const noexcept {
  return state_->ttl;
}

}  // namespace hwsync::net
