// bench/shared_mutex_bench.cpp — hwsync::shared_mutex (each policy) and
// hwsync::biased_shared_mutex beside
// std::shared_mutex, glibc's pthread_rwlock (default and
// PREFER_WRITER_NONRECURSIVE_NP), and oneTBB's spin_rw_mutex,
// queuing_rw_mutex and rw_mutex, all in one binary and one run.
//
// Scenarios (names "shared_mutex/<scenario>/<lock id>/<arg>:<n>/..."):
//   uncontended_shared     one thread, lock_shared+unlock_shared in batches of
//   uncontended_exclusive  256 (or lock+unlock): the fast paths. cycles_per_op
//                          is the median batch (timer cost removed) over 256.
//   mixed                  read_pct (100, 99, 90, 50) of the operations
//                          shared, the rest exclusive, on 1 to 32 threads
//                          with nothing outside the lock: the most
//                          contended case. A reader reads 4 counters on 4
//                          cache lines (and checks they agree: a writer
//                          changes all 4), a writer increments them.
//                          items_per_second is the team's operations; the
//                          counters are checked afterwards.
//   writer_latency         `readers` threads (2, 4, 8, 16) read continuously
//                          (about 1 µs of work under the shared lock, nothing
//                          outside it: the readers overlap), while one writer
//                          takes the lock every 200 µs or so. The writer's
//                          wait — cycle_clock from just before lock() to just
//                          after it returns — goes into a histogram:
//                          p50/p90/p99/p999/max in ns. A wait still in
//                          progress when the run's time is up is recorded
//                          when it ends (the readers stop then), so a starved
//                          writer shows as one huge sample, not as none.
// Every multithreaded scenario runs its own threads (harness.hpp, run_team)
// for a fixed wall time; `--quick` shortens it.
#include <shared_mutex>

#include "harness.hpp"
#include "hwsync/shared_mutex.hpp"

namespace hwsync::bench {

template <>
struct lock_traits<hwsync::shared_mutex<rw_policy::phase_fair>> {
  static constexpr const char* id = "hwsync_shared_mutex_pf";
};
template <>
struct lock_traits<hwsync::shared_mutex<rw_policy::writer_preferred>> {
  static constexpr const char* id = "hwsync_shared_mutex_wp";
};
template <>
struct lock_traits<hwsync::shared_mutex<rw_policy::reader_preferred>> {
  static constexpr const char* id = "hwsync_shared_mutex_rp";
};
// phase_fair with no grace window (Brandenburg and Anderson's rule exactly):
// what the grace window buys, measured beside it.
template <>
struct lock_traits<hwsync::shared_mutex<rw_policy::strict_phase_fair>> {
  static constexpr const char* id = "hwsync_shared_mutex_pf_strict";
};

template <>
struct lock_traits<hwsync::biased_shared_mutex> {
  static constexpr const char* id = "hwsync_biased_shared_mutex";
};

namespace {

using namespace std::chrono_literals;

constexpr int lines = 4;

struct alignas(cache_line) counter_line {
  std::uint64_t value;
};

// The lock on its own line, then the lines the critical sections touch.
template <class L>
struct shared_data {
  alignas(cache_line) L lock;
  counter_line line[lines];

  void reset() noexcept {
    for (auto& l : line) l.value = 0;
  }
  // Plain (non-atomic) accesses: only the lock keeps them consistent.
  void write() noexcept {
    for (auto& l : line) ++l.value;
  }
  // false when a writer's update was seen half done.
  bool read() const noexcept {
    const std::uint64_t first = line[0].value;
    bool same = true;
    for (const auto& l : line) same &= l.value == first;
    benchmark::DoNotOptimize(first);
    return same;
  }
};

template <class L, int Scenario>
shared_data<L>& shared() {
  static shared_data<L> s;
  return s;
}

enum scenario : int { uncontended_s, mixed_s, latency_s };

// The self-timed scenarios' wall time: mixed has 216 runs, so each is
// shorter than the harness default; writer_latency needs enough writer
// samples for a p99.
std::chrono::milliseconds mixed_time() {
  return opts().quick ? 150ms : 300ms;
}
std::chrono::milliseconds latency_time() {
  return opts().quick ? 400ms : 1000ms;
}

// ---------------------------------------------------------------------------

template <class L, bool Shared>
void bm_uncontended(benchmark::State& state) {
  constexpr int batch = 256;
  auto& s = shared<L, uncontended_s>();
  shared_locker<L> h(s.lock);
  batch_timer timer;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) {
      if constexpr (Shared) {
        h.lock_shared();
        h.unlock_shared();
      } else {
        h.lock();
        h.unlock();
      }
    }
    timer.stop();
  }
  report_batches(state, timer, batch);
}

struct alignas(cache_line) thread_counts {
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t torn = 0;
};

