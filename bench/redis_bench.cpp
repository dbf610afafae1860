// bench/redis_bench.cpp — the redis:// lock service (hwsync/net/lock_service.hpp)
// beside hiredis and redis-benchmark, in one binary and one run. The file://
// scenarios are in bench/net_bench.cpp.
//
// Scenarios (names "redis/<scenario>/<id>"):
//   round_trip   one thread, one connection, lock()+unlock():
//                hwsync_redis (distributed_lock on redis://: two EVALSHA
//                round trips, acquire and release) against hiredis_blocking
//                (hiredis's blocking client sending the same two EVALSHA
//                with the same scripts and keys). Latency percentiles of
//                the pair (record_latency). Target: hwsync_redis p50 <=
//                1.0x hiredis.
//   pipelined    hwsync_redis: 16 threads, each with its own lock name, on
//                one lock_service (one connection, so their commands are
//                pipelined), lock()+unlock() for a fixed wall time:
//                lock ops/s (an acquire or a release is one, so 2 per
//                pair; each is one EVALSHA). Against redis_benchmark_set_nx:
//                redis-benchmark with one connection and 16 commands in
//                flight (-c 1 -P 16) sending SET key v NX on random keys:
//                its commands/s, the ceiling of one pipelined connection to
//                this server. Target: >= 0.7x.
//                hwsync_redis_async: the same 16 locks and pairs from ONE
//                thread: 16 coroutines, each co_await async_lock() /
//                async_unlock() of its own name, on one lock_service.
//                perf/report_redis.py holds the better of the two hwsync
//                ways against the target and says which.
//                redis_benchmark_evalsha: redis-benchmark -c 1 -P 16 sending
//                the acquire script (EVALSHA) on random keys: the same
//                pipelined client when the server runs Lua per command.
//                Lock ops/s against the peer's commands/s (one SET NX, an
//                acquire never released) is the same ratio as pairs/s
//                against half of it. Every pipelined scenario also reports
//                the server's main-thread CPU per lock op (INFO cpu).
//   floor        the server floors of lock designs: one lean hiredis client
//                (below), 16 lock ops in flight, so that only the commands
//                differ: how close any client of each design could come to
//                the pipelined target (docs/distributed-locks.md, "Server
//                floors").
// The Redis scenarios run against a redis-server this binary starts on
// 127.0.0.1 with a free port and a temporary directory (tests/support's
// fixture) and stops at exit; without /usr/bin/redis-server they report an
// error instead of a number. Every scenario checks what it got back (a
// token that did not increase, a reply that is not the expected one is an
// error, not a fast result).
#include <hiredis/hiredis.h>

#include <atomic>
#include <cstdio>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "hwsync/net/lock_service.hpp"
#include "redis/scripts.hpp"
#include "support/redis_server.hpp"

namespace hwsync::bench {
namespace {

using namespace std::chrono_literals;

constexpr int pipelined_threads = 16;

// The redis-server every Redis scenario talks to, started on first use.
// A failure to start is remembered and reported by each scenario.
struct redis_fixture {
  std::unique_ptr<test::redis_server> server;
  std::string error;
};

redis_fixture& redis() {
  static redis_fixture f = [] {
    redis_fixture r;
    try {
      r.server = std::make_unique<test::redis_server>();
    } catch (const std::exception& e) {
      r.error = std::string("redis-server did not start: ") + e.what();
    }
    return r;
  }();
  return f;
}

// Times one pair per GB iteration into a histogram.
template <class Pair>
void time_pairs(benchmark::State& state, Pair&& pair) {
  cycle_histogram hist;
  for (auto _ : state) {
    const cycle_clock::ticks t0 = cycle_clock::now();
    if (!pair()) return;  // the scenario said why (SkipWithError)
    hist.record(cycle_clock::now() - t0);
  }
  state.counters["cycles_per_op"] = hist.mean();
  record_latency(state, hist);
}

// --- round_trip --------------------------------------------------------------

bool redis_ready(benchmark::State& state) {
  if (redis().server) return true;
  state.SkipWithError(redis().error.c_str());
  return false;
}

void bm_redis_hwsync(benchmark::State& state) {
  if (!redis_ready(state)) return;
  const net::lock_service service(redis().server->uri());
  net::distributed_lock lock(service, "bench-round-trip");
  net::fencing_token last{};
  time_pairs(state, [&] {
    lock.lock();
    const net::fencing_token t = lock.token();
    lock.unlock();
    if (!(last < t)) {
      state.SkipWithError("redis:// handed out a token that did not increase");
      return false;
    }
    last = t;
    return true;
  });
}

using reply_ptr = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;

reply_ptr command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return reply_ptr(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()),
                                                             argv.data(), lens.data())),
                   &freeReplyObject);
}

