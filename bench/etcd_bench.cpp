// bench/etcd_bench.cpp — the etcd:// lock service (hwsync/net/lock_service.hpp
// over hwsync's own gRPC client, net/src/etcd/) beside the same etcd calls
// made through the official gRPC C++ library, in one binary and one run.
//
// Scenarios (names "etcd/<scenario>/<impl>"):
//   lock_unlock     one thread, one connection, an uncontended lock()+unlock()
//                   pair, latency percentiles of the pair (record_latency):
//                   hwsync_etcd (distributed_lock on etcd://) against
//                   grpcpp_sync (grpc++'s synchronous stubs sending, call for
//                   call, what etcd_backend.cpp sends: once per lock object
//                   a LeaseGrant and a keeper refreshing it every ttl/3 on a
//                   LeaseKeepAlive stream (the session); per pair a Txn
//                   "create_revision(key) == 0 ? put(key, lease) +
//                   range(oldest) : range(oldest)" and a Txn
//                   "create_revision(key) == token ? delete(key)"). Target:
//                   hwsync_etcd p50 <= 1.0x grpcpp_sync.
//   txn_round_trip  one write txn (mod_revision(key) == last ? put(key)), the
//                   unit the hand-off target is counted in: hwsync_etcd
//                   (etcd::client::txn) and grpcpp_sync (KV.Txn).
//   hand_off        a holder unlocks while a waiter (another thread, its own
//                   connection) is parked on a watch of the holder's key;
//                   latency from the holder's unlock() call to the waiter's
//                   lock() returning: hwsync_etcd (two distributed_locks) and
//                   grpcpp_sync (the same calls the backend's wait makes:
//                   a read-only Txn "range(newest key older than ours) +
//                   range(own key)", a Watch of the predecessor from the
//                   read's revision + 1 until its DELETE, the read-only Txn
//                   again). Target: hwsync_etcd p50 <= 1.5x
//                   txn_round_trip/hwsync_etcd p50.
//   hand_off_phases the same hand-off through etcd::client calls, each step
//                   timestamped (delete call, watch event, post-wake read),
//                   with and without the /metrics polling (below).
//
// Each hand-off starts only when the waiter is parked: the waiter reports
// that etcd confirmed its watch on the holder's key (hwsync: the backend's
// after-watch test hook, hwsync/net/etcd_lock_test_hooks.hpp; grpc++: the
// watch's `created` response), so a hand-off is the watch path, never a
// waiter that read the predecessor gone before it watched. Not by polling
// etcd's watcher gauge on /metrics, as this bench did first: each poll
// makes etcd render its whole metrics page (and collect the garbage), and
// the last poll ran right before the measured unlock, slowing etcd's WAL
// fsync and apply under it (etcd/hand_off_phases measures both ways).
//
// Every scenario runs against an etcd (/usr/bin/etcd, Debian's etcd-server)
// this binary starts on 127.0.0.1 with free ports and a temporary data
// directory (tests/support's etcd_cluster) and stops at exit; without it the
// scenarios report an error instead of a number, as the grpcpp_sync ones do
// in a build without grpc++ (bench/CMakeLists.txt). Every scenario checks
// what it got back: a token that did not increase, a txn that did not
// succeed, a waiter that held before the holder unlocked is an error, not a
// fast result.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>

#include "harness.hpp"
#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_lock_test_hooks.hpp"
#include "hwsync/net/etcd_session.hpp"
#include "hwsync/net/lock_service.hpp"
#include "support/etcd_server.hpp"

#if HWSYNC_BENCH_GRPC_PEER
#include <grpcpp/grpcpp.h>

#include "etcd_grpc_peer.grpc.pb.h"
#endif

