// bench/clocks_bench.cpp — the cost of reading each clock, hwsync's event
// clocks beside the system clocks they are built on, in one binary and one
// run.
//
// Scenarios (names "clocks/<scenario>/<clock id>[/threads:<n>]"):
//   now           one thread reads the clock in batches of 256;
//                 cycles_per_op is the median batch (less the timer's own
//                 cost) over 256, ns_per_op the same in nanoseconds. Clocks:
//                 clock_gettime(CLOCK_REALTIME) and (CLOCK_MONOTONIC),
//                 std::chrono::steady_clock and system_clock, hwsync's
//                 cycle_clock::now, lamport_clock::tick,
//                 hybrid_logical_clock::now and interval_clock::now on the
//                 system clock, the physical_source read they share
//                 (system_realtime().now_ns(): clock_gettime behind a
//                 virtual call) and ntp_adjtime, the system call
//                 interval_clock makes once per refresh. The issue's
//                 targets: cycle_clock <= 0.5x clock_gettime(MONOTONIC);
//                 hybrid_logical_clock <= 1.5x clock_gettime(REALTIME).
//   now_threads   1, 2, 4 and 8 threads read one shared clock (HLC and
//                 Lamport: one atomic word; clock_gettime: no shared
//                 state, the reference for perfect scaling) for a fixed
//                 wall time. calls/s of the team, cycles_per_op (wall
//                 ticks per call: the inverse of throughput) and
//                 cpu_ns_per_op (process CPU per call). Each thread checks
//                 that the logical clocks' timestamps increase, so a broken
//                 clock is an error, not a fast result.
//   vector_clock  one thread, batches of 256 operations on clocks of 5 and
//                 64 nodes (ids spread out, counters 1 to 7): increment,
//                 merge (of a concurrent clock with the same nodes),
//                 compare (with a later clock: a walk of every slot),
//                 encode, decode;
//                 cycles_per_op and ns_per_op as for now.
// The kernel's NTP state (synchronized or not, maxerror) is recorded in the
// context; perf/report_clocks.py prints it in the machine table.
#include <sys/timex.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "harness.hpp"
#include "hwsync/clocks.hpp"
#include "hwsync/cycle_clock.hpp"

namespace hwsync::bench {
namespace {

std::uint64_t timespec_bits(const timespec& ts) noexcept {
  return static_cast<std::uint64_t>(ts.tv_sec) ^ static_cast<std::uint64_t>(ts.tv_nsec);
}

// Each clock as a reader: read() returns something that depends on the
// reading, so no call can be dropped; `monotone` readers return a value that
// must strictly increase on one thread.
struct realtime_reader {
  static constexpr const char* id = "clock_gettime_realtime";
  static constexpr bool monotone = false;
  std::uint64_t read() noexcept {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return timespec_bits(ts);
  }
};
struct monotonic_reader {
  static constexpr const char* id = "clock_gettime_monotonic";
  static constexpr bool monotone = false;
  std::uint64_t read() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return timespec_bits(ts);
  }
};
struct steady_reader {
  static constexpr const char* id = "std_steady_clock";
  static constexpr bool monotone = false;
  std::uint64_t read() noexcept {
    return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
};
struct system_reader {
  static constexpr const char* id = "std_system_clock";
  static constexpr bool monotone = false;
  std::uint64_t read() noexcept {
    return static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  }
};
struct cycle_reader {
  static constexpr const char* id = "hwsync_cycle_clock";
  static constexpr bool monotone = false;
  std::uint64_t read() noexcept { return cycle_clock::now(); }
};
struct source_reader {
  static constexpr const char* id = "hwsync_physical_source";
  static constexpr bool monotone = false;
  physical_source& s = system_realtime();
  std::uint64_t read() noexcept { return static_cast<std::uint64_t>(s.now_ns()); }
};
struct ntp_adjtime_reader {
  static constexpr const char* id = "ntp_adjtime";
  static constexpr bool monotone = false;
  std::uint64_t read() noexcept {
    timex tx{};
    return static_cast<std::uint64_t>(ntp_adjtime(&tx)) ^ static_cast<std::uint64_t>(tx.maxerror);
  }
};

lamport_clock& shared_lamport() {
  static lamport_clock c(1);
  return c;
}
hybrid_logical_clock& shared_hlc() {
  static hybrid_logical_clock c;
  return c;
}
interval_clock& shared_interval() {
  static interval_clock c;
  return c;
}

struct lamport_reader {
  static constexpr const char* id = "hwsync_lamport_clock";
  static constexpr bool monotone = true;
  std::uint64_t read() noexcept { return shared_lamport().tick().counter; }
};
struct hlc_reader {
  static constexpr const char* id = "hwsync_hybrid_logical_clock";
  static constexpr bool monotone = true;
  std::uint64_t read() noexcept { return shared_hlc().now().raw(); }
};
struct interval_reader {
  static constexpr const char* id = "hwsync_interval_clock";
  static constexpr bool monotone = false;
  std::uint64_t read() noexcept {
    const time_interval iv = shared_interval().now();
    return static_cast<std::uint64_t>(iv.earliest_ns ^ iv.latest_ns);
  }
};

template <class R>
void bm_now(benchmark::State& state) {
  constexpr int batch = 256;
  R reader;
  batch_timer timer;
  std::uint64_t sink = 0;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) sink += reader.read();
    timer.stop();
  }
  benchmark::DoNotOptimize(sink);
  report_batches(state, timer, batch);
  state.counters["ns_per_op"] =
      ticks_to_ns(static_cast<double>(timer.batches().percentile(50))) / static_cast<double>(batch);
}

