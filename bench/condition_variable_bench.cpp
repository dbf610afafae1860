// bench/condition_variable_bench.cpp — hwsync::condition_variable over
// hwsync::mutex beside std::condition_variable over std::mutex, in one binary.
//
// Scenarios (names "condvar/<scenario>/<impl>/<arg>:<n>"):
//   pingpong   2 threads take turns through one mutex and one condition
//              variable: each waits for its turn, passes it and notifies.
//              Latency is cycle_clock from just before notify_one() to just
//              after the woken thread's wait() returns: p50/p99/p999 in
//              cycles and ns; items_per_second is turns per second.
//   prodcons   2 producers, 2 consumers, a bounded queue of 16 items with
//              not_full / not_empty and notify_one: items per second, CPU
//              per item, context switches per 1000 items.
//   broadcast  32 waiters wait for a generation number to change; one thread
//              bumps it and calls notify_all, then waits until all 32 have
//              seen it. Context switches (voluntary: a thread blocked) per
//              broadcast: waking all 32 at once makes them fight for the
//              mutex and block again; wait morphing wakes them one by one as
//              the mutex is released. Also broadcasts per second.
#include <condition_variable>
#include <deque>
#include <mutex>

#include "harness.hpp"
#include "hwsync/condition_variable.hpp"

namespace hwsync::bench {
namespace {

using namespace std::chrono_literals;

struct hwsync_cv {
  static constexpr const char* id = "hwsync_condition_variable";
  using mutex = hwsync::mutex;
  using cv = hwsync::condition_variable;
};
struct std_cv {
  static constexpr const char* id = "std_condition_variable";
  using mutex = std::mutex;
  using cv = std::condition_variable;
};

template <class Impl>
void bm_pingpong(benchmark::State& state) {
  for (auto _ : state) {
    typename Impl::mutex m;
    typename Impl::cv cv;
    int turn = 0;
    cycle_clock::ticks notified_at = 0;
    std::vector<cycle_histogram> hist(2);
    std::vector<padded<std::uint64_t>> turns(2);
    const auto r = run_team(2, opts().scenario_time(), [&](int me, const auto& stop) {
      auto& mine = hist[static_cast<std::size_t>(me)];
      std::uint64_t n = 0;
      std::unique_lock lk(m);
      while (!stop.load(std::memory_order_relaxed)) {
        while (turn != me && !stop.load(std::memory_order_relaxed)) {
          cv.wait_for(lk, 10ms);  // the timeout only lets a thread see `stop`
        }
        if (turn != me) break;
        const auto woke = cycle_clock::now();
        if (notified_at != 0 && woke > notified_at) mine.record(woke - notified_at);
        ++n;
        turn = 1 - me;
        notified_at = cycle_clock::now();
        cv.notify_one();
      }
      turns[static_cast<std::size_t>(me)].value = n;
      turn = 1 - me;  // release the other thread if it still waits
      cv.notify_all();
    });
    cycle_histogram all;
    for (const auto& h : hist) all.merge(h);
    const double total = static_cast<double>(turns[0].value + turns[1].value);
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(total));
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / (total ? total : 1);
    record_latency(state, all);
    state.counters["vcsw_per_kop"] =
        static_cast<double>(r.voluntary_switches) * 1000.0 / (total ? total : 1);
  }
}

template <class Impl>
void bm_prodcons(benchmark::State& state) {
  constexpr std::size_t capacity = 16;
  constexpr int producers = 2, consumers = 2;
  for (auto _ : state) {
    typename Impl::mutex m;
    typename Impl::cv not_full, not_empty;
    std::deque<std::uint64_t> queue;
    bool done = false;
    std::vector<padded<std::uint64_t>> moved(producers + consumers);
    const auto r =
        run_team(producers + consumers, opts().scenario_time(), [&](int me, const auto& stop) {
          std::uint64_t n = 0;
          if (me < producers) {
            while (!stop.load(std::memory_order_relaxed)) {
              std::unique_lock lk(m);
              not_full.wait(lk, [&] { return queue.size() < capacity || done; });
              if (done) break;
              queue.push_back(n++);
              lk.unlock();
              not_empty.notify_one();
            }
            std::lock_guard g(m);
            done = true;
            not_empty.notify_all();
            not_full.notify_all();
          } else {
            for (;;) {
              std::unique_lock lk(m);
              not_empty.wait(lk, [&] { return !queue.empty() || done; });
              if (queue.empty()) break;
              queue.pop_front();
              ++n;
              lk.unlock();
              not_full.notify_one();
            }
          }
          moved[static_cast<std::size_t>(me)].value = n;
        });
    std::uint64_t consumed = 0;
    for (int c = producers; c < producers + consumers; ++c)
      consumed += moved[static_cast<std::size_t>(c)].value;
    const double n = consumed ? static_cast<double>(consumed) : 1.0;
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(consumed));
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
    state.counters["cpu_ns_per_item"] = r.cpu_seconds * 1e9 / n;
    state.counters["vcsw_per_kop"] = static_cast<double>(r.voluntary_switches) * 1000.0 / n;
  }
}

template <class Impl>
void bm_broadcast(benchmark::State& state) {
  const int waiters = static_cast<int>(state.range(0));
  for (auto _ : state) {
    typename Impl::mutex m;
    typename Impl::cv wake, all_seen;
    std::uint64_t generation = 0;
    int seen = 0;
    bool finished = false;
    std::uint64_t broadcasts = 0;
    const auto r = run_team(waiters + 1, opts().scenario_time(), [&](int me, const auto& stop) {
      std::unique_lock lk(m);
      if (me == waiters) {  // the broadcaster
        while (!stop.load(std::memory_order_relaxed)) {
          seen = 0;
          ++generation;
          ++broadcasts;
          wake.notify_all();
          all_seen.wait(lk, [&] { return seen == waiters; });
        }
        finished = true;
        ++generation;
        wake.notify_all();
        return;
      }
      std::uint64_t last = 0;
      while (!finished) {
        wake.wait(lk, [&] { return generation != last; });
        last = generation;
        if (finished) break;
        if (++seen == waiters) all_seen.notify_one();
      }
    });
    const double n = broadcasts ? static_cast<double>(broadcasts) : 1.0;
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(broadcasts));
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
    state.counters["vcsw_per_broadcast"] = static_cast<double>(r.voluntary_switches) / n;
    state.counters["ivcsw_per_broadcast"] = static_cast<double>(r.involuntary_switches) / n;
    state.counters["cpu_us_per_broadcast"] = r.cpu_seconds * 1e6 / n;
  }
}

template <class... Impls>
void register_all() {
  auto self_timed = [](benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  (self_timed(benchmark::RegisterBenchmark((std::string("condvar/pingpong/") + Impls::id).c_str(),
                                           bm_pingpong<Impls>)),
   ...);
  (self_timed(benchmark::RegisterBenchmark(
       (std::string("condvar/prodcons/") + Impls::id + "/threads:4").c_str(), bm_prodcons<Impls>)),
   ...);
  (self_timed(benchmark::RegisterBenchmark((std::string("condvar/broadcast/") + Impls::id).c_str(),
                                           bm_broadcast<Impls>)
                  ->ArgName("waiters")
                  ->Arg(32)),
   ...);
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv, [] {
    hwsync::bench::register_all<hwsync::bench::hwsync_cv, hwsync::bench::std_cv>();
  });
}
