// bench/semaphore_bench.cpp — hwsync::counting_semaphore and
// hwsync::fair_counting_semaphore beside std::counting_semaphore (libstdc++:
// an atomic counter with its futex wait/notify) and glibc's POSIX sem_t, in
// one binary and one run.
//
// Scenarios (names "semaphore/<scenario>/<semaphore id>/<arg>:<n>"):
//   uncontended  one thread, acquire+release in batches of 256. permits:1
//                is a binary semaphore used as a lock: every release raises
//                the count from 0 (where libstdc++ makes a futex wake system
//                call whether or not anyone waits); permits:8 never reaches
//                0. cycles_per_op is the median batch (less the timer's own
//                cost) over 256, per acquire+release pair.
//   pingpong     2 threads and two semaphores: one releases `a` and acquires
//                `b`, the other acquires `a` and releases `b`. Latency is
//                cycle_clock from just before release() to just after the
//                other thread's acquire() returns: p50/p99/p999 in ns;
//                items_per_second is hand-overs per second; vcsw_per_kop is
//                voluntary context switches (parks) per 1000 hand-overs.
//   pool         `threads` threads share 4 permits, each looping acquire,
//                about 1 µs of work, release, about 1 µs of work — a
//                connection pool. items_per_second is the team's
//                acquisitions per second; fairness is the slowest thread's
//                acquisitions over the fastest's (1.0: equal shares);
//                cpu_ns_per_acq is process CPU per acquisition; vcsw_per_kacq
//                parks per 1000 acquisitions. More threads than this
//                machine's cores is the point: there the semaphore decides
//                who runs. Holders are counted, and more than 4 at once is an
//                error, not a result.
// The multithreaded scenarios run their own threads (harness.hpp, run_team)
// for a fixed wall time in one GB iteration; `--quick` shortens that time.
#include <semaphore.h>

#include <cerrno>
#include <memory>
#include <semaphore>

#include "harness.hpp"
#include "hwsync/semaphore.hpp"

namespace hwsync::bench {
namespace {

using namespace std::chrono_literals;

// One semaphore behind acquire()/release(), with the id the report reads.
template <class S>
struct semaphore_adapter {
  explicit semaphore_adapter(int permits) : s(permits) {}
  void acquire() { s.acquire(); }
  void release() { s.release(); }
  S s;
};

struct posix_semaphore {
  explicit posix_semaphore(int permits) { sem_init(&s, 0, static_cast<unsigned>(permits)); }
  ~posix_semaphore() { sem_destroy(&s); }
  posix_semaphore(const posix_semaphore&) = delete;
  posix_semaphore& operator=(const posix_semaphore&) = delete;
  void acquire() {
    while (sem_wait(&s) != 0 && errno == EINTR) {
    }
  }
  void release() { sem_post(&s); }
  sem_t s;
};

struct hwsync_unfair : semaphore_adapter<hwsync::counting_semaphore<>> {
  static constexpr const char* id = "hwsync_counting_semaphore";
  using semaphore_adapter::semaphore_adapter;
};
struct hwsync_fair : semaphore_adapter<hwsync::fair_counting_semaphore<>> {
  static constexpr const char* id = "hwsync_fair_counting_semaphore";
  using semaphore_adapter::semaphore_adapter;
};
struct std_semaphore : semaphore_adapter<std::counting_semaphore<>> {
  static constexpr const char* id = "std_counting_semaphore";
  using semaphore_adapter::semaphore_adapter;
};
struct posix_sem : posix_semaphore {
  static constexpr const char* id = "posix_sem_t";
  using posix_semaphore::posix_semaphore;
};

template <class S>
void bm_uncontended(benchmark::State& state) {
  constexpr int batch = 256;
  struct alignas(cache_line) holder {
    explicit holder(int n) : s(n) {}
    S s;
  };
  auto h = std::make_unique<holder>(static_cast<int>(state.range(0)));
  batch_timer timer;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) {
      h->s.acquire();
      h->s.release();
    }
    timer.stop();
  }
  report_batches(state, timer, batch);
}

// Ticks from `stamp` (read on another CPU) to now; 0 if the two CPUs'
// TSCs disagree by more than the interval.
cycle_clock::ticks since(cycle_clock::ticks stamp) noexcept {
  const auto now = cycle_clock::now();
  return now > stamp ? now - stamp : 0;
}