template <class R>
void bm_now_threads(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::vector<padded<std::uint64_t>> calls(static_cast<std::size_t>(threads));
    std::vector<padded<std::uint64_t>> backwards(static_cast<std::size_t>(threads));
    const auto r = run_team(threads, opts().scenario_time(), [&](int i, const auto& stop) {
      R reader;
      std::uint64_t n = 0, bad = 0, sink = 0;
      [[maybe_unused]] std::uint64_t prev = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int k = 0; k < 64; ++k) {
          const std::uint64_t v = reader.read();
          if constexpr (R::monotone) {
            bad += v <= prev ? 1 : 0;
            prev = v;
          }
          sink += v;
        }
        n += 64;
      }
      benchmark::DoNotOptimize(sink);
      calls[static_cast<std::size_t>(i)].value = n;
      backwards[static_cast<std::size_t>(i)].value = bad;
    });
    std::uint64_t total = 0, bad = 0;
    for (int i = 0; i < threads; ++i) {
      total += calls[static_cast<std::size_t>(i)].value;
      bad += backwards[static_cast<std::size_t>(i)].value;
    }
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(total));
    const double n = total ? static_cast<double>(total) : 1.0;
    state.counters["calls"] = static_cast<double>(total);
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
    state.counters["cpu_ns_per_op"] = r.cpu_seconds * 1e9 / n;
    if (bad != 0) {
      const std::string msg = std::to_string(bad) + " timestamps did not increase on their thread";
      state.SkipWithError(msg.c_str());
    }
  }
}

std::string name(const char* scenario, const char* id) {
  return std::string("clocks/") + scenario + "/" + id;
}

// vector_clock operations on clocks of `nodes` slots (a: every node, b: the
// same nodes with different counters, so the pair is concurrent; compare
// takes a and merge(a, b), which it must walk to the end to call before).
enum class vector_op { increment, merge, compare, encode, decode };

template <vector_op Op>
void bm_vector(benchmark::State& state) {
  constexpr int batch = 256;
  const auto nodes = static_cast<node_id>(state.range(0));
  vector_clock a, b;
  for (node_id n = 0; n < nodes; ++n) {
    for (node_id k = 0; k <= n % 7; ++k) a.increment(n * 3);
    for (node_id k = 0; k <= (n + 3) % 7; ++k) b.increment(n * 3);
  }
  vector_clock ab = a;
  ab.merge(b);  // a is before ab: compare walks every slot
  const std::vector<std::uint8_t> bytes = a.encode();
  batch_timer timer;
  std::uint64_t sink = 0;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) {
      if constexpr (Op == vector_op::increment) {
        sink += a.increment(static_cast<node_id>(i) % nodes * 3);
      } else if constexpr (Op == vector_op::merge) {
        a.merge(b);
        sink += a.size();
      } else if constexpr (Op == vector_op::compare) {
        sink += static_cast<std::uint64_t>(compare(a, ab));
      } else if constexpr (Op == vector_op::encode) {
        sink += a.encode().size();
      } else {
        sink += vector_clock::decode(bytes).size();
      }
    }
    timer.stop();
  }
  benchmark::DoNotOptimize(sink);
  report_batches(state, timer, batch);
  state.counters["ns_per_op"] =
      ticks_to_ns(static_cast<double>(timer.batches().percentile(50))) / static_cast<double>(batch);
  state.counters["encoded_bytes"] = static_cast<double>(bytes.size());
}

void register_vector() {
  const std::pair<const char*, void (*)(benchmark::State&)> ops[] = {
      {"increment", bm_vector<vector_op::increment>},
      {"merge", bm_vector<vector_op::merge>},
      {"compare", bm_vector<vector_op::compare>},
      {"encode", bm_vector<vector_op::encode>},
      {"decode", bm_vector<vector_op::decode>}};
  for (const auto& [op, fn] : ops) {
    benchmark::RegisterBenchmark(name("vector_clock", op).c_str(), fn)
        ->ArgName("nodes")
        ->Arg(5)
        ->Arg(64);
  }
}

void add_clock_context() {
  const clock_error_estimate e = system_realtime().error_estimate();
  benchmark::AddCustomContext("clocks_ntp_synchronized", e.synchronized ? "true" : "false");
  benchmark::AddCustomContext(
      "clocks_ntp_maxerror_us",
      std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(e.max_error).count()));
  // The first calls decide cycle_clock's mode and take the interval clock's
  // first sample, outside any timed loop.
  (void)shared_hlc().now();
  (void)shared_interval().now();
}

template <class... R>
struct reader_list {};

template <class... R>
void register_now(reader_list<R...>) {
  (benchmark::RegisterBenchmark(name("now", R::id).c_str(), bm_now<R>), ...);
}

template <class... R>
void register_threads(reader_list<R...>) {
  auto self_timed = [](benchmark::internal::Benchmark* b) {
    for (int t : {1, 2, 4, 8}) b->Arg(t);
    b->ArgName("threads")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  (self_timed(benchmark::RegisterBenchmark(name("now_threads", R::id).c_str(), bm_now_threads<R>)),
   ...);
}

void register_all() {
  add_clock_context();
  register_now(reader_list<realtime_reader, monotonic_reader, steady_reader, system_reader,
                           cycle_reader, source_reader, lamport_reader, hlc_reader, interval_reader,
                           ntp_adjtime_reader>{});
  register_threads(reader_list<hlc_reader, lamport_reader, realtime_reader>{});
  register_vector();
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv, [] { hwsync::bench::register_all(); });
}