namespace hwsync::bench {
namespace {

using namespace std::chrono_literals;

// Samples per scenario: fixed counts rather than GB's min time, because one
// pair is milliseconds (every write is a Raft commit with a WAL fsync) and
// percentiles need samples.
int pair_samples() {
  return opts().quick ? 200 : 1000;
}
int hand_off_samples() {
  return opts().quick ? 60 : 300;
}

// The etcd every scenario talks to, started on first use. A failure to
// start is remembered and reported by each scenario.
struct etcd_fixture {
  std::unique_ptr<test::etcd_cluster> server;
  std::string error;
};

etcd_fixture& etcd_service() {
  static etcd_fixture f = [] {
    etcd_fixture r;
    try {
      r.server = std::make_unique<test::etcd_cluster>(1);
    } catch (const std::exception& e) {
      r.error = std::string("etcd did not start: ") + e.what();
    }
    return r;
  }();
  return f;
}

bool etcd_ready(benchmark::State& state) {
  if (etcd_service().server) return true;
  state.SkipWithError(etcd_service().error.c_str());
  return false;
}

// Times one call of `op` per GB iteration into a histogram; `op` returns
// false after calling SkipWithError.
template <class Op>
void time_each(benchmark::State& state, Op&& op) {
  cycle_histogram hist;
  for (auto _ : state) {
    const cycle_clock::ticks t0 = cycle_clock::now();
    if (!op()) return;
    hist.record(cycle_clock::now() - t0);
  }
  state.counters["cycles_per_op"] = hist.mean();
  record_latency(state, hist);
}

// An HTTP/1.1 body as sent (test::http_get does not decode it) without its
// chunked transfer coding: etcd sends /metrics in chunks, and a chunk
// boundary may fall inside the line the bench reads. A body that is not
// chunked comes back as it is.
std::string dechunk(const std::string& body) {
  std::string out;
  std::size_t at = 0;
  for (;;) {
    const auto eol = body.find("\r\n", at);
    std::size_t size = 0;
    const auto [end, ec] = std::from_chars(
        body.data() + at, body.data() + (eol == std::string::npos ? at : eol), size, 16);
    if (eol == std::string::npos || ec != std::errc() || end != body.data() + eol) return body;
    if (size == 0) return out;
    if (eol + 2 + size > body.size()) return body;
    out.append(body, eol + 2, size);
    at = eol + 2 + size + 2;  // the chunk and its CRLF
  }
}

// etcd's count of registered watchers, from its /metrics text; nullopt if
// the endpoint did not answer or the gauge could not be read.
std::optional<long> watcher_count() {
  const auto raw = test::http_get(etcd_service().server->client_port(0), "/metrics", 2s);
  if (!raw) return std::nullopt;
  const std::string body = dechunk(*raw);
  constexpr std::string_view gauge = "\netcd_debugging_mvcc_watcher_total ";
  const auto at = body.find(gauge);
  if (at == std::string::npos) return std::nullopt;
  const char* first = body.data() + at + gauge.size();
  const char* last = body.data() + body.size();
  long n = 0;
  const auto [end, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || end == last || *end != '\n') return std::nullopt;
  return n;
}

// One sample of etcd's /metrics text (dechunked); "" if it did not answer.
std::string metrics_text() {
  const auto raw = test::http_get(etcd_service().server->client_port(0), "/metrics", 2s);
  return raw ? dechunk(*raw) : std::string();
}

// The value of the unlabelled series `name` in a /metrics text; nullopt if
// it is not there.
std::optional<double> metric(const std::string& text, std::string_view name) {
  const std::string needle = "\n" + std::string(name) + " ";
  const auto at = text.find(needle);
  if (at == std::string::npos) return std::nullopt;
  const auto end = text.find('\n', at + needle.size());
  try {
    return std::stod(text.substr(at + needle.size(), end - at - needle.size()));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// etcd's own account of a batch of operations, from /metrics before and
// after it: WAL fsyncs and backend commits (count per operation, mean
// duration), Go GC cycles per operation.
void record_etcd_side(benchmark::State& state, const std::string& before, const std::string& after,
                      double operations) {
  const auto delta = [&](std::string_view name) -> std::optional<double> {
    const auto a = metric(after, name), b = metric(before, name);
    if (!a || !b) return std::nullopt;
    return *a - *b;
  };
  const auto mean_us = [&](const char* sum, const char* count, const char* key,
                           const char* per_op_key) {
    const auto s = delta(sum), n = delta(count);
    if (!s || !n || *n <= 0) return;
    state.counters[key] = *s / *n * 1e6;
    state.counters[per_op_key] = *n / operations;
  };
  mean_us("etcd_disk_wal_fsync_duration_seconds_sum", "etcd_disk_wal_fsync_duration_seconds_count",
          "etcd_wal_fsync_mean_us", "etcd_wal_fsyncs_per_op");
  mean_us("etcd_disk_backend_commit_duration_seconds_sum",
          "etcd_disk_backend_commit_duration_seconds_count", "etcd_backend_commit_mean_us",
          "etcd_backend_commits_per_op");
  if (const auto gc = delta("go_gc_duration_seconds_count")) {
    state.counters["etcd_gc_cycles_per_op"] = *gc / operations;
  }
}

// Polls watcher_count() until `good` holds for it; false (and a skip with
// `why`) after 10 s.
template <class Good>
bool await_watchers(benchmark::State& state, Good&& good, const char* why) {
  const auto limit = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    const std::optional<long> n = watcher_count();
    if (n && good(*n)) return true;
    if (std::chrono::steady_clock::now() >= limit) {
      state.SkipWithError(n ? why
                            : "etcd's /metrics did not print a readable "
                              "etcd_debugging_mvcc_watcher_total for 10 s");
      return false;
    }
    std::this_thread::sleep_for(200us);
  }
}

// The hand-off loop, shared by both implementations. The waiter runs on a
// thread of its own; per iteration the holder takes the lock uncontended,
// lets the waiter start waiting, waits until the waiter reports its watch
// confirmed, and unlocks: the sample is holder-unlock-call ->
// waiter-lock-returned (the unlock() call's own duration is the counter
// unlock_p50_ns). Locks return their fencing token; the waiter's must
// exceed the holder's. set_on_parked installs the callback the waiter's
// lock must run once etcd confirmed its watch (and clears it when given
// an empty one).
struct hand_off_parties {
  std::function<std::uint64_t()> holder_lock;
  std::function<void()> holder_unlock;
  std::function<std::uint64_t()> waiter_lock;
  std::function<void()> waiter_unlock;
  std::function<void(std::function<void()>)> set_on_parked;
};

// The turn protocol between a bench's holder and its waiter thread: the
// holder requests turn n, the waiter takes it (await_request) and reports
// it done (finish, publishing its results under the same mutex). Extra
// state the two share is guarded by `m` and signalled through `cv`.
struct waiter_turns {
  std::mutex m;
  std::condition_variable cv;
  int requested = 0;  // turns the waiter was asked to take
  int finished = 0;   // turns it completed
  bool quit = false;

  // Waiter: blocks until `turn` is requested; false once told to quit.
  bool await_request(int turn) {
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return quit || requested >= turn; });
    return !quit;
  }
  // Waiter: `publish` runs under the mutex, then `turn` counts as done.
  template <class Publish>
  void finish(int turn, Publish&& publish) {
    std::lock_guard lk(m);
    publish();
    finished = turn;
    cv.notify_all();
  }
  // Holder: asks for the next turn and returns its number.
  int request() {
    int turn = 0;
    {
      std::lock_guard lk(m);
      turn = ++requested;
    }
    cv.notify_all();
    return turn;
  }
  void stop() {
    {
      std::lock_guard lk(m);
      quit = true;
    }
    cv.notify_all();
  }
};

void time_hand_offs(benchmark::State& state, hand_off_parties p) {
  waiter_turns turns;
  int parked = 0;  // the last turn in which the waiter's watch was confirmed (turns.m)
  cycle_clock::ticks held_at = 0;  // written by the waiter before `finished`
  std::uint64_t waiter_token = 0;
  std::string failure;

  std::thread waiter([&] {
    for (int turn = 1; turns.await_request(turn); ++turn) {
      std::string error;
      cycle_clock::ticks at = 0;
      std::uint64_t token = 0;
      try {
        token = p.waiter_lock();
        at = cycle_clock::now();
        p.waiter_unlock();
      } catch (const std::exception& e) {
        error = std::string("waiter: ") + e.what();
      }
      turns.finish(turn, [&] {
        held_at = at;
        waiter_token = token;
        failure = error;
      });
    }
  });
  p.set_on_parked([&] {
    {
      std::lock_guard lk(turns.m);
      parked = turns.requested;  // the waiter only runs during the current turn
    }
    turns.cv.notify_all();
  });
  const auto stop_waiter = [&] {
    turns.stop();
    waiter.join();
    p.set_on_parked({});
  };

  cycle_histogram hist;
  cycle_histogram unlock_calls;  // the holder's unlock() call alone
  const std::string etcd_before = metrics_text();
  try {
    for (auto _ : state) {
      const std::uint64_t holder_token = p.holder_lock();
      const int turn = turns.request();
      bool waiter_parked = false;
      {
        std::unique_lock lk(turns.m);
        waiter_parked = turns.cv.wait_for(lk, 10s, [&] {
          return parked == turn || turns.finished == turn;
        }) && parked == turn;
      }
      if (!waiter_parked) {
        state.SkipWithError("the waiter did not report its watch confirmed within 10 s");
        p.holder_unlock();  // lets the waiter through, so it can be joined
        break;
      }
      const cycle_clock::ticks t0 = cycle_clock::now();
      p.holder_unlock();
      unlock_calls.record(cycle_clock::now() - t0);
      std::unique_lock lk(turns.m);
      turns.cv.wait(lk, [&] { return turns.finished == turn; });
      if (!failure.empty()) {
        state.SkipWithError(failure.c_str());
        break;
      }
      if (held_at < t0) {
        state.SkipWithError("the waiter held the lock before the holder unlocked it");
        break;
      }
      if (waiter_token <= holder_token) {
        state.SkipWithError("the waiter's token did not exceed the holder's");
        break;
      }
      hist.record(held_at - t0);
    }
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("holder: ") + e.what()).c_str());
  }
  stop_waiter();
  state.counters["cycles_per_op"] = hist.mean();
  record_latency(state, hist);
  state.counters["unlock_p50_ns"] = ticks_to_ns(static_cast<double>(unlock_calls.percentile(50)));
  if (hist.count() > 0) {
    record_etcd_side(state, etcd_before, metrics_text(), static_cast<double>(hist.count()));
  }
}

