// bench/numa_bench.cpp — hwsync::numa_mutex beside hwsync::mutex and
// std::mutex, in one binary and one run.
//
// Scenarios (names "numa/<scenario>/<lock id>/<arg>:<n>"):
//   uncontended  one thread, lock+unlock in batches of 256 on this machine's
//                topology: the fast path (cycles_per_op: the median batch
//                less the timer's cost, over 256). The target is
//                numa_mutex <= 1.1x hwsync::mutex.
//   contended    2, 4, 8 threads on this machine's topology, a critical
//                section that increments 4 counters on 4 cache lines and no
//                work outside: throughput (items_per_second) and fairness.
//   cross_node   on the synthetic topology "pack:2 numa:2 core:4 pu:1"
//                (4 NUMA nodes), per_node threads assigned to each virtual
//                node (numa::assign_current_thread_to_node), the same
//                critical section. Every holder compares its node with the
//                previous holder's, under the lock: cross_per_million is
//                how often the lock changed node, per 10^6 acquisitions —
//                counted the same way for every lock, so a lock that knows
//                nothing of nodes is measured like one that does.
//                longest_node_run is the longest stretch of one node's
//                acquisitions; node_fairness the least-served node's
//                acquisitions over the most-served's; fairness the same per
//                thread. numa_mutex also reports its own counters.
// All multithreaded scenarios run on run_team (harness.hpp) for a fixed wall
// time; each checks the critical-section counters afterwards, so a broken
// lock is an error, not a fast result. On a machine with several real NUMA
// nodes the contended scenario spreads over them as the scheduler places the
// threads (no pinning); this machine has one.
#include <algorithm>
#include <memory>
#include <mutex>
#include <type_traits>

#include "harness.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/numa.hpp"

namespace hwsync::bench {

template <>
struct lock_traits<hwsync::numa_mutex> {
  static constexpr const char* id = "hwsync_numa_mutex";
};
template <>
struct lock_traits<hwsync::mutex> {
  static constexpr const char* id = "hwsync_mutex";
};

constexpr const char* synthetic_topology = "pack:2 numa:2 core:4 pu:1";

namespace {

struct alignas(cache_line) counter_line {
  std::uint64_t value;
};

template <class L>
struct shared_data {
  alignas(cache_line) L lock;
  counter_line lines[4];
  // Under the lock: the previous holder's node and how often it changed.
  alignas(cache_line) unsigned last_node = ~0u;
  std::uint64_t node_changes = 0;
  std::uint64_t run = 0, longest_run = 0;