std::unique_ptr<redisContext, decltype(&redisFree)> connect_to_fixture() {
  return {redisConnect("127.0.0.1", redis().server->port()), &redisFree};
}

// The server's main-thread CPU seconds so far (INFO cpu), or -1.
double server_cpu_seconds(redisContext* c) {
  const reply_ptr r = command(c, {"INFO", "cpu"});
  if (!r || r->type != REDIS_REPLY_STRING) return -1;
  const std::string text(r->str, r->len);
  double total = 0;
  for (const char* field : {"used_cpu_sys_main_thread:", "used_cpu_user_main_thread:"}) {
    const auto at = text.find(field);
    if (at == std::string::npos) return -1;
    total += std::strtod(text.c_str() + at + std::strlen(field), nullptr);
  }
  return total;
}

// The server's main-thread CPU time over a scenario, per lock op (or
// command): what the server paid, whoever the client was.
class server_cpu_meter {
 public:
  server_cpu_meter() : c_(connect_to_fixture()) {
    if (c_ && c_->err == 0) start_ = server_cpu_seconds(c_.get());
  }
  void report(benchmark::State& state, const char* counter, double ops) {
    const double end = c_ && c_->err == 0 ? server_cpu_seconds(c_.get()) : -1;
    if (start_ >= 0 && end >= start_ && ops > 0)
      state.counters[counter] = 1e6 * (end - start_) / ops;
  }

 private:
  std::unique_ptr<redisContext, decltype(&redisFree)> c_;
  double start_ = -1;
};

void bm_redis_hiredis(benchmark::State& state) {
  if (!redis_ready(state)) return;
  std::unique_ptr<redisContext, decltype(&redisFree)> c(
      redisConnect("127.0.0.1", redis().server->port()), &redisFree);
  if (!c || c->err != 0) {
    state.SkipWithError("hiredis could not connect");
    return;
  }
  const auto load = [&](std::string_view body) -> std::string {
    const reply_ptr r = command(c.get(), {"SCRIPT", "LOAD", std::string(body)});
    return r && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : std::string();
  };
  const std::string acquire = load(net::redis::scripts::acquire);
  const std::string release = load(net::redis::scripts::release);
  if (acquire.empty() || release.empty()) {
    state.SkipWithError("SCRIPT LOAD failed");
    return;
  }
  // The keys the backend uses for a lock named "bench-hiredis" (scripts.hpp).
  const std::string key = "hwsync:lock:{bench-hiredis}";
  const std::string token_key = key + ":token";
  const std::string channel = key + ":released";
  const std::string owner = "0123456789abcdef0123456789abcdef";
  long long last = 0;
  time_pairs(state, [&] {
    const reply_ptr a = command(c.get(), {"EVALSHA", acquire, "2", key, token_key, owner, "10000"});
    const reply_ptr r = command(c.get(), {"EVALSHA", release, "1", key, owner, channel});
    const bool taken = a && a->type == REDIS_REPLY_ARRAY && a->elements == 2 &&
                       a->element[0]->integer == 1 && a->element[1]->integer > last;
    if (!taken || !r || r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
      state.SkipWithError("hiredis: unexpected reply to the acquire or release script");
      return false;
    }
    last = a->element[1]->integer;
    return true;
  });
}

// --- pipelined ---------------------------------------------------------------