// --- hwsync ------------------------------------------------------------------

void bm_lock_unlock_hwsync(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  const net::lock_service service(etcd_service().server->uri());
  net::distributed_lock lock(service, "bench-lock-unlock-hwsync");
  net::fencing_token last{};
  time_each(state, [&] {
    lock.lock();
    const net::fencing_token t = lock.token();
    lock.unlock();
    if (!(last < t)) {
      state.SkipWithError("etcd:// handed out a token that did not increase");
      return false;
    }
    last = t;
    return true;
  });
}

void bm_txn_hwsync(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  net::etcd::client c({etcd_service().server->endpoint(0)});
  const std::string key = "/hwsync/bench/txn-hwsync";
  std::int64_t last = c.put(key, "0").revision;
  time_each(state, [&] {
    const net::etcd::txn_result r =
        c.txn({net::etcd::compare::mod_revision(key, net::etcd::compare::result::equal, last)},
              {net::etcd::operation::put(key, "1")});
    if (!r.succeeded || r.revision <= last) {
      state.SkipWithError("etcd::client: the guarded put did not succeed");
      return false;
    }
    last = r.revision;
    return true;
  });
}

// One linearizable read (Range of one key): the waiter's work after the
// predecessor's deletion is one such read (a read-only Txn of two ranges).
void bm_range_hwsync(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  net::etcd::client c({etcd_service().server->endpoint(0)});
  const std::string key = "/hwsync/bench/range-hwsync";
  // The put's revision is the key's mod_revision; its create_revision is
  // the first repetition's put (the key outlives a repetition).
  const std::int64_t written = c.put(key, "0").revision;
  time_each(state, [&] {
    const net::etcd::range_result r = c.get(key);
    if (r.kvs.size() != 1 || r.kvs[0].mod_revision != written) {
      state.SkipWithError("etcd::client: the range did not return the key");
      return false;
    }
    return true;
  });
}

