#include "redis/subscriber.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <exception>
#include <mutex>
#include <optional>
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

// Sends a (small) command now, without waiting for room: false if it did
// not all go out, and then the link is unusable (part of a command is on
// the wire) and must be broken.
bool send_now(link& ln, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n =
        ::send(ln.tcp.native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

struct subscriber::shared {
  struct channel_state {
    int waiters = 0;
    std::uint64_t messages = 0;
    bool confirmed = false;
    // Coroutines sleeping on the ring for this channel: each sleep is
    // cancelled through its stop_source to wake it.
    std::vector<std::shared_ptr<std::stop_source>> sleepers;
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
    std::vector<std::shared_ptr<std::stop_source>> to_wake;
    {
      std::lock_guard g(mutex);
      ++epoch;
      for (auto& [name, ch] : channels) {
        ch.confirmed = false;
        take_sleepers_locked(ch, to_wake);
      }
    }
    changed.notify_all();
    wake(to_wake);
  }

  static void take_sleepers_locked(channel_state& ch,
                                   std::vector<std::shared_ptr<std::stop_source>>& out) {
    out.insert(out.end(), ch.sleepers.begin(), ch.sleepers.end());
    ch.sleepers.clear();
  }

  // Outside the mutex: a stop request runs the ring's cancellation, which
  // takes the ring's submission lock.
  static void wake(const std::vector<std::shared_ptr<std::stop_source>>& sleepers) {
    for (const auto& s : sleepers) s->request_stop();
  }
};

namespace {

// The reader: every reply on a subscribed connection is a push,
// [kind, channel, payload-or-count]. Runs on the ring's loop thread: it is
// started by whichever thread connects, which may exit, and the kernel
// cancels a ring operation whose submitting thread has exited (see
// read_for_coroutines in connection.cpp), which here would read as a lost
// connection.
task<void> read_pushes(std::shared_ptr<subscriber::shared> sh, std::shared_ptr<link> ln, ring& r) {
  if (!r.on_loop_thread()) co_await r.async(io_request{});  // a nop: resumes on the loop
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
        std::vector<std::shared_ptr<std::stop_source>> to_wake;
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
            subscriber::shared::take_sleepers_locked(it->second, to_wake);
          }
        }
        sh->changed.notify_all();
        subscriber::shared::wake(to_wake);
      }
    }
  } catch (...) {
    // Cancelled (shutdown, reconnect), reset, or garbage: waiters retry.
    // The loss is told before the link reads as broken, so whoever
    // replaces a broken link never has its confirmations undone by the
    // old reader.
    sh->connection_lost();
    ln->broken.store(true, std::memory_order_release);
  }
  ln->reader_done.release();
}

}  // namespace

subscriber::subscriber(std::string host, std::uint16_t port, ring& r)
    : host_(std::move(host)), port_(port), ring_(&r), shared_(std::make_shared<shared>()) {}

subscriber::~subscriber() {
  std::shared_ptr<link> last;
  {
    std::lock_guard g(send_mutex_);
    last = std::move(shared_->current);
  }
  if (last) {
    last->stop.request_stop();
    last->reader_done.acquire();
  }
}

bool subscriber::needs_connection() {
  std::lock_guard g(send_mutex_);
  const auto& cur = shared_->current;
  if (cur && !cur->broken.load(std::memory_order_acquire)) return false;
  return std::chrono::steady_clock::now() >= next_connect_attempt_;
}

void subscriber::connection_failed() {
  std::lock_guard g(send_mutex_);
  next_connect_attempt_ = std::chrono::steady_clock::now() + reconnect_interval;
}

// Installs `tcp` as the link (a live link installed meanwhile by another
// caller wins: `tcp` is closed) and subscribes every channel with waiters.
// A broken link it replaces has already told its loss (its reader's
// order), so nothing of it needs waiting for.
void subscriber::install(tcp_connection tcp) {
  std::lock_guard g(send_mutex_);
  auto& cur = shared_->current;
  if (cur && !cur->broken.load(std::memory_order_acquire)) return;
  if (cur) cur->stop.request_stop();
  auto ln = std::make_shared<link>();
  ln->tcp = std::move(tcp);
  ring::detach(read_pushes(shared_, ln, *ring_));
  cur = ln;
  std::vector<std::string> wanted;
  {
    std::lock_guard m(shared_->mutex);
    for (const auto& [name, ch] : shared_->channels) {
      if (ch.waiters > 0) wanted.push_back(name);
    }
  }
  if (wanted.empty()) return;
  std::vector<std::string_view> argv = {"SUBSCRIBE"};
  argv.insert(argv.end(), wanted.begin(), wanted.end());
  std::string bytes;
  append_command(bytes, argv);
  if (!send_now(*cur, bytes)) cur->stop.request_stop();  // the reader marks it broken
}

