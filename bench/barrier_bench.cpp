// bench/barrier_bench.cpp — hwsync::latch and hwsync::barrier beside
// std::latch, std::barrier and glibc's pthread_barrier_t, in one binary.
//
// Scenarios (names "<primitive>/episode/<impl>/parties:<n>", n = 2..32; on a
// 2-core machine everything above 2 parties is oversubscribed):
//   barrier/episode   n threads call arrive_and_wait() (pthread_barrier_wait)
//                     back to back on one barrier. An episode is one phase;
//                     its latency is the time between two consecutive
//                     returns of thread 0 from the barrier (cycle_clock):
//                     cycles_per_op is wall cycles per episode, and
//                     p50/p90/p99/p999 the percentiles of the per-episode
//                     latency, in cycles and ns. Also episodes/s, voluntary
//                     context switches (parks) and CPU per episode.
//                     hwsync_barrier is the algorithm the barrier picks for
//                     n parties; _central and _tree force one of them.
//   barrier/threshold the two algorithms forced, 8 to 128 parties: where the
//                     combining tree starts to pay (tree_threshold).
//   latch/episode     the same with a fresh latch per episode
//                     (arrive_and_wait()): three latches in turn, thread 0
//                     rebuilding the one two rounds back, as a single-use
//                     latch must be.
// Every thread leaves after the same episode: thread 0 names it (before
// arriving at it) once the scenario's time is up.
#include <pthread.h>

#include <array>
#include <barrier>
#include <latch>
#include <optional>

#include "harness.hpp"
#include "hwsync/barrier.hpp"
#include "hwsync/latch.hpp"

namespace hwsync::bench {
namespace {

struct hwsync_barrier_auto {
  static constexpr const char* id = "hwsync_barrier";
  explicit hwsync_barrier_auto(int n) : b(n) {}
  void arrive_and_wait() { b.arrive_and_wait(); }
  hwsync::barrier<> b;
};
struct hwsync_barrier_central {
  static constexpr const char* id = "hwsync_barrier_central";
  explicit hwsync_barrier_central(int n) : b(n, barrier_algorithm::central) {}
  void arrive_and_wait() { b.arrive_and_wait(); }
  hwsync::barrier<> b;
};
struct hwsync_barrier_tree {
  static constexpr const char* id = "hwsync_barrier_tree";
  explicit hwsync_barrier_tree(int n) : b(n, barrier_algorithm::combining_tree) {}
  void arrive_and_wait() { b.arrive_and_wait(); }
  hwsync::barrier<> b;
};
struct std_barrier {
  static constexpr const char* id = "std_barrier";
  explicit std_barrier(int n) : b(n) {}
  void arrive_and_wait() { b.arrive_and_wait(); }
  std::barrier<> b;
};
class pthread_barrier {
 public:
  static constexpr const char* id = "pthread_barrier";
  explicit pthread_barrier(int n) { pthread_barrier_init(&b_, nullptr, static_cast<unsigned>(n)); }
  ~pthread_barrier() { pthread_barrier_destroy(&b_); }
  pthread_barrier(const pthread_barrier&) = delete;
  pthread_barrier& operator=(const pthread_barrier&) = delete;
  void arrive_and_wait() { pthread_barrier_wait(&b_); }