  void touch() noexcept {
    for (auto& l : lines) ++l.value;
  }
  bool consistent(std::uint64_t expected) const noexcept {
    return std::all_of(std::begin(lines), std::end(lines),
                       [&](const counter_line& l) { return l.value == expected; });
  }
  void note_holder(unsigned node) noexcept {
    if (node != last_node) {
      if (last_node != ~0u) ++node_changes;
      last_node = node;
      run = 0;
    }
    longest_run = std::max(longest_run, ++run);
  }
};

void fail_inconsistent(benchmark::State& state, std::uint64_t expected) {
  const std::string msg = "critical section counters differ from " + std::to_string(expected) +
                          ": mutual exclusion broke";
  state.SkipWithError(msg.c_str());
}

template <class L>
void bm_uncontended(benchmark::State& state) {
  numa::use_system_topology();
  auto s = std::make_unique<shared_data<L>>();
  lock_unlock_batches(state, s->lock);
}

struct spread {
  std::uint64_t total = 0, min = 0, max = 0;
  template <class Range>
  explicit spread(const Range& counts) {
    min = ~std::uint64_t{0};
    for (const auto& c : counts) {
      total += c.value;
      min = std::min(min, c.value);
      max = std::max(max, c.value);
    }
  }
  double ratio() const { return max ? static_cast<double>(min) / static_cast<double>(max) : 0.0; }
};

void report_team(benchmark::State& state, const team_result& r, const spread& threads) {
  state.SetIterationTime(r.wall_seconds);
  state.SetItemsProcessed(static_cast<std::int64_t>(threads.total));
  const double n = threads.total ? static_cast<double>(threads.total) : 1.0;
  state.counters["acquisitions"] = static_cast<double>(threads.total);
  state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
  state.counters["cpu_ns_per_acq"] = r.cpu_seconds * 1e9 / n;
  state.counters["fairness"] = threads.ratio();
  state.counters["vcsw_per_kacq"] = static_cast<double>(r.voluntary_switches) * 1000.0 / n;
}

template <class L>
void add_lock_counters([[maybe_unused]] benchmark::State& state, [[maybe_unused]] const L& lock,
                       [[maybe_unused]] double n) {
  if constexpr (std::is_base_of_v<hwsync::numa_mutex, L>) {
    const auto s = static_cast<const hwsync::numa_mutex&>(lock).stats();
    state.counters["lock_cross_per_million"] = static_cast<double>(s.cross_node_handoffs) * 1e6 / n;
    state.counters["lock_local_handoffs_per_million"] =
        static_cast<double>(s.local_handoffs) * 1e6 / n;
    state.counters["lock_nodes"] = s.nodes;
  }
}

// `nodes` 0: this machine's topology, threads where the scheduler puts them.
// Otherwise the synthetic topology, thread i on virtual node i / per_node.
template <class L>
void run_lock_team(benchmark::State& state, int threads, unsigned per_node, bool synthetic) {
  for (auto _ : state) {
    if (synthetic)
      numa::use_synthetic_topology(synthetic_topology);
    else
      numa::use_system_topology();
    const unsigned nodes = numa::node_count();
    if (synthetic && static_cast<int>(nodes) != state.range(0)) {
      state.SkipWithError("the synthetic topology does not have the nodes the name says");
      numa::use_system_topology();
      return;
    }
    auto s = std::make_unique<shared_data<L>>();
    std::vector<padded<std::uint64_t>> per_thread(static_cast<std::size_t>(threads));
    std::vector<padded<std::uint64_t>> per_node_count(nodes);
    const auto r = run_team(threads, opts().scenario_time(), [&](int i, const auto& stop) {
      if (synthetic) (void)numa::assign_current_thread_to_node(static_cast<unsigned>(i) / per_node);
      const unsigned my_node = numa::current_node();
      locker<L> h(s->lock);
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        h.lock();
        s->touch();
        if (synthetic) s->note_holder(my_node);
        h.unlock();
        ++n;
      }
      per_thread[static_cast<std::size_t>(i)].value = n;
      if (synthetic) {
        std::lock_guard g(h);
        per_node_count[my_node].value += n;
      }
    });
    const spread t(per_thread);
    report_team(state, r, t);
    const double n = t.total ? static_cast<double>(t.total) : 1.0;
    if (synthetic) {
      state.counters["cross_per_million"] = static_cast<double>(s->node_changes) * 1e6 / n;
      state.counters["longest_node_run"] = static_cast<double>(s->longest_run);
      state.counters["node_fairness"] = spread(per_node_count).ratio();
    }
    add_lock_counters(state, s->lock, n);
    if (!s->consistent(t.total)) fail_inconsistent(state, t.total);
    numa::use_system_topology();
  }
}

template <class L>
void bm_contended(benchmark::State& state) {
  run_lock_team<L>(state, static_cast<int>(state.range(0)), 1, false);
}

template <class L>
void bm_cross_node(benchmark::State& state) {
  const auto nodes = static_cast<int>(state.range(0));
  const auto per_node = static_cast<int>(state.range(1));
  run_lock_team<L>(state, nodes * per_node, static_cast<unsigned>(per_node), true);
}

// numa_mutex as the cohort papers bound it, by a count (64 cohort
// hand-offs; the default bound is a 4 ms turn), beside the default in
// cross_node only: what a count costs when each hand-off to another node
// waits for a futex wake-up.
struct numa_mutex_count_64 : hwsync::numa_mutex {
  numa_mutex_count_64() noexcept : numa_mutex(64) {}
};

}  // namespace

template <>
struct lock_traits<numa_mutex_count_64> {
  static constexpr const char* id = "hwsync_numa_mutex_count64";
};

namespace {

template <class... Locks>
struct lock_list {};
using peers = lock_list<hwsync::numa_mutex, hwsync::mutex, std::mutex>;

std::string name(const char* scenario, const char* lock) {
  return std::string("numa/") + scenario + "/" + lock;
}

template <class... Locks>
void register_all(lock_list<Locks...>) {
  (benchmark::RegisterBenchmark(name("uncontended", lock_traits<Locks>::id).c_str(),
                                bm_uncontended<Locks>),
   ...);
  auto self_timed = [](benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  for (int threads : {2, 4, 8}) {
    (self_timed(benchmark::RegisterBenchmark(name("contended", lock_traits<Locks>::id).c_str(),
                                             bm_contended<Locks>)
                    ->ArgName("threads")
                    ->Arg(threads)),
     ...);
  }
  // The synthetic topology has 4 nodes: cross_node's first argument is that
  // count, so the report can say it.
  for (int per_node : {1, 4}) {
    (self_timed(benchmark::RegisterBenchmark(name("cross_node", lock_traits<Locks>::id).c_str(),
                                             bm_cross_node<Locks>)
                    ->ArgNames({"nodes", "per_node"})
                    ->Args({4, per_node})),
     ...);
    self_timed(benchmark::RegisterBenchmark(
                   name("cross_node", lock_traits<numa_mutex_count_64>::id).c_str(),
                   bm_cross_node<numa_mutex_count_64>)
                   ->ArgNames({"nodes", "per_node"})
                   ->Args({4, per_node}));
  }
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv, [] {
    // What the report says about NUMA: this machine's nodes, and the
    // synthetic topology cross_node runs on.
    const hwsync::topology& t = hwsync::topology::system();
    benchmark::AddCustomContext("numa_nodes", std::to_string(t.numa_nodes()));
    benchmark::AddCustomContext("numa_topology", t.describe());
    benchmark::AddCustomContext("numa_synthetic_topology", hwsync::bench::synthetic_topology);
    hwsync::bench::register_all(hwsync::bench::peers{});
  });
}
