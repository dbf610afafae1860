#include "etcd/lease_keeper.hpp"

#include <algorithm>
#include <mutex>
#include <optional>

#include "etcd/grpc_channel.hpp"
#include "etcd_api.pb.h"

namespace hwsync::net::etcd::detail {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr const char* keepalive_method = "/etcdserverpb.Lease/LeaseKeepAlive";

// How long a failed refresh waits before the next try: short, so a
// failover to another member uses little of the TTL.
constexpr milliseconds retry_pause{100};
// The shortest refresh period, for TTLs under 300 ms (etcd raises a TTL
// that short to its minimum anyway).
constexpr milliseconds shortest_period{100};

std::string lease_name(std::int64_t lease) {
  return "lease " + std::to_string(lease);
}

}  // namespace

void lease_state::mark_lost(std::string why) {
  {
    std::lock_guard g(reason_mutex_);
    if (!reason_.empty()) return;
    reason_ = std::move(why);
  }
  lost.store(true, std::memory_order_release);
  lost_source.request_stop();
}

std::string lease_state::reason() const {
  std::lock_guard g(reason_mutex_);
  return reason_;
}

lease_keeper::lease_keeper(client& c)
    : client_(c),
      wake_(std::make_shared<hwsync::counting_semaphore<>>(0)),
      thread_([this](std::stop_token stop) { run(std::move(stop)); }) {}

lease_keeper::~lease_keeper() {
  thread_.request_stop();
  wake_->release();
  thread_.join();
}

void lease_keeper::add(std::shared_ptr<lease_state> state, steady_time granted_at) {
  const std::int64_t lease = state->lease;
  entry e;
  e.every = std::max(std::chrono::duration_cast<milliseconds>(state->ttl) / 3, shortest_period);
  e.valid_until = granted_at + state->ttl;
  e.state = std::move(state);
  {
    std::lock_guard lock(mutex_);
    if (const auto old = entries_.find(lease); old != entries_.end()) {
      unschedule_locked(old->second, lease);
      entries_.erase(old);
    }
    entry& queued = entries_.emplace(lease, std::move(e)).first->second;
    schedule_locked(queued, lease, granted_at + queued.every);
  }
  wake_->release();  // its first refresh may be due before the thread's next wake-up
}

void lease_keeper::remove(std::int64_t lease) {
  bool none_left = false;
  {
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(lease);
    if (it == entries_.end()) return;
    answer_locked(it->second, false, {}, true);
    unschedule_locked(it->second, lease);
    entries_.erase(it);
    none_left = entries_.empty();
  }
  if (none_left) wake_->release();  // so the thread closes the idle stream
}

bool lease_keeper::refresh_now(std::int64_t lease, steady_time deadline) {
  auto request = std::make_shared<refresh_request>();
  {
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(lease);
    if (it == entries_.end()) return false;
    entry& e = it->second;
    request->asked_at = steady_clock::now();
    e.requests.push_back(request);
    // An idle lease is refreshed at once; one in flight is sent again as
    // soon as its answer is in (answer_locked leaves this request queued).
    if (!e.in_flight && e.timer > request->asked_at) {
      unschedule_locked(e, lease);
      schedule_locked(e, lease, request->asked_at);
    }
  }
  wake_->release();
  if (request->answered.try_acquire_until(deadline)) return request->alive;
  std::string last_failure;
  {
    std::lock_guard lock(mutex_);
    if (const auto it = entries_.find(lease); it != entries_.end()) {
      std::erase(it->second.requests, request);
    }
    last_failure = request->last_failure;
  }
  // Answered between the timeout and the erase: the answer stands.
  if (request->answered.try_acquire()) return request->alive;
  throw net::error(errc::timed_out, "etcd lease keeper: expected a refresh of " +
                                        lease_name(lease) +
                                        " answered before the deadline, got none; last failure: " +
                                        (last_failure.empty() ? "none" : last_failure));
}

void lease_keeper::answer_locked(entry& e, bool alive, steady_time sent, bool all) {
  std::erase_if(e.requests, [&](const std::shared_ptr<refresh_request>& r) {
    if (!all && r->asked_at > sent) return false;
    r->alive = alive;
    r->answered.release();
    return true;
  });
}

std::size_t lease_keeper::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

void lease_keeper::schedule_locked(entry& e, std::int64_t lease, steady_time at) {
  e.timer = at;
  (e.in_flight ? replies_ : due_).emplace(at, lease);
}

void lease_keeper::unschedule_locked(entry& e, std::int64_t lease) {
  (e.in_flight ? replies_ : due_).erase({e.timer, lease});
}

void lease_keeper::fail_in_flight_locked(const std::string& why, steady_time now) {
  std::vector<std::int64_t> failed;
  failed.reserve(replies_.size());
  for (const auto& [at, lease] : replies_) failed.push_back(lease);
  replies_.clear();
  for (const std::int64_t lease : failed) {
    entry& e = entries_.at(lease);
    e.in_flight = false;
    e.last_failure = why;
    for (const auto& r : e.requests) r->last_failure = why;
    schedule_locked(e, lease, std::min(e.valid_until, now + retry_pause));
  }
}

void lease_keeper::drop_stream() {
  if (stream_) channel_->cancel(stream_);  // also detaches its wake-up hook
  stream_.reset();
  channel_.reset();
}