 private:
  pthread_barrier_t b_;
};

struct hwsync_latch_impl {
  static constexpr const char* id = "hwsync_latch";
  using type = hwsync::latch;
};
struct std_latch_impl {
  static constexpr const char* id = "std_latch";
  using type = std::latch;
};

// What every episode scenario reports, from thread 0's histogram and the team.
void report_episodes(benchmark::State& state, const team_result& r, const cycle_histogram& h,
                     std::uint64_t episodes) {
  const double n = episodes ? static_cast<double>(episodes) : 1.0;
  state.SetIterationTime(r.wall_seconds);
  state.SetItemsProcessed(static_cast<std::int64_t>(episodes));
  state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
  state.counters["ns_per_op"] = ticks_to_ns(static_cast<double>(r.wall_ticks) / n);
  record_latency(state, h);
  state.counters["vcsw_per_op"] = static_cast<double>(r.voluntary_switches) / n;
  state.counters["ivcsw_per_op"] = static_cast<double>(r.involuntary_switches) / n;
  state.counters["cpu_us_per_op"] = r.cpu_seconds * 1e6 / n;
}

constexpr std::uint64_t no_last_episode = ~std::uint64_t{0};

template <class Impl>
void bm_barrier_episode(benchmark::State& state) {
  const int parties = static_cast<int>(state.range(0));
  for (auto _ : state) {
    Impl b(parties);
    std::atomic<std::uint64_t> last_episode{no_last_episode};
    cycle_histogram hist;
    std::uint64_t episodes = 0;
    const auto r = run_team(parties, opts().scenario_time(), [&](int me, const auto& stop) {
      cycle_clock::ticks prev = 0;
      for (std::uint64_t e = 0;; ++e) {
        if (me == 0 && stop.load(std::memory_order_relaxed) &&
            last_episode.load(std::memory_order_relaxed) == no_last_episode)
          last_episode.store(e, std::memory_order_relaxed);
        b.arrive_and_wait();
        if (me == 0) {
          const auto now = cycle_clock::now();
          if (prev != 0) hist.record(now - prev);
          prev = now;
          episodes = e + 1;
        }
        if (last_episode.load(std::memory_order_relaxed) == e) break;
      }
    });
    report_episodes(state, r, hist, episodes);
  }
}

template <class Impl>
void bm_latch_episode(benchmark::State& state) {
  using latch_type = typename Impl::type;
  const int parties = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::array<std::optional<latch_type>, 3> latches;
    for (auto& l : latches) l.emplace(parties);
    std::atomic<std::uint64_t> last_episode{no_last_episode};
    cycle_histogram hist;
    std::uint64_t episodes = 0;
    const auto r = run_team(parties, opts().scenario_time(), [&](int me, const auto& stop) {
      cycle_clock::ticks prev = 0;
      for (std::uint64_t e = 0;; ++e) {
        if (me == 0 && stop.load(std::memory_order_relaxed) &&
            last_episode.load(std::memory_order_relaxed) == no_last_episode)
          last_episode.store(e, std::memory_order_relaxed);
        latches[e % 3]->arrive_and_wait();
        if (me == 0) {
          const auto now = cycle_clock::now();
          if (prev != 0) hist.record(now - prev);
          prev = now;
          episodes = e + 1;
          // Everyone has counted down on latch e, so has left latch e - 1:
          // rebuild it for episode e + 2 before counting down on e + 1.
          if (e >= 1) latches[(e + 2) % 3].emplace(parties);
        }
        if (last_episode.load(std::memory_order_relaxed) == e) break;
      }
    });
    report_episodes(state, r, hist, episodes);
  }
}

void self_timed(benchmark::internal::Benchmark* b) {
  b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond)->ArgName("parties");
  for (int n : {2, 4, 8, 16, 32}) b->Arg(n);
}

template <class... Impls>
void register_barriers() {
  (self_timed(benchmark::RegisterBenchmark((std::string("barrier/episode/") + Impls::id).c_str(),
                                           bm_barrier_episode<Impls>)),
   ...);
}

// The central/tree threshold (barrier_core::tree_threshold): both algorithms,
// forced, from 8 to 128 parties.
template <class... Impls>
void register_threshold() {
  (benchmark::RegisterBenchmark((std::string("barrier/threshold/") + Impls::id).c_str(),
                                bm_barrier_episode<Impls>)
       ->Iterations(1)
       ->UseManualTime()
       ->Unit(benchmark::kMillisecond)
       ->ArgName("parties")
       ->Arg(8)
       ->Arg(32)
       ->Arg(64)
       ->Arg(128),
   ...);
}

template <class... Impls>
void register_latches() {
  (self_timed(benchmark::RegisterBenchmark((std::string("latch/episode/") + Impls::id).c_str(),
                                           bm_latch_episode<Impls>)),
   ...);
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  using namespace hwsync::bench;
  return bench_main(argc, argv, [] {
    register_barriers<hwsync_barrier_auto, hwsync_barrier_central, hwsync_barrier_tree, std_barrier,
                      pthread_barrier>();
    register_threshold<hwsync_barrier_central, hwsync_barrier_tree>();
    register_latches<hwsync_latch_impl, std_latch_impl>();
  });
}