void bm_pipelined_hwsync(benchmark::State& state) {
  if (!redis_ready(state)) return;
  const net::lock_service service(redis().server->uri());
  for (auto _ : state) {
    server_cpu_meter cpu;
    std::vector<padded<std::uint64_t>> pairs(pipelined_threads);
    std::atomic<bool> failed{false};
    const auto r =
        run_team(pipelined_threads, opts().scenario_time(), [&](int i, const auto& stop) {
          net::distributed_lock lock(service, "bench-pipelined-" + std::to_string(i));
          std::uint64_t n = 0;
          net::fencing_token last{};
          while (!stop.load(std::memory_order_relaxed)) {
            lock.lock();
            const net::fencing_token t = lock.token();
            lock.unlock();
            if (!(last < t)) failed.store(true, std::memory_order_relaxed);
            last = t;
            ++n;
          }
          pairs[static_cast<std::size_t>(i)].value = n;
        });
    if (failed.load()) {
      state.SkipWithError("redis:// handed out a token that did not increase");
      return;
    }
    std::uint64_t total = 0;
    for (const auto& p : pairs) total += p.value;
    const double commands = 2.0 * static_cast<double>(total);
    state.SetIterationTime(r.wall_seconds);
    state.counters["lock_ops_per_second"] = commands / r.wall_seconds;
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / commands;
    cpu.report(state, "server_us_per_lock_op", commands);
  }
}

// One thread (the caller's, then the ring's loop thread the coroutines
// resume on) keeps 16 acquisitions in flight: 16 coroutines, each
// async_lock()/async_unlock() of its own name through one lock_service.
void bm_pipelined_hwsync_async(benchmark::State& state) {
  if (!redis_ready(state)) return;
  const net::lock_service service(redis().server->uri());
  std::vector<std::unique_ptr<net::distributed_lock>> locks;
  for (int i = 0; i < pipelined_threads; ++i) {
    locks.push_back(std::make_unique<net::distributed_lock>(
        service, "bench-pipelined-async-" + std::to_string(i)));
  }
  for (auto _ : state) {
    server_cpu_meter cpu;
    std::vector<padded<std::uint64_t>> pairs(pipelined_threads);
    std::atomic<bool> stop{false};
    std::atomic<bool> failed{false};
    std::latch finished(pipelined_threads);
    std::string failure;  // the first worker's exception, written before its count_down
    auto worker = [&](int i) -> net::task<void> {
      net::distributed_lock& lock = *locks[static_cast<std::size_t>(i)];
      std::uint64_t n = 0;
      net::fencing_token last{};
      try {
        while (!stop.load(std::memory_order_relaxed)) {
          const net::fencing_token t = co_await lock.async_lock();
          co_await lock.async_unlock();
          if (!(last < t) && !failed.exchange(true)) {
            failure = "redis:// handed out a token that did not increase";
          }
          last = t;
          ++n;
        }
      } catch (const std::exception& e) {
        if (!failed.exchange(true)) failure = e.what();
      }
      pairs[static_cast<std::size_t>(i)].value = n;
      finished.count_down();
    };
    const auto wall0 = std::chrono::steady_clock::now();
    const auto t0 = cycle_clock::start();
    for (int i = 0; i < pipelined_threads; ++i) net::ring::detach(worker(i));
    std::this_thread::sleep_for(opts().scenario_time());
    stop.store(true, std::memory_order_relaxed);
    finished.wait();
    const auto ticks = cycle_clock::stop() - t0;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    if (failed.load()) {
      state.SkipWithError(failure.c_str());
      return;
    }
    std::uint64_t total = 0;
    for (const auto& p : pairs) total += p.value;
    const double commands = 2.0 * static_cast<double>(total);
    state.SetIterationTime(seconds);
    state.counters["lock_ops_per_second"] = commands / seconds;
    state.counters["cycles_per_op"] = static_cast<double>(ticks) / commands;
    cpu.report(state, "server_us_per_lock_op", commands);
  }
}

