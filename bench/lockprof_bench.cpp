// bench/lockprof_bench.cpp — what the lock observers (hwsync/lock_observer.hpp:
// the lock-order checker and the contention profiler) cost, and a contended
// workload's profile for the report.
//
// Scenarios (names "lockprof/<scenario>/<config>/..."; cycles_per_op from
// cycle_clock):
//   uncontended   one thread, lock+unlock in batches of 256 (median batch, as
//                 mutex_bench). Configs:
//                   mutex_word                 hwsync's lock word without
//                                              the hooks: hwsync::mutex in
//                                              release builds before them
//                   hwsync_mutex_off           hwsync::mutex, observers off
//                   hwsync_mutex_order         the checker on, no other lock
//                                              held
//                   hwsync_mutex_order_nested  the checker on, one other lock
//                                              held: an edge per acquisition,
//                                              found in the thread's cache
//                   hwsync_mutex_profile       the profiler on, 1 in 16
//                   hwsync_mutex_both          checker (nested) and profiler
//                 and the shared mode: rw_word_shared (shared_mutex's word,
//                 no hooks) against hwsync_shared_mutex_shared_off
//                 (shared_mutex<>::lock_shared, observers off).
//   contended     4 threads on 3 locks (a hot one taken 3/4 of the time, a
//                 warm one 1/8, each thread's own 1/8), a short critical
//                 section: hwsync_mutex_off against hwsync_mutex_profile
//                 (1 in 16 sampled), wall cycles per acquisition of the team.
// Before the benchmarks run, the contended workload runs once more with the
// profiler on and its snapshot (lock_profile_snapshot::json()) goes into the
// benchmark context as "lockprof_profile": perf/report_lockprof.py renders it.
#include <mutex>
#include <shared_mutex>

#include "harness.hpp"
#include "hwsync/lock_order.hpp"
#include "hwsync/lock_profile.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/shared_mutex.hpp"

namespace hwsync::bench {
namespace {

using namespace std::chrono_literals;

enum class config { mutex_word, off, order, order_nested, profile, both };

const char* config_id(config c) {
  switch (c) {
    case config::mutex_word:
      return "mutex_word";
    case config::off:
      return "hwsync_mutex_off";
    case config::order:
      return "hwsync_mutex_order";
    case config::order_nested:
      return "hwsync_mutex_order_nested";
    case config::profile:
      return "hwsync_mutex_profile";
    case config::both:
      return "hwsync_mutex_both";
  }
  return "?";
}

// Switches the observers for one benchmark, and back off after it.
class observers {
 public:
  explicit observers(config c) {
    if (c == config::order || c == config::order_nested || c == config::both)
      enable_lock_order_checking();
    if (c == config::profile || c == config::both) enable_lock_profiling(16);
  }
  ~observers() {
    disable_lock_order_checking();
    disable_lock_profiling();
    reset_lock_order_graph();
    reset_lock_profile();
  }
  observers(const observers&) = delete;
  observers& operator=(const observers&) = delete;
};

template <config C>
void bm_uncontended(benchmark::State& state) {
  constexpr int batch = 256;
  alignas(cache_line) static hwsync::mutex outer;
  alignas(cache_line) static hwsync::mutex m;
  alignas(cache_line) static hwsync::detail::mutex_word word;
  const observers on(C);
  const bool nested = C == config::order_nested || C == config::both;
  if (nested) outer.lock();
  batch_timer timer;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) {
      if constexpr (C == config::mutex_word) {
        word.lock();
        word.unlock();
      } else {
        m.lock();
        m.unlock();
      }
    }
    timer.stop();
  }
  if (nested) outer.unlock();
  report_batches(state, timer, batch);
}

template <bool Hooked>
void bm_uncontended_shared(benchmark::State& state) {
  constexpr int batch = 256;
  alignas(cache_line) static hwsync::shared_mutex<> m;
  alignas(cache_line) static hwsync::detail::rw_word<hwsync::detail::rw_kind::phase_fair> word;
  batch_timer timer;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) {
      if constexpr (Hooked) {
        m.lock_shared();
        m.unlock_shared();
      } else {
        word.lock_shared();
        word.unlock_shared();
      }
    }
    timer.stop();
  }
  report_batches(state, timer, batch);
}

