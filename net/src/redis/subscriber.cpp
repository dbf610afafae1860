#include "redis/subscriber.hpp"

#include <array>
#include <atomic>
#include <exception>
#include <mutex>
#include <stop_token>
#include <utility>
#include <vector>

#include "hwsync/semaphore.hpp"
#include "redis/resp.hpp"

namespace hwsync::net::redis {

namespace {

// One TCP connection in subscriber mode and its reader.
struct link {
  tcp_connection tcp;
  std::stop_source stop;
  reply_decoder decoder;  // the reader's only
  std::atomic<bool> broken{false};
  hwsync::binary_semaphore reader_done{0};
};

// A failed reconnect is retried at most this often: waiters call in on
// every backoff, and a refused connect returns at once.
constexpr auto reconnect_interval = std::chrono::milliseconds(100);
constexpr auto connect_timeout = std::chrono::seconds(1);

}  // namespace

struct subscriber::shared {
  struct channel_state {
    int waiters = 0;
    std::uint64_t messages = 0;
    bool confirmed = false;
  };
  hwsync::mutex mutex;  // short sections only: the reader takes it
  hwsync::condition_variable changed;
  std::map<std::string, channel_state, std::less<>> channels;  // guarded by mutex
  std::uint64_t epoch = 0;  // guarded by mutex: +1 per lost connection

  std::shared_ptr<link> current;  // guarded by the subscriber's send_mutex_

  std::uint64_t generation_locked(const std::string& channel) const {
    const auto it = channels.find(channel);
    return epoch + (it == channels.end() ? 0 : it->second.messages);
  }