// redis-benchmark's rps for `command` with -c 1 -P 16, from its CSV output.
std::optional<double> redis_benchmark_rps(int port, int requests, const std::string& command,
                                          std::string& error) {
  const std::string cmd = "redis-benchmark -h 127.0.0.1 -p " + std::to_string(port) +
                          " -c 1 -P 16 -r 1000000 -n " + std::to_string(requests) + " --csv " +
                          command + " 2>&1";
  std::unique_ptr<FILE, decltype(&pclose)> p(popen(cmd.c_str(), "r"), &pclose);
  if (!p) {
    error = "could not run redis-benchmark";
    return std::nullopt;
  }
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p.get()) != nullptr) out += buf;
  // "test","rps",...\n"SET bench:__rand_int__ v NX","123456.78",...
  const auto line = out.find("\n\"");
  if (line != std::string::npos) {
    const auto comma = out.find("\",\"", line + 2);
    if (comma != std::string::npos) {
      try {
        return std::stod(out.substr(comma + 3));
      } catch (const std::exception&) {
      }
    }
  }
  error = "redis-benchmark printed no rate: " + out.substr(0, 200);
  return std::nullopt;
}

void bm_pipelined_redis_benchmark(benchmark::State& state) {
  if (!redis_ready(state)) return;
  const int requests = opts().quick ? 200'000 : 1'000'000;
  for (auto _ : state) {
    std::string error;
    server_cpu_meter cpu;
    const std::optional<double> rps =
        redis_benchmark_rps(redis().server->port(), requests, "SET bench:__rand_int__ v NX", error);
    if (!rps || *rps <= 0) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.SetIterationTime(requests / *rps);
    state.counters["lock_ops_per_second"] = *rps;
    cpu.report(state, "server_us_per_lock_op", requests);
  }
}

// The same pipelined client sending the acquire script instead (EVALSHA
// on random keys, each a fresh lock: always taken): what one connection
// gets through this server when every command is the lock's script, not a
// plain SET. Not the target's ceiling (issue 8 names SET NX); beside it, it
// says how much of the gap is the server running Lua.
void bm_pipelined_redis_benchmark_evalsha(benchmark::State& state) {
  if (!redis_ready(state)) return;
  const int requests = opts().quick ? 200'000 : 1'000'000;
  std::unique_ptr<redisContext, decltype(&redisFree)> c(
      redisConnect("127.0.0.1", redis().server->port()), &redisFree);
  if (!c || c->err != 0) {
    state.SkipWithError("hiredis could not connect to load the script");
    return;
  }
  const reply_ptr loaded =
      command(c.get(), {"SCRIPT", "LOAD", std::string(net::redis::scripts::acquire)});
  if (!loaded || loaded->type != REDIS_REPLY_STRING) {
    state.SkipWithError("SCRIPT LOAD of the acquire script failed");
    return;
  }
  const std::string sha(loaded->str, loaded->len);
  for (auto _ : state) {
    std::string error;
    server_cpu_meter cpu;
    const std::optional<double> rps = redis_benchmark_rps(
        redis().server->port(), requests,
        "EVALSHA " + sha + " 2 bench:evalsha:__rand_int__ bench:evalsha:token owner 10000", error);
    if (!rps || *rps <= 0) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.SetIterationTime(requests / *rps);
    state.counters["lock_ops_per_second"] = *rps;
    cpu.report(state, "server_us_per_lock_op", requests);
  }
}

// --- server floors ------------------------------------------------------------
//
// What the server itself allows a pipelined lock to reach, design by
// design: one hiredis connection sending groups of commands 16 at a time,
// as redis-benchmark -c 1 -P 16 does (append 16 groups, one write, read
// every reply, repeat), so every design meets the same client and only the
// commands differ. The commands are formatted once per lock name, not per
// group, so the client does little more than redis-benchmark does.
//
// Counting: "lock ops" count an acquire and a release as one each, whatever
// number of commands it is sent as (MULTI + SET + INCR + EXEC is one
// acquire), so that a lock+unlock pair is 2, as it is in the pipelined
// scenarios (2 commands per pair) and as one SET NX is 1 to redis-benchmark.
// Besides lock ops/s, each reports the server's main-thread CPU time per
// lock op (INFO cpu before and after): what the server pays, which bounds
// the rate of one connection once the server is the bottleneck, and which
// the shared machine's load disturbs far less than the rate.