// How long after a write's call its event reaches a parked watcher (another
// thread, its own connection): the part of a hand-off that is etcd's watch
// path and the waiter's wake-up. The writer's own round trip for the same
// puts is in the counters put_p50_ns / put_p99_ns.
void bm_watch_notify_hwsync(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  net::etcd::client writer({etcd_service().server->endpoint(0)});
  net::etcd::client watcher({etcd_service().server->endpoint(0)});
  const std::string key = "/hwsync/bench/watch-notify";
  const std::int64_t start = writer.put(key, "0").revision;
  net::etcd::watch w(watcher, key, {}, start + 1);
  std::mutex m;
  std::condition_variable cv;
  std::int64_t seen_revision = 0;
  cycle_clock::ticks seen_at = 0;
  std::string failure;
  bool quit = false;
  std::thread reader([&] {
    try {
      while (!quit) {
        const auto events = w.next(std::chrono::steady_clock::now() + 200ms);
        if (!events || events->empty()) continue;
        const cycle_clock::ticks at = cycle_clock::now();
        std::lock_guard lk(m);
        seen_revision = events->back().kv.mod_revision;
        seen_at = at;
        cv.notify_all();
      }
    } catch (const std::exception& e) {
      std::lock_guard lk(m);
      failure = std::string("watcher: ") + e.what();
      cv.notify_all();
    }
  });
  cycle_histogram notify;
  cycle_histogram put;
  try {
    for (auto _ : state) {
      const cycle_clock::ticks t0 = cycle_clock::now();
      const std::int64_t revision = writer.put(key, "1").revision;
      put.record(cycle_clock::now() - t0);
      std::unique_lock lk(m);
      if (!cv.wait_for(lk, 10s, [&] { return !failure.empty() || seen_revision >= revision; })) {
        failure = "the watcher saw no event for 10 s after a put";
      }
      if (!failure.empty()) {
        state.SkipWithError(failure.c_str());
        break;
      }
      notify.record(seen_at - t0);
    }
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("writer: ") + e.what()).c_str());
  }
  {
    std::lock_guard lk(m);
    quit = true;
  }
  reader.join();
  state.counters["cycles_per_op"] = notify.mean();
  record_latency(state, notify);
  state.counters["put_p50_ns"] = ticks_to_ns(static_cast<double>(put.percentile(50)));
  state.counters["put_p99_ns"] = ticks_to_ns(static_cast<double>(put.percentile(99)));
}

void bm_hand_off_hwsync(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  // Two services: two clients, two connections, as two processes would have.
  const net::lock_service holder_service(etcd_service().server->uri());
  const net::lock_service waiter_service(etcd_service().server->uri());
  net::distributed_lock holder(holder_service, "bench-hand-off-hwsync");
  net::distributed_lock waiter(waiter_service, "bench-hand-off-hwsync");
  time_hand_offs(state, {[&] {
                           holder.lock();
                           return holder.token().value();
                         },
                         [&] { holder.unlock(); },
                         [&] {
                           waiter.lock();
                           return waiter.token().value();
                         },
                         [&] { waiter.unlock(); },
                         [](std::function<void()> on_parked) {
                           net::etcd::test_hooks::set_after_predecessor_watch(std::move(on_parked));
                         }});
}