// Connecting happens outside send_mutex_: the blocking connect waits for
// the ring, whose loop thread may need send_mutex_ meanwhile.
void subscriber::ensure_connected() {
  if (!needs_connection()) return;
  try {
    install(tcp_connection::connect(
        host_, port_, std::chrono::steady_clock::now() + connect_timeout, {}, *ring_));
  } catch (const error&) {
    connection_failed();
  }
}

task<void> subscriber::async_ensure_connected() {
  if (!needs_connection()) co_return;
  std::optional<tcp_connection> tcp;
  try {
    tcp.emplace(co_await tcp_connection::async_connect(
        host_, port_, std::chrono::steady_clock::now() + connect_timeout, {}, *ring_));
  } catch (const error&) {
    connection_failed();
    co_return;
  }
  install(std::move(*tcp));
}

// Under send_mutex_: SUBSCRIBE / UNSUBSCRIBE one channel on the current
// connection, if there is one (a reconnect subscribes every wanted channel).
void subscriber::send_locked(std::string_view verb, const std::string& channel) {
  auto& cur = shared_->current;
  if (!cur || cur->broken.load(std::memory_order_acquire)) return;
  std::string bytes;
  append_command(bytes, {verb, channel});
  if (!send_now(*cur, bytes)) cur->stop.request_stop();
}

std::unique_ptr<subscriber::subscription> subscriber::register_locked(const std::string& channel) {
  bool first;
  {
    std::lock_guard m(shared_->mutex);
    first = ++shared_->channels[channel].waiters == 1;
  }
  // A link installed later subscribes every wanted channel, this one
  // included.
  if (first) send_locked("SUBSCRIBE", channel);
  return std::unique_ptr<subscription>(new subscription(*this, channel));
}

std::unique_ptr<subscriber::subscription> subscriber::subscribe(const std::string& channel) {
  ensure_connected();
  std::lock_guard g(send_mutex_);
  return register_locked(channel);
}

task<std::unique_ptr<subscriber::subscription>> subscriber::async_subscribe(std::string channel) {
  co_await async_ensure_connected();
  std::lock_guard g(send_mutex_);
  co_return register_locked(channel);
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
  // A connection lost earlier is re-made here (rate-limited), so that
  // waiters hear releases again once the server is back.
  owner_.ensure_connected();
  shared& sh = *owner_.shared_;
  std::unique_lock lk(sh.mutex);
  auto changed = [&] { return sh.generation_locked(channel_) != seen; };
  if (until == no_deadline) {
    sh.changed.wait(lk, changed);
  } else {
    sh.changed.wait_until(lk, until, changed);
  }
}

task<bool> subscriber::subscription::async_sleep(std::function<bool()> ready, steady_time until,
                                                 std::stop_token stop) const {
  shared& sh = *owner_.shared_;
  for (;;) {
    if (stop.stop_requested()) co_return false;
    const auto wake = std::make_shared<std::stop_source>();
    {
      std::lock_guard lk(sh.mutex);
      if (ready()) co_return true;
      sh.channels.at(channel_).sleepers.push_back(wake);
    }
    bool timed_out;
    {
      const std::stop_callback forward(stop, [&wake] { wake->request_stop(); });
      timed_out = co_await sleep_until(*owner_.ring_, until, wake->get_token());
    }
    {
      std::lock_guard lk(sh.mutex);
      auto& sleepers = sh.channels.at(channel_).sleepers;
      sleepers.erase(std::remove(sleepers.begin(), sleepers.end(), wake), sleepers.end());
    }
    if (timed_out) co_return !stop.stop_requested();
  }
}

task<bool> subscriber::subscription::async_confirmed(steady_time until,
                                                     std::stop_token stop) const {
  const shared& sh = *owner_.shared_;
  co_return co_await async_sleep([&] { return sh.channels.at(channel_).confirmed; }, until,
                                 std::move(stop));
}

task<bool> subscriber::subscription::async_wait_for_change(std::uint64_t seen, steady_time until,
                                                           std::stop_token stop) const {
  // As wait_for_change: a lost connection is re-made first.
  co_await owner_.async_ensure_connected();
  const shared& sh = *owner_.shared_;
  co_return co_await async_sleep([&] { return sh.generation_locked(channel_) != seen; }, until,
                                 std::move(stop));
}

}  // namespace hwsync::net::redis