constexpr int floor_depth = 16;  // groups in flight, as -P 16

// One group: its commands as RESP bytes, how many commands and lock ops it
// is, and whether its replies are the ones a working design gets (so that
// a broken group cannot pose as a fast one).
struct floor_group {
  std::string bytes;
  int commands = 1;
  int lock_ops = 1;
  bool (*replies_ok)(const std::vector<reply_ptr>&) = nullptr;
};

std::string resp(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string_view a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

std::string load_script(redisContext* c, std::string_view body) {
  const reply_ptr r = command(c, {"SCRIPT", "LOAD", std::string(body)});
  return r && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : std::string();
}

// Sends the group `group_for(slot, n)` (slot 0..15, n counting groups) 16
// at a time for the scenario's wall time, in whole rounds of
// `batches_per_round` batches.
template <class GroupFor>
void pipelined_floor(benchmark::State& state, GroupFor&& group_for, int batches_per_round = 1) {
  const auto c = connect_to_fixture();
  if (!c || c->err != 0) {
    state.SkipWithError("hiredis could not connect");
    return;
  }
  std::uint64_t n = 0;
  for (auto _ : state) {
    const double cpu0 = server_cpu_seconds(c.get());
    const auto wall0 = std::chrono::steady_clock::now();
    const auto stop_at = wall0 + opts().scenario_time();
    std::uint64_t ops = 0;
    std::vector<const floor_group*> batch(floor_depth);
    std::vector<reply_ptr> replies;
    for (std::uint64_t batches = 0; batches % static_cast<std::uint64_t>(batches_per_round) != 0 ||
                                    std::chrono::steady_clock::now() < stop_at;
         ++batches) {
      for (int slot = 0; slot < floor_depth; ++slot) {
        const floor_group& g = group_for(slot, n++);
        batch[static_cast<std::size_t>(slot)] = &g;
        redisAppendFormattedCommand(c.get(), g.bytes.data(), g.bytes.size());
      }
      for (const floor_group* g : batch) {
        replies.clear();
        for (int i = 0; i < g->commands; ++i) {
          void* r = nullptr;
          if (redisGetReply(c.get(), &r) != REDIS_OK) {
            state.SkipWithError("hiredis: the connection failed during a floor scenario");
            return;
          }
          replies.emplace_back(static_cast<redisReply*>(r), &freeReplyObject);
        }
        if (!g->replies_ok(replies)) {
          state.SkipWithError("a floor group got replies its design does not expect");
          return;
        }
        ops += static_cast<std::uint64_t>(g->lock_ops);
      }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    const double cpu1 = server_cpu_seconds(c.get());
    state.SetIterationTime(seconds);
    state.counters["lock_ops_per_second"] = static_cast<double>(ops) / seconds;
    if (cpu0 >= 0 && cpu1 >= cpu0) {
      state.counters["server_us_per_lock_op"] = 1e6 * (cpu1 - cpu0) / static_cast<double>(ops);
    }
  }
}

// The peer's command through this loop: SET key v NX on one of a million
// random keys (redis-benchmark -r 1000000 writes 12 digits into the key).
void bm_floor_set_nx(benchmark::State& state) {
  if (!redis_ready(state)) return;
  floor_group g{resp({"SET", "floor:setnx:000000000000", "v", "NX"}), 1, 1,
                [](const std::vector<reply_ptr>& r) {
                  return r[0] &&
                         (r[0]->type == REDIS_REPLY_STATUS || r[0]->type == REDIS_REPLY_NIL);
                }};
  const std::size_t digits = g.bytes.find("000000000000");
  std::uint64_t x = 88172645463325252ULL;  // xorshift64
  pipelined_floor(state, [&](int, std::uint64_t) -> const floor_group& {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::uint64_t v = x % 1'000'000;
    for (std::size_t i = digits + 12; i-- > digits; v /= 10)
      g.bytes[i] = static_cast<char>('0' + v % 10);
    return g;
  });
}

void bm_floor_evalsha_return_1(benchmark::State& state) {
  if (!redis_ready(state)) return;
  const std::string sha = load_script(connect_to_fixture().get(), "return 1");
  if (sha.empty()) {
    state.SkipWithError("SCRIPT LOAD of 'return 1' failed");
    return;
  }
  const floor_group g{resp({"EVALSHA", sha, "0"}), 1, 1, [](const std::vector<reply_ptr>& r) {
                        return r[0] && r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer == 1;
                      }};
  pipelined_floor(state, [&](int, std::uint64_t) -> const floor_group& { return g; });
}

// Lock+unlock pairs on 16 lock names, one per slot, as the 16 coroutines
// of hwsync_redis_async use them: a batch of the 16 acquires, then a batch
// of the 16 releases (a holder cannot send its release before its acquire
// has answered), so 16 lock ops are in flight, as 16 commands are with
// -P 16. `design(key)` gives one name's {acquire, release} groups.
struct pair_groups {
  floor_group acquire;
  floor_group release;
};

template <class Design>
void pipelined_pairs(benchmark::State& state, Design&& design) {
  if (!redis_ready(state)) return;
  std::vector<pair_groups> locks;
  for (int slot = 0; slot < floor_depth; ++slot) {
    locks.push_back(design("hwsync:lock:{floor-" + std::to_string(slot) + "}"));
  }
  pipelined_floor(
      state,
      [&](int slot, std::uint64_t n) -> const floor_group& {
        const pair_groups& l = locks[static_cast<std::size_t>(slot)];
        return (n / floor_depth) % 2 == 0 ? l.acquire : l.release;
      },
      2);  // whole pairs: every lock is free again when the scenario ends
}

constexpr std::string_view floor_owner = "0123456789abcdef0123456789abcdef";

bool released(const std::vector<reply_ptr>& r) {
  return r[0] && r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer == 1;
}

// The cheapest pair any SET NX lock could send: SET NX PX, then a plain DEL
// (which would delete a successor's lock after a lost lease: not a design,
// the bound on every design that takes the lock with SET NX).
void bm_floor_pair_set_nx_del(benchmark::State& state) {
  pipelined_pairs(state, [](const std::string& key) {
    return pair_groups{
        {resp({"SET", key, floor_owner, "NX", "PX", "10000"}), 1, 1,
         [](const std::vector<reply_ptr>& r) { return r[0] && r[0]->type == REDIS_REPLY_STATUS; }},
        {resp({"DEL", key}), 1, 1, released}};
  });
}

struct lock_shas {
  std::string acquire;
  std::string release;
};

std::optional<lock_shas> load_lock_scripts(benchmark::State& state) {
  if (!redis_ready(state)) return std::nullopt;
  const auto c = connect_to_fixture();
  lock_shas s;
  if (c && c->err == 0) {
    s.acquire = load_script(c.get(), net::redis::scripts::acquire);
    s.release = load_script(c.get(), net::redis::scripts::release);
  }
  if (s.acquire.empty() || s.release.empty()) {
    state.SkipWithError("SCRIPT LOAD of the lock scripts failed");
    return std::nullopt;
  }
  return s;
}

floor_group release_script_group(const lock_shas& shas, const std::string& key) {
  return {resp({"EVALSHA", shas.release, "1", key, floor_owner, key + ":released"}), 1, 1,
          released};
}

// The design in use: EVALSHA acquire (SET NX PX + INCR in Lua) and EVALSHA
// release (compare-and-delete + PUBLISH in Lua).
void bm_floor_pair_scripts(benchmark::State& state) {
  const auto shas = load_lock_scripts(state);
  if (!shas) return;
  pipelined_pairs(state, [&](const std::string& key) {
    return pair_groups{
        {resp({"EVALSHA", shas->acquire, "2", key, key + ":token", floor_owner, "10000"}), 1, 1,
         [](const std::vector<reply_ptr>& r) {
           const redisReply* a = r[0].get();
           return a != nullptr && a->type == REDIS_REPLY_ARRAY && a->elements == 2 &&
                  a->element[0]->integer == 1 && a->element[1]->integer > 0;
         }},
        release_script_group(*shas, key)};
  });
}

// The acquire as a transaction instead of a script: SET NX PX GET (the old
// value tells taken, busy, or already ours) and INCR of the token counter in
// one MULTI/EXEC, so the lock and its token are still one atomic step; the
// release stays the compare-and-delete script (Redis 7.0 has no conditional
// delete without Lua).
void bm_floor_pair_multi_script(benchmark::State& state) {
  const auto shas = load_lock_scripts(state);
  if (!shas) return;
  pipelined_pairs(state, [&](const std::string& key) {
    return pair_groups{
        {resp({"MULTI"}) + resp({"SET", key, floor_owner, "NX", "PX", "10000", "GET"}) +
             resp({"INCR", key + ":token"}) + resp({"PTTL", key}) + resp({"EXEC"}),
         5, 1,
         [](const std::vector<reply_ptr>& r) {
           const redisReply* exec = r[4].get();
           return exec != nullptr && exec->type == REDIS_REPLY_ARRAY && exec->elements == 3 &&
                  exec->element[0]->type == REDIS_REPLY_NIL && exec->element[1]->integer > 0;
         }},
        release_script_group(*shas, key)};
  });
}

// The acquire script with its fast path cut to two calls: SET NX PX, and
// INCR when it took the lock (the script now in scripts.hpp reads the key
// first: three calls, and a table reply). The same-owner retake moves to
// the busy path, where it costs nothing when the lock is free.
constexpr std::string_view lean_acquire = R"lua(
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return redis.call('INCR', KEYS[2])
end
return {0, redis.call('PTTL', KEYS[1])}
)lua";

void bm_floor_pair_lean_scripts(benchmark::State& state) {
  const auto shas = load_lock_scripts(state);
  if (!shas) return;
  const std::string lean = load_script(connect_to_fixture().get(), lean_acquire);
  if (lean.empty()) {
    state.SkipWithError("SCRIPT LOAD of the lean acquire script failed");
    return;
  }
  pipelined_pairs(state, [&](const std::string& key) {
    return pair_groups{
        {resp({"EVALSHA", lean, "2", key, key + ":token", floor_owner, "10000"}), 1, 1,
         [](const std::vector<reply_ptr>& r) {
           return r[0] && r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer > 0;
         }},
        release_script_group(*shas, key)};
  });
}

void register_all() {
  benchmark::RegisterBenchmark("redis/round_trip/hwsync_redis", bm_redis_hwsync);
  benchmark::RegisterBenchmark("redis/round_trip/hiredis_blocking", bm_redis_hiredis);
  benchmark::RegisterBenchmark("redis/pipelined/hwsync_redis", bm_pipelined_hwsync)
      ->UseManualTime()
      ->Iterations(1);
  benchmark::RegisterBenchmark("redis/pipelined/hwsync_redis_async", bm_pipelined_hwsync_async)
      ->UseManualTime()
      ->Iterations(1);
  benchmark::RegisterBenchmark("redis/pipelined/redis_benchmark_set_nx",
                               bm_pipelined_redis_benchmark)
      ->UseManualTime()
      ->Iterations(1);
  benchmark::RegisterBenchmark("redis/pipelined/redis_benchmark_evalsha",
                               bm_pipelined_redis_benchmark_evalsha)
      ->UseManualTime()
      ->Iterations(1);
  for (const auto& [id, fn] : {std::pair{"set_nx", &bm_floor_set_nx},
                               std::pair{"evalsha_return_1", &bm_floor_evalsha_return_1},
                               std::pair{"pair_set_nx_del", &bm_floor_pair_set_nx_del},
                               std::pair{"pair_scripts", &bm_floor_pair_scripts},
                               std::pair{"pair_multi_script", &bm_floor_pair_multi_script},
                               std::pair{"pair_lean_scripts", &bm_floor_pair_lean_scripts}}) {
    benchmark::RegisterBenchmark((std::string("redis/floor/") + id).c_str(), fn)
        ->UseManualTime()
        ->Iterations(1);
  }
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv, [] { hwsync::bench::register_all(); });
}