// The contended workload ------------------------------------------------------

constexpr int contended_threads = 4;

struct alignas(cache_line) guarded_lock {
  hwsync::mutex lock;
  std::uint64_t count = 0;  // plain: only the lock keeps it exact
};

struct workload {
  guarded_lock hot;
  guarded_lock warm;
  guarded_lock own[contended_threads];

  workload() {
    set_lock_name(&hot.lock, "hot");
    set_lock_name(&warm.lock, "warm");
    for (int t = 0; t < contended_threads; ++t)
      set_lock_name(&own[t].lock, "own[" + std::to_string(t) + "]");
  }

  // acquisitions per thread
  team_result run(std::chrono::nanoseconds d, std::vector<std::uint64_t>& acquisitions) {
    acquisitions.assign(contended_threads, 0);
    return run_team(contended_threads, d, [&](int t, const std::atomic<bool>& stop) {
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 8; ++i, ++n) {
          guarded_lock& g = i < 6 ? hot : i == 6 ? warm : own[t];
          std::lock_guard guard(g.lock);
          ++g.count;
        }
      }
      acquisitions[static_cast<std::size_t>(t)] = n;
    });
  }
  std::uint64_t counted() const {
    std::uint64_t n = hot.count + warm.count;
    for (const auto& o : own) n += o.count;
    return n;
  }
};

template <bool Profile>
void bm_contended(benchmark::State& state) {
  const observers on(Profile ? config::profile : config::off);
  for (auto _ : state) {
    workload w;
    std::vector<std::uint64_t> acq;
    const team_result r = w.run(opts().scenario_time(), acq);
    std::uint64_t total = 0;
    for (auto a : acq) total += a;
    if (w.counted() != total) {
      state.SkipWithError("the critical sections' counts differ from the acquisitions");
      return;
    }
    state.counters["cycles_per_op"] =
        static_cast<double>(r.wall_ticks) / static_cast<double>(total);
    state.counters["acquisitions"] = static_cast<double>(total);
    state.SetItemsProcessed(static_cast<std::int64_t>(total));
    state.SetIterationTime(r.wall_seconds);
  }
}

void add_profile_context() {
  enable_lock_profiling(16);
  std::string json;
  {
    workload w;
    std::vector<std::uint64_t> acq;
    w.run(opts().scenario_time(), acq);
    json = snapshot_lock_profile().json();
  }
  disable_lock_profiling();
  reset_lock_profile();
  benchmark::AddCustomContext("lockprof_profile", json);
}

std::string name(const char* scenario, const char* id) {
  return std::string("lockprof/") + scenario + "/" + id;
}

void register_all() {
  add_profile_context();
  auto uncontended = [](config c, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name("uncontended", config_id(c)).c_str(), fn);
  };
  uncontended(config::mutex_word, bm_uncontended<config::mutex_word>);
  uncontended(config::off, bm_uncontended<config::off>);
  uncontended(config::order, bm_uncontended<config::order>);
  uncontended(config::order_nested, bm_uncontended<config::order_nested>);
  uncontended(config::profile, bm_uncontended<config::profile>);
  uncontended(config::both, bm_uncontended<config::both>);
  benchmark::RegisterBenchmark(name("uncontended", "rw_word_shared").c_str(),
                               bm_uncontended_shared<false>);
  benchmark::RegisterBenchmark(name("uncontended", "hwsync_shared_mutex_shared_off").c_str(),
                               bm_uncontended_shared<true>);
  using bench_fn = void (*)(benchmark::State&);
  const std::pair<const char*, bench_fn> contended[] = {
      {"hwsync_mutex_off", bm_contended<false>}, {"hwsync_mutex_profile", bm_contended<true>}};
  for (const auto& [id, fn] : contended) {
    benchmark::RegisterBenchmark((name("contended", id) + "/threads:4").c_str(), fn)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv, [] { hwsync::bench::register_all(); });
}