void lease_keeper::drain_responses(std::vector<loss>& lost) {
  while (stream_ && channel_->readable(stream_)) {
    std::string failure;
    std::optional<std::string> message;
    try {
      message = channel_->read_message(stream_, no_deadline);  // readable: does not block
      if (!message) {
        failure = std::string(keepalive_method) +
                  ": expected keepalive responses, got the end of the stream";
      }
    } catch (const net::error& e) {
      failure = e.what();
    }
    pb::LeaseKeepAliveResponse response;
    if (failure.empty() && !response.ParseFromString(*message)) {
      failure = std::string(keepalive_method) + ": expected a protobuf " + response.GetTypeName() +
                ", got " + std::to_string(message->size()) + " bytes that do not parse";
    }
    if (!failure.empty()) {
      drop_stream();
      std::lock_guard lock(mutex_);
      fail_in_flight_locked(failure, steady_clock::now());
      return;
    }
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(response.id());
    // A lease removed meanwhile, or an answer its deadline gave up on.
    if (it == entries_.end() || !it->second.in_flight) continue;
    entry& e = it->second;
    unschedule_locked(e, it->first);
    if (response.ttl() <= 0) {
      answer_locked(e, false, {}, true);
      lost.push_back({e.state, "etcd answered that " + lease_name(it->first) + " is gone: " +
                                   keepalive_method + ": expected it refreshed, " + "got TTL " +
                                   std::to_string(response.ttl()) + " (expired or revoked)"});
      entries_.erase(it);
      continue;
    }
    e.in_flight = false;
    e.valid_until = e.sent + std::chrono::seconds(response.ttl());
    e.last_failure.clear();
    answer_locked(e, true, e.sent, false);
    // A request asked after this refresh was sent needs one of its own.
    schedule_locked(e, it->first, e.requests.empty() ? e.sent + e.every : steady_clock::now());
  }
}

void lease_keeper::send_refreshes(const std::vector<std::int64_t>& leases, steady_time open_by) {
  try {
    if (!stream_) {
      // May connect, to the endpoint after a failed one: the failover.
      channel_ = client_.channel(open_by);
      stream_ =
          channel_->start_call(keepalive_method, {}, false, [wake = wake_] { wake->release(); });
    }
    pb::LeaseKeepAliveRequest request;
    for (const std::int64_t lease : leases) {
      request.set_id(lease);
      channel_->send_message(stream_, request.SerializeAsString());
    }
  } catch (const net::error& e) {
    drop_stream();
    std::lock_guard lock(mutex_);
    fail_in_flight_locked(e.what(), steady_clock::now());
  }
}

void lease_keeper::run(std::stop_token stop) {
  std::vector<loss> lost;
  std::vector<std::int64_t> to_send;
  while (!stop.stop_requested()) {
    drain_responses(lost);
    to_send.clear();
    steady_time open_by = steady_time::max();
    bool stream_stuck = false;
    bool none_left = false;
    {
      std::lock_guard lock(mutex_);
      const steady_time now = steady_clock::now();
      if (!replies_.empty() && replies_.begin()->first <= now) {
        const std::int64_t late = replies_.begin()->second;
        const auto waited = std::chrono::duration_cast<milliseconds>(now - entries_.at(late).sent);
        fail_in_flight_locked(std::string(keepalive_method) + ": expected an answer for " +
                                  lease_name(late) + ", got none in " +
                                  std::to_string(waited.count()) + " ms",
                              now);
        stream_stuck = true;
      }
      while (!due_.empty() && due_.begin()->first <= now) {
        const std::int64_t lease = due_.begin()->second;
        entry& e = entries_.at(lease);
        unschedule_locked(e, lease);
        if (now >= e.valid_until) {
          answer_locked(e, false, {}, true);
          lost.push_back(
              {e.state, "no keepalive of " + lease_name(lease) + " succeeded within its " +
                            std::to_string(e.state->ttl.count()) + " s TTL; last failure: " +
                            (e.last_failure.empty() ? "none" : e.last_failure)});
          entries_.erase(lease);
          continue;
        }
        e.in_flight = true;
        e.sent = now;  // before the send: valid_until stays a lower bound
        const steady_time reply_by = std::min(e.valid_until, now + e.every);
        schedule_locked(e, lease, reply_by);
        open_by = std::min(open_by, reply_by);
        to_send.push_back(lease);
      }
      none_left = entries_.empty();
    }
    // Outside the mutex: stop callbacks are user code and may destroy
    // sessions (remove() takes the mutex).
    for (loss& l : lost) l.state->mark_lost(std::move(l.reason));
    lost.clear();
    if (stream_stuck || (none_left && stream_)) drop_stream();
    if (!to_send.empty()) send_refreshes(to_send, open_by);

    steady_time wake_at = steady_time::max();
    {
      std::lock_guard lock(mutex_);
      if (!due_.empty()) wake_at = due_.begin()->first;
      if (!replies_.empty()) wake_at = std::min(wake_at, replies_.begin()->first);
    }
    if (wake_at == steady_time::max()) {
      wake_->acquire();
    } else {
      wake_->try_acquire_until(wake_at);
    }
    while (wake_->try_acquire()) {
    }
  }
  drop_stream();
}

}  // namespace hwsync::net::etcd::detail