// The hand-off taken apart (the etcd:// backend's calls, made here through
// etcd::client directly so that each step can be timestamped on the client
// side): the holder's delete txn (send, reply), the waiter's watch event,
// the waiter's post-wake read-only txn (send, reply). Arg poll_metrics: 1
// waits for the waiter's watch as etcd/hand_off did at first (polling etcd's
// /metrics until the watcher gauge moves, then deleting at once); 0 takes
// the waiter's word for it (its watch constructor returned: etcd confirmed
// the watcher) and never asks etcd for /metrics during the batch, so etcd
// serves nothing but the hand-off. Counters: p50 of each step, in ns from
// the delete's send unless named otherwise, and etcd's side of the batch.
void bm_hand_off_phases_hwsync(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  namespace etcd = net::etcd;
  using etcd::compare;
  using etcd::operation;
  const bool poll_metrics = state.range(0) != 0;
  etcd::client holder_client({etcd_service().server->endpoint(0)});
  etcd::client waiter_client({etcd_service().server->endpoint(0)});
  etcd::session holder_session(holder_client, 10s);
  etcd::session waiter_session(waiter_client, 10s);
  const std::string prefix = "/hwsync/locks/bench-hand-off-phases/";
  const auto key_of = [&](const etcd::session& s) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(s.lease()));
    return prefix + buf;
  };
  const std::string holder_key = key_of(holder_session), waiter_key = key_of(waiter_session);
  // The backend's read_turn(): the newest key older than `mine`, and `mine`.
  const auto read_turn = [&](std::int64_t mine_revision) {
    etcd::range_options before_me;
    before_me.range_end = etcd::prefix_end(prefix);
    before_me.sort = etcd::range_options::order::descending_create;
    before_me.limit = 1;
    before_me.keys_only = true;
    before_me.max_create_revision = mine_revision - 1;
    return waiter_client.txn({}, {operation::get(prefix, before_me), operation::get(waiter_key)});
  };
  const auto put_if_absent = [&](etcd::client& c, const std::string& key, std::int64_t lease) {
    const etcd::txn_result r = c.txn({compare::create_revision(key, compare::result::equal, 0)},
                                     {operation::put(key, "bench", lease)});
    if (!r.succeeded) throw std::runtime_error("phases: a key of a previous turn was left");
    return r.revision;
  };

  waiter_turns turns;
  int watching = 0;  // the last turn whose watch is confirmed (turns.m)
  cycle_clock::ticks event_at = 0, read_sent = 0, read_answered = 0;
  std::string failure;
  std::thread waiter([&] {
    for (int turn = 1; turns.await_request(turn); ++turn) {
      std::string error;
      cycle_clock::ticks ev = 0, sent = 0, answered = 0;
      try {
        const std::int64_t mine = put_if_absent(waiter_client, waiter_key, waiter_session.lease());
        const etcd::txn_result first = read_turn(mine);
        if (first.results.at(0).range.kvs.empty()) throw std::runtime_error("no predecessor");
        etcd::watch w(waiter_client, first.results[0].range.kvs[0].key, {}, first.revision + 1);
        {
          std::lock_guard lk(turns.m);
          watching = turn;
        }
        turns.cv.notify_all();
        for (bool deleted = false; !deleted;) {
          const auto events = w.next(std::chrono::steady_clock::now() + 10s);
          if (!events) throw std::runtime_error("no deletion event within 10 s");
          ev = cycle_clock::now();
          for (const etcd::event& e : *events) deleted |= e.what == etcd::event::type::erase;
        }
        sent = cycle_clock::now();
        const etcd::txn_result again = read_turn(mine);
        answered = cycle_clock::now();
        if (!again.results.at(0).range.kvs.empty() || again.results.at(1).range.kvs.empty()) {
          throw std::runtime_error("the post-wake read did not show our turn");
        }
        waiter_client.txn({compare::create_revision(waiter_key, compare::result::equal, mine)},
                          {operation::erase(waiter_key)});
      } catch (const std::exception& e) {
        error = std::string("waiter: ") + e.what();
      }
      turns.finish(turn, [&] {
        event_at = ev;
        read_sent = sent;
        read_answered = answered;
        failure = error;
      });
    }
  });

  cycle_histogram total, delete_call, event, wake_to_read, read_call;
  const std::string before = metrics_text();
  int done = 0;
  try {
    for (auto _ : state) {
      if (poll_metrics &&
          !await_watchers(
              state, [](long n) { return n == 0; }, "a watcher stayed registered")) {
        break;
      }
      const std::int64_t holder_revision =
          put_if_absent(holder_client, holder_key, holder_session.lease());
      const int turn = turns.request();
      if (poll_metrics) {
        if (!await_watchers(
                state, [](long n) { return n > 0; }, "the waiter did not watch")) {
          holder_client.erase(holder_key);
          break;
        }
      } else {
        std::unique_lock lk(turns.m);
        turns.cv.wait(lk, [&] { return watching == turn || turns.finished == turn; });
      }
      const cycle_clock::ticks t0 = cycle_clock::now();
      holder_client.txn(
          {compare::create_revision(holder_key, compare::result::equal, holder_revision)},
          {operation::erase(holder_key)});
      const cycle_clock::ticks t1 = cycle_clock::now();
      std::unique_lock lk(turns.m);
      turns.cv.wait(lk, [&] { return turns.finished == turn; });
      if (!failure.empty()) {
        state.SkipWithError(failure.c_str());
        break;
      }
      delete_call.record(t1 - t0);
      event.record(event_at - t0);
      wake_to_read.record(read_sent - event_at);
      read_call.record(read_answered - read_sent);
      total.record(read_answered - t0);
      ++done;
    }
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("holder: ") + e.what()).c_str());
  }
  turns.stop();
  waiter.join();
  const auto p50 = [](const cycle_histogram& h) {
    return ticks_to_ns(static_cast<double>(h.percentile(50)));
  };
  state.counters["cycles_per_op"] = total.mean();
  record_latency(state, total);
  state.counters["delete_call_p50_ns"] = p50(delete_call);
  state.counters["event_p50_ns"] = p50(event);
  state.counters["wake_to_read_p50_ns"] = p50(wake_to_read);
  state.counters["read_call_p50_ns"] = p50(read_call);
  if (done > 0) record_etcd_side(state, before, metrics_text(), done);
}