template <class S>
void bm_pingpong(benchmark::State& state) {
  struct data {
    alignas(cache_line) S a{0};
    alignas(cache_line) S b{0};
    alignas(cache_line) std::atomic<cycle_clock::ticks> a_released{0};
    alignas(cache_line) std::atomic<cycle_clock::ticks> b_released{0};
    alignas(cache_line) std::atomic<bool> done{false};
  };
  for (auto _ : state) {
    auto d = std::make_unique<data>();
    std::vector<cycle_histogram> hist(2);
    std::vector<padded<std::uint64_t>> turns(2);
    const auto r = run_team(2, opts().scenario_time(), [&](int me, const auto& stop) {
      auto& mine = hist[static_cast<std::size_t>(me)];
      std::uint64_t n = 0;
      if (me == 0) {
        for (;;) {
          // The last round tells the other thread to leave instead of
          // answering; `done` is ordered before its acquire by `a`.
          const bool last = stop.load(std::memory_order_relaxed);
          if (last) d->done.store(true, std::memory_order_relaxed);
          d->a_released.store(cycle_clock::now(), std::memory_order_relaxed);
          d->a.release();
          if (last) break;
          d->b.acquire();
          mine.record(since(d->b_released.load(std::memory_order_relaxed)));
          ++n;
        }
      } else {
        for (;;) {
          d->a.acquire();
          const auto acquired = since(d->a_released.load(std::memory_order_relaxed));
          if (d->done.load(std::memory_order_relaxed)) break;
          mine.record(acquired);
          ++n;
          d->b_released.store(cycle_clock::now(), std::memory_order_relaxed);
          d->b.release();
        }
      }
      turns[static_cast<std::size_t>(me)].value = n;
    });
    cycle_histogram all;
    for (const auto& h : hist) all.merge(h);
    const double total = static_cast<double>(turns[0].value + turns[1].value);
    const double n = total ? total : 1.0;
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(total));
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
    record_latency(state, all);
    state.counters["vcsw_per_kop"] = static_cast<double>(r.voluntary_switches) * 1000.0 / n;
    state.counters["cpu_ns_per_op"] = r.cpu_seconds * 1e9 / n;
  }
}

constexpr int pool_permits = 4;

template <class S>
void bm_pool(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const std::uint64_t inside = work::units_for(1us);
  const std::uint64_t outside = work::units_for(1us);
  struct data {
    alignas(cache_line) S pool{pool_permits};
    alignas(cache_line) std::atomic<int> holders{0};
    alignas(cache_line) std::atomic<int> most_holders{0};
  };
  for (auto _ : state) {
    auto d = std::make_unique<data>();
    std::vector<padded<std::uint64_t>> per_thread(static_cast<std::size_t>(threads));
    const auto r = run_team(threads, opts().scenario_time(), [&](int i, const auto& stop) {
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        d->pool.acquire();
        const int now = d->holders.fetch_add(1, std::memory_order_relaxed) + 1;
        if (now > pool_permits) d->most_holders.store(now, std::memory_order_relaxed);
        work::run(inside);
        d->holders.fetch_sub(1, std::memory_order_relaxed);
        d->pool.release();
        ++n;
        work::run(outside);
      }
      per_thread[static_cast<std::size_t>(i)].value = n;
    });
    std::uint64_t total = 0, lo = ~std::uint64_t{0}, hi = 0;
    for (const auto& p : per_thread) {
      total += p.value;
      lo = std::min(lo, p.value);
      hi = std::max(hi, p.value);
    }
    const double n = total ? static_cast<double>(total) : 1.0;
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(total));
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
    state.counters["cpu_ns_per_acq"] = r.cpu_seconds * 1e9 / n;
    state.counters["min_acq"] = static_cast<double>(lo);
    state.counters["max_acq"] = static_cast<double>(hi);
    state.counters["fairness"] = hi ? static_cast<double>(lo) / static_cast<double>(hi) : 0.0;
    state.counters["vcsw_per_kacq"] = static_cast<double>(r.voluntary_switches) * 1000.0 / n;
    state.counters["ivcsw_per_kacq"] = static_cast<double>(r.involuntary_switches) * 1000.0 / n;
    if (const int most = d->most_holders.load(); most > pool_permits) {
      const std::string msg = std::to_string(most) + " threads held one of " +
                              std::to_string(pool_permits) + " permits at once";
      state.SkipWithError(msg.c_str());
    }
  }
}

std::string name(const char* scenario, const char* id) {
  return std::string("semaphore/") + scenario + "/" + id;
}

// Scenario by scenario, all semaphores side by side, so the ones compared in
// a row of the report ran within seconds of each other.
template <class... Sems>
void register_all() {
  for (int permits : {1, 8}) {
    (benchmark::RegisterBenchmark(name("uncontended", Sems::id).c_str(), bm_uncontended<Sems>)
         ->ArgName("permits")
         ->Arg(permits),
     ...);
  }
  auto self_timed = [](benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  (self_timed(benchmark::RegisterBenchmark(name("pingpong", Sems::id).c_str(), bm_pingpong<Sems>)),
   ...);
  for (int threads : {4, 8, 16, 32}) {
    (self_timed(benchmark::RegisterBenchmark(name("pool", Sems::id).c_str(), bm_pool<Sems>)
                    ->ArgName("threads")
                    ->Arg(threads)),
     ...);
  }
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  using namespace hwsync::bench;
  return bench_main(argc, argv,
                    [] { register_all<hwsync_unfair, hwsync_fair, std_semaphore, posix_sem>(); });
}