  void connection_lost() {
    {
      std::lock_guard g(mutex);
      ++epoch;
      for (auto& [name, ch] : channels) ch.confirmed = false;
    }
    changed.notify_all();
  }
};

namespace {

// The reader: every reply on a subscribed connection is a push,
// [kind, channel, payload-or-count]. Runs on the ring's loop thread.
task<void> read_pushes(std::shared_ptr<subscriber::shared> sh, std::shared_ptr<link> ln) {
  std::array<char, 4096> buffer;
  try {
    for (;;) {
      const std::size_t n =
          co_await ln->tcp.async_recv_some(buffer, no_deadline, ln->stop.get_token());
      ln->decoder.feed(std::string_view(buffer.data(), n));
      reply r;
      while (ln->decoder.next(r)) {
        if (r.type != reply::kind::array || r.elements.size() != 3 ||
            r.elements[0].type != reply::kind::bulk_string ||
            r.elements[1].type != reply::kind::bulk_string) {
          throw error(errc::protocol_error,
                      "redis " + ln->tcp.peer() +
                          " (subscriber): expected a push [kind, channel, value], got " +
                          r.describe());
        }
        const std::string& kind = r.elements[0].text;
        {
          std::lock_guard g(sh->mutex);
          const auto it = sh->channels.find(r.elements[1].text);
          if (it != sh->channels.end()) {
            if (kind == "message") {
              ++it->second.messages;
            } else if (kind == "subscribe") {
              it->second.confirmed = true;
            } else if (kind == "unsubscribe") {
              it->second.confirmed = false;
            }
          }
        }
        sh->changed.notify_all();
      }
    }
  } catch (...) {
    // Cancelled (shutdown, reconnect), reset, or garbage: waiters retry.
    ln->broken.store(true, std::memory_order_release);
    sh->connection_lost();
  }
  ln->reader_done.release();
}

}  // namespace

subscriber::subscriber(std::string host, std::uint16_t port, ring& r)
    : host_(std::move(host)), port_(port), ring_(&r), shared_(std::make_shared<shared>()) {}

subscriber::~subscriber() {
  std::lock_guard g(send_mutex_);
  if (shared_->current) {
    shared_->current->stop.request_stop();
    shared_->current->reader_done.acquire();
  }
}

// Under send_mutex_. False when the server cannot be reached now.
bool subscriber::ensure_connected_locked() {
  auto& cur = shared_->current;
  if (cur && !cur->broken.load(std::memory_order_acquire)) return true;
  if (cur) {
    cur->stop.request_stop();
    cur->reader_done.acquire();
    cur.reset();
  }
  const steady_time now = std::chrono::steady_clock::now();
  if (now < next_connect_attempt_) return false;
  auto ln = std::make_shared<link>();
  try {
    ln->tcp = tcp_connection::connect(host_, port_, now + connect_timeout, {}, *ring_);
  } catch (const error&) {
    next_connect_attempt_ = now + reconnect_interval;
    return false;
  }
  ring::detach(read_pushes(shared_, ln));
  cur = ln;
  std::vector<std::string> wanted;
  {
    std::lock_guard g(shared_->mutex);
    for (const auto& [name, ch] : shared_->channels) {
      if (ch.waiters > 0) wanted.push_back(name);
    }
  }
  if (!wanted.empty()) {
    std::vector<std::string_view> argv = {"SUBSCRIBE"};
    argv.insert(argv.end(), wanted.begin(), wanted.end());
    std::string bytes;
    append_command(bytes, argv);
    try {
      cur->tcp.send_all(bytes, now + connect_timeout);
    } catch (const error&) {
      cur->stop.request_stop();  // the reader marks it broken
      return false;
    }
  }
  return true;
}

// Under send_mutex_: SUBSCRIBE / UNSUBSCRIBE one channel on the current
// connection, if there is one (a reconnect subscribes every wanted channel).
void subscriber::send_locked(std::string_view verb, const std::string& channel) {
  auto& cur = shared_->current;
  if (!cur || cur->broken.load(std::memory_order_acquire)) return;
  std::string bytes;
  append_command(bytes, {verb, channel});
  try {
    cur->tcp.send_all(bytes, std::chrono::steady_clock::now() + connect_timeout);
  } catch (const error&) {
    cur->stop.request_stop();
  }
}

std::unique_ptr<subscriber::subscription> subscriber::subscribe(const std::string& channel) {
  std::lock_guard g(send_mutex_);
  bool first;
  {
    std::lock_guard m(shared_->mutex);
    first = ++shared_->channels[channel].waiters == 1;
  }
  const bool was_connected =
      shared_->current && !shared_->current->broken.load(std::memory_order_acquire);
  // A fresh connection subscribes every wanted channel, this one included.
  if (ensure_connected_locked() && first && was_connected) send_locked("SUBSCRIBE", channel);
  return std::unique_ptr<subscription>(new subscription(*this, channel));
}

subscriber::subscription::~subscription() {
  std::lock_guard g(owner_.send_mutex_);
  bool last;
  {
    std::lock_guard m(owner_.shared_->mutex);
    const auto it = owner_.shared_->channels.find(channel_);
    last = --it->second.waiters == 0;
    if (last) owner_.shared_->channels.erase(it);
  }
  if (last) owner_.send_locked("UNSUBSCRIBE", channel_);
}

std::uint64_t subscriber::subscription::generation() const {
  std::lock_guard g(owner_.shared_->mutex);
  return owner_.shared_->generation_locked(channel_);
}

bool subscriber::subscription::confirmed(steady_time until) const {
  shared& sh = *owner_.shared_;
  std::unique_lock lk(sh.mutex);
  auto done = [&] { return sh.channels.at(channel_).confirmed; };
  if (until == no_deadline) {
    sh.changed.wait(lk, done);
    return true;
  }
  return sh.changed.wait_until(lk, until, done);
}

void subscriber::subscription::wait_for_change(std::uint64_t seen, steady_time until) const {
  {
    // A connection lost earlier is re-made here (rate-limited), so that
    // waiters hear releases again once the server is back.
    std::lock_guard g(owner_.send_mutex_);
    owner_.ensure_connected_locked();
  }
  shared& sh = *owner_.shared_;
  std::unique_lock lk(sh.mutex);
  auto changed = [&] { return sh.generation_locked(channel_) != seen; };
  if (until == no_deadline) {
    sh.changed.wait(lk, changed);
  } else {
    sh.changed.wait_until(lk, until, changed);
  }
}

}  // namespace hwsync::net::redis