// --- grpc++ ------------------------------------------------------------------

#if HWSYNC_BENCH_GRPC_PEER

namespace pb = net::etcd::pb;

std::string hex(std::int64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

// An error from a grpc++ call or an answer the lock cannot use.
struct peer_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(const grpc::Status& s, const char* call) {
  if (!s.ok()) {
    throw peer_error(std::string("grpc++ ") + call + ": expected OK, got status " +
                     std::to_string(s.error_code()) + " (" + s.error_message() + ")");
  }
}

// etcd_backend.cpp's etcd_lock, call for call, on grpc++'s synchronous
// stubs over one channel (one HTTP/2 connection): a session (a lease
// granted at the first lock() and refreshed every ttl/3 by a keeper thread
// on a LeaseKeepAlive stream, as etcd::session does) kept across
// acquisitions. Only what the bench drives: no deadlines, no failover, no
// renewal from the holder (distributed_lock's first renewal comes ttl/3
// after an acquisition; no pair lasts that long).
class grpc_lock {
 public:
  grpc_lock(const std::string& endpoint, std::string name)
      : channel_(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials())),
        kv_(etcdserverpb::KV::NewStub(channel_)),
        leases_(etcdserverpb::Lease::NewStub(channel_)),
        watch_(etcdserverpb::Watch::NewStub(channel_)),
        prefix_("/hwsync/locks/" + std::move(name) + "/"),
        owner_("0123456789abcdef0123456789abcdef") {}

  ~grpc_lock() {
    if (keeper_.joinable()) {
      keeper_.request_stop();
      keeper_ctx_.TryCancel();
      keeper_.join();
    }
    if (lease_ == 0) return;
    pb::LeaseRevokeRequest revoke;  // as etcd::session's destructor does
    revoke.set_id(lease_);
    pb::LeaseRevokeResponse revoked;
    grpc::ClientContext ctx;
    leases_->LeaseRevoke(&ctx, revoke, &revoked).IgnoreError();
  }

  // lock(): enqueue, and wait for the predecessors if not first.
  std::int64_t lock() {
    if (!enqueue()) wait_for_predecessors();
    return revision_;
  }

  // Run once etcd confirmed a watch of this lock's wait (the bench's
  // hand-off starts then).
  void set_on_watching(std::function<void()> f) { on_watching_ = std::move(f); }

  void unlock() {
    pb::TxnRequest t;
    pb::Compare* c = t.add_compare();
    c->set_key(key_);
    c->set_result(pb::Compare::EQUAL);
    c->set_target(pb::Compare::CREATE);
    c->set_create_revision(revision_);
    t.add_success()->mutable_request_delete_range()->set_key(key_);
    pb::TxnResponse r;
    grpc::ClientContext ctx;
    check(kv_->Txn(&ctx, t, &r), "KV.Txn (release)");
    if (!r.succeeded()) throw peer_error("grpc++ release: the key was no longer ours");
  }

 private:
  // The backend's first_created() range: the oldest key of the name.
  pb::RangeRequest oldest() const {
    pb::RangeRequest r;
    r.set_key(prefix_);
    r.set_range_end(net::etcd::prefix_end(prefix_));
    r.set_limit(1);
    r.set_sort_target(pb::RangeRequest::CREATE);
    r.set_sort_order(pb::RangeRequest::ASCEND);
    return r;
  }

  // etcd::session: LeaseGrant, then a keeper thread refreshing the lease
  // every ttl/3 on one LeaseKeepAlive stream.
  void start_session() {
    pb::LeaseGrantRequest g;
    g.set_ttl(10);  // lock_options' default ttl, as the backend rounds it
    pb::LeaseGrantResponse granted;
    grpc::ClientContext ctx;
    check(leases_->LeaseGrant(&ctx, g, &granted), "Lease.LeaseGrant");
    lease_ = granted.id();
    key_ = prefix_ + hex(lease_);
    keeper_ = std::jthread([this](std::stop_token stop) {
      const auto stream = leases_->LeaseKeepAlive(&keeper_ctx_);
      std::mutex m;
      std::condition_variable_any cv;
      for (;;) {
        {
          std::unique_lock lk(m);
          cv.wait_for(lk, stop, 10s / 3, [] { return false; });
        }
        if (stop.stop_requested()) break;
        pb::LeaseKeepAliveRequest refresh;
        refresh.set_id(lease_);
        pb::LeaseKeepAliveResponse refreshed;
        if (!stream->Write(refresh) || !stream->Read(&refreshed)) break;
      }
      stream->WritesDone();
      stream->Finish().IgnoreError();
    });
  }

  bool enqueue() {
    if (lease_ == 0) start_session();
    pb::TxnRequest t;
    pb::Compare* c = t.add_compare();
    c->set_key(key_);
    c->set_result(pb::Compare::EQUAL);
    c->set_target(pb::Compare::CREATE);
    c->set_create_revision(0);
    pb::PutRequest* put = t.add_success()->mutable_request_put();
    put->set_key(key_);
    put->set_value(owner_);
    put->set_lease(lease_);
    *t.add_success()->mutable_request_range() = oldest();
    *t.add_failure()->mutable_request_range() = oldest();
    pb::TxnResponse r;
    grpc::ClientContext ctx;
    check(kv_->Txn(&ctx, t, &r), "KV.Txn (enqueue)");
    if (r.responses_size() != 2 || !r.succeeded()) {
      throw peer_error("grpc++ enqueue: expected our put to succeed with two results");
    }
    revision_ = r.header().revision();
    const auto& first = r.responses(1).response_range();
    return first.kvs_size() == 0 || first.kvs(0).create_revision() == revision_;
  }

  // The backend's read_turn(), one read-only Txn, and its watch.
  void wait_for_predecessors() {
    for (;;) {
      pb::TxnRequest t;
      pb::RangeRequest* before_me = t.add_success()->mutable_request_range();
      before_me->set_key(prefix_);
      before_me->set_range_end(net::etcd::prefix_end(prefix_));
      before_me->set_limit(1);
      before_me->set_sort_target(pb::RangeRequest::CREATE);
      before_me->set_sort_order(pb::RangeRequest::DESCEND);
      before_me->set_keys_only(true);
      before_me->set_max_create_revision(revision_ - 1);
      t.add_success()->mutable_request_range()->set_key(key_);
      pb::TxnResponse r;
      {
        grpc::ClientContext ctx;
        check(kv_->Txn(&ctx, t, &r), "KV.Txn (read predecessor and own key)");
      }
      if (r.responses_size() != 2) throw peer_error("grpc++ wait: expected two ranges");
      const auto& mine = r.responses(1).response_range();
      if (mine.kvs_size() == 0 || mine.kvs(0).create_revision() != revision_) {
        throw peer_error("grpc++ wait: our key was gone when our turn came");
      }
      const auto& predecessor = r.responses(0).response_range();
      if (predecessor.kvs_size() == 0) return;
      await_deletion(predecessor.kvs(0).key(), r.header().revision() + 1);
    }
  }

  // A watch of `key` from `start_revision` until it is deleted.
  void await_deletion(const std::string& key, std::int64_t start_revision) {
    grpc::ClientContext ctx;
    const auto stream = watch_->Watch(&ctx);
    pb::WatchRequest create;
    create.mutable_create_request()->set_key(key);
    create.mutable_create_request()->set_start_revision(start_revision);
    if (!stream->Write(create)) throw peer_error("grpc++ Watch: the create request failed");
    pb::WatchResponse response;
    bool deleted = false;
    while (!deleted && stream->Read(&response)) {
      if (response.canceled()) {
        throw peer_error("grpc++ Watch: cancelled (" + response.cancel_reason() + ")");
      }
      if (response.created() && on_watching_) on_watching_();
      for (const auto& ev : response.events()) deleted |= ev.type() == pb::Event::DELETE;
    }
    ctx.TryCancel();
    stream->Finish().IgnoreError();
    if (!deleted) throw peer_error("grpc++ Watch: the stream ended before the deletion");
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> leases_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::string prefix_;
  std::string owner_;
  std::int64_t lease_ = 0;  // the session's; 0 before the first lock()
  std::string key_;
  std::int64_t revision_ = 0;
  std::function<void()> on_watching_;
  grpc::ClientContext keeper_ctx_;
  std::jthread keeper_;  // last: stopped in the destructor before the rest goes
};

void bm_lock_unlock_grpc(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  grpc_lock lock(etcd_service().server->endpoint(0), "bench-lock-unlock-grpcpp");
  std::int64_t last = 0;
  try {
    time_each(state, [&] {
      const std::int64_t t = lock.lock();
      lock.unlock();
      if (t <= last) {
        state.SkipWithError("grpc++: a token that did not increase");
        return false;
      }
      last = t;
      return true;
    });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void bm_txn_grpc(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  const auto channel =
      grpc::CreateChannel(etcd_service().server->endpoint(0), grpc::InsecureChannelCredentials());
  const auto kv = etcdserverpb::KV::NewStub(channel);
  const std::string key = "/hwsync/bench/txn-grpcpp";
  const auto guarded_put = [&](std::int64_t last) {
    pb::TxnRequest t;
    pb::Compare* c = t.add_compare();
    c->set_key(key);
    c->set_result(pb::Compare::EQUAL);
    c->set_target(pb::Compare::MOD);
    c->set_mod_revision(last);
    pb::PutRequest* put = t.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value("1");
    pb::TxnResponse r;
    grpc::ClientContext ctx;
    check(kv->Txn(&ctx, t, &r), "KV.Txn");
    return r;
  };
  try {
    // An unconditional put first, as the hwsync side does: its revision is
    // the key's mod_revision, also when an earlier repetition left the key.
    std::int64_t last = 0;
    {
      pb::PutRequest put;
      put.set_key(key);
      put.set_value("0");
      pb::PutResponse r;
      grpc::ClientContext ctx;
      check(kv->Put(&ctx, put, &r), "KV.Put");
      last = r.header().revision();
    }
    time_each(state, [&] {
      const pb::TxnResponse r = guarded_put(last);
      if (!r.succeeded() || r.header().revision() <= last) {
        state.SkipWithError("grpc++: the guarded put did not succeed");
        return false;
      }
      last = r.header().revision();
      return true;
    });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void bm_hand_off_grpc(benchmark::State& state) {
  if (!etcd_ready(state)) return;
  grpc_lock holder(etcd_service().server->endpoint(0), "bench-hand-off-grpcpp");
  grpc_lock waiter(etcd_service().server->endpoint(0), "bench-hand-off-grpcpp");
  const auto token = [](std::int64_t t) { return static_cast<std::uint64_t>(t); };
  time_hand_offs(state, {[&] { return token(holder.lock()); }, [&] { holder.unlock(); },
                         [&] { return token(waiter.lock()); }, [&] { waiter.unlock(); },
                         [&](std::function<void()> on_parked) {
                           waiter.set_on_watching(std::move(on_parked));
                         }});
}

#else

constexpr const char* no_grpc =
    "built without gRPC C++ (libgrpc++-dev, protobuf-compiler-grpc: tools/install-deps perf)";
void bm_lock_unlock_grpc(benchmark::State& state) {
  state.SkipWithError(no_grpc);
}
void bm_txn_grpc(benchmark::State& state) {
  state.SkipWithError(no_grpc);
}
void bm_hand_off_grpc(benchmark::State& state) {
  state.SkipWithError(no_grpc);
}

#endif

void register_all() {
  struct scenario {
    const char* name;
    void (*run)(benchmark::State&);
    int samples;
  };
  const scenario scenarios[] = {
      {"etcd/lock_unlock/hwsync_etcd", bm_lock_unlock_hwsync, pair_samples()},
      {"etcd/lock_unlock/grpcpp_sync", bm_lock_unlock_grpc, pair_samples()},
      {"etcd/txn_round_trip/hwsync_etcd", bm_txn_hwsync, pair_samples()},
      {"etcd/txn_round_trip/grpcpp_sync", bm_txn_grpc, pair_samples()},
      {"etcd/range_round_trip/hwsync_etcd", bm_range_hwsync, pair_samples()},
      {"etcd/watch_notify/hwsync_etcd", bm_watch_notify_hwsync, pair_samples()},
      {"etcd/hand_off/hwsync_etcd", bm_hand_off_hwsync, hand_off_samples()},
      {"etcd/hand_off/grpcpp_sync", bm_hand_off_grpc, hand_off_samples()},
  };
  for (const scenario& s : scenarios)
    benchmark::RegisterBenchmark(s.name, s.run)->Iterations(s.samples);
  benchmark::RegisterBenchmark("etcd/hand_off_phases/hwsync_etcd", bm_hand_off_phases_hwsync)
      ->ArgName("poll_metrics")
      ->Arg(1)
      ->Arg(0)
      ->Iterations(hand_off_samples());
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv, [] { hwsync::bench::register_all(); });
}