// xorshift64: a per-thread stream of read/write choices that costs a few
// cycles and touches no shared memory.
struct xorshift {
  std::uint64_t x;
  std::uint64_t next() noexcept {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
};

template <class L>
void bm_mixed(benchmark::State& state) {
  const auto read_pct = static_cast<std::uint64_t>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  auto& s = shared<L, mixed_s>();
  for (auto _ : state) {
    s.reset();
    std::vector<thread_counts> per(static_cast<std::size_t>(threads));
    const auto r = run_team(threads, mixed_time(), [&](int i, const auto& stop) {
      shared_locker<L> h(s.lock);
      xorshift rng{0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(i + 1)};
      thread_counts c;
      while (!stop.load(std::memory_order_relaxed)) {
        if (rng.next() % 100 < read_pct) {
          h.lock_shared();
          const bool ok = s.read();
          h.unlock_shared();
          ++c.reads;
          c.torn += ok ? 0 : 1;
        } else {
          h.lock();
          s.write();
          h.unlock();
          ++c.writes;
        }
      }
      per[static_cast<std::size_t>(i)] = c;
    });
    std::uint64_t reads = 0, writes = 0, torn = 0, min_ops = ~std::uint64_t{0}, max_ops = 0;
    for (const auto& c : per) {
      reads += c.reads;
      writes += c.writes;
      torn += c.torn;
      min_ops = std::min(min_ops, c.reads + c.writes);
      max_ops = std::max(max_ops, c.reads + c.writes);
    }
    const std::uint64_t ops = reads + writes;
    const double n = ops ? static_cast<double>(ops) : 1.0;
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(ops));
    state.counters["ops"] = static_cast<double>(ops);
    state.counters["reads_per_second"] = static_cast<double>(reads) / r.wall_seconds;
    state.counters["writes_per_second"] = static_cast<double>(writes) / r.wall_seconds;
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
    state.counters["cpu_ns_per_op"] = r.cpu_seconds * 1e9 / n;
    state.counters["fairness"] =
        max_ops ? static_cast<double>(min_ops) / static_cast<double>(max_ops) : 0.0;
    state.counters["vcsw_per_kop"] = static_cast<double>(r.voluntary_switches) * 1000.0 / n;
    if (torn != 0 || s.line[0].value != writes) {
      const std::string msg = "a reader saw a half-done write (" + std::to_string(torn) +
                              " times) or writes were lost (" + std::to_string(s.line[0].value) +
                              " counted, " + std::to_string(writes) + " made)";
      state.SkipWithError(msg.c_str());
    }
  }
}

template <class L>
void bm_writer_latency(benchmark::State& state) {
  const int readers = static_cast<int>(state.range(0));
  const std::uint64_t read_units = work::units_for(1us);
  auto& s = shared<L, latency_s>();
  for (auto _ : state) {
    s.reset();
    cycle_histogram waits;
    std::uint64_t writes = 0;
    std::vector<thread_counts> per(static_cast<std::size_t>(readers));
    const auto r = run_team(readers + 1, latency_time(), [&](int i, const auto& stop) {
      shared_locker<L> h(s.lock);
      if (i == readers) {
        while (!stop.load(std::memory_order_relaxed)) {
          std::this_thread::sleep_for(200us);
          const auto t0 = cycle_clock::start();
          h.lock();
          waits.record(cycle_clock::stop() - t0);
          s.write();
          h.unlock();
          ++writes;
        }
        return;
      }
      thread_counts c;
      while (!stop.load(std::memory_order_relaxed)) {
        h.lock_shared();
        c.torn += s.read() ? 0 : 1;
        work::run(read_units);
        h.unlock_shared();
        ++c.reads;
      }
      per[static_cast<std::size_t>(i)] = c;
    });
    std::uint64_t reads = 0, torn = 0;
    for (const auto& c : per) {
      reads += c.reads;
      torn += c.torn;
    }
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(reads + writes));
    record_latency(state, waits);
    state.counters["writes_per_second"] = static_cast<double>(writes) / r.wall_seconds;
    state.counters["reads_per_second"] = static_cast<double>(reads) / r.wall_seconds;
    state.counters["vcsw_per_kop"] =
        static_cast<double>(r.voluntary_switches) * 1000.0 /
        static_cast<double>(std::max<std::uint64_t>(1, reads + writes));
    if (torn != 0 || s.line[0].value != writes) {
      const std::string msg =
          "a reader saw a half-done write (" + std::to_string(torn) + " times) or writes were lost";
      state.SkipWithError(msg.c_str());
    }
  }
}

// ---------------------------------------------------------------------------

template <class... Locks>
struct lock_list {};

using peers = lock_list<
    hwsync::shared_mutex<rw_policy::phase_fair>, hwsync::shared_mutex<rw_policy::writer_preferred>,
    hwsync::shared_mutex<rw_policy::reader_preferred>, hwsync::biased_shared_mutex,
    hwsync::shared_mutex<rw_policy::strict_phase_fair>, std::shared_mutex, pthread_rwlock_default,
    pthread_rwlock_prefer_writer, tbb::spin_rw_mutex, tbb::queuing_rw_mutex, tbb::rw_mutex>;

std::string name(const char* scenario, const char* lock) {
  return std::string("shared_mutex/") + scenario + "/" + lock;
}

// Scenario by scenario and, within one, argument by argument, all locks side
// by side: the locks compared in one row of the report ran within seconds of
// each other.
template <class... Locks>
void register_all(lock_list<Locks...>) {
  (benchmark::RegisterBenchmark(name("uncontended_shared", lock_traits<Locks>::id).c_str(),
                                bm_uncontended<Locks, true>),
   ...);
  (benchmark::RegisterBenchmark(name("uncontended_exclusive", lock_traits<Locks>::id).c_str(),
                                bm_uncontended<Locks, false>),
   ...);
  auto self_timed = [](benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  for (int read_pct : {100, 99, 90, 50}) {
    for (int threads : {1, 2, 4, 8, 16, 32}) {
      (self_timed(benchmark::RegisterBenchmark(name("mixed", lock_traits<Locks>::id).c_str(),
                                               bm_mixed<Locks>)
                      ->ArgNames({"read_pct", "threads"})
                      ->Args({read_pct, threads})),
       ...);
    }
  }
  for (int readers : {2, 4, 8, 16}) {
    (self_timed(benchmark::RegisterBenchmark(name("writer_latency", lock_traits<Locks>::id).c_str(),
                                             bm_writer_latency<Locks>)
                    ->ArgName("readers")
                    ->Arg(readers)),
     ...);
  }
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv,
                                   [] { hwsync::bench::register_all(hwsync::bench::peers{}); });
}
