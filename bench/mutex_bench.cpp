// bench/mutex_bench.cpp — hwsync::mutex beside std::mutex, glibc pthread
// mutexes (default and adaptive), oneTBB's spin_mutex, queuing_mutex and
// mutex, and a plain TTAS spinlock, all in one binary and one run.
//
// Scenarios (names "mutex/<scenario>/<lock id>/<arg>:<n>"; every result
// carries cycles_per_op from cycle_clock: wall cycles per acquisition of the
// whole team, the inverse of its throughput):
//   uncontended      one thread, lock+unlock in batches of 256: the fast path.
//                    cycles_per_op is the median batch (less the timer's own
//                    cost) over 256, immune to the odd preemption;
//                    cycles_per_op_mean is the whole span's.
//   contended_short  1, 2, 4, 8, 16, 32 threads on one lock; the critical
//                    section increments 4 counters on 4 separate cache lines,
//                    with no work outside it: the most contended case. More
//                    threads than cores is on purpose: oversubscription is
//                    where spinning locks collapse. items_per_second is the
//                    team's throughput.
//   long_cs          8 threads, a critical section of about 10 µs of work and
//                    about 1 µs outside it; cpu_ns_per_acq is process CPU
//                    time (user + system, all threads) per acquisition: what
//                    the waiters burn on top of the holder's 10 µs.
//   handoff          2 threads passing the lock back and forth; the holder
//                    keeps it hold_us after the other thread entered lock(),
//                    so the waiter is spinning (2 µs) or long parked (50 µs).
//                    Latency is cycle_clock from just before unlock() to just
//                    after the waiter's lock() returns, in a histogram:
//                    p50/p99/p999 in cycles and ns.
//   fairness         8 threads, a critical section of about 1 µs and 1 µs
//                    outside it, so the lock (not the CPUs) is the bottleneck
//                    and the lock's policy decides who gets it; fairness is
//                    the slowest thread's acquisitions over the fastest's.
//                    (With a tiny critical section the waiters hardly park
//                    and the ratio measures the CPU scheduler instead.)
// All multithreaded scenarios run their own threads (harness.hpp, run_team)
// for a fixed wall time in one GB iteration: GB would give every thread the
// same iteration count, which hides unfairness and, with more threads than
// cores, lets threads run one after another instead of against each other.
// `--quick` shortens that time; GB's --benchmark_min_time sets the
// uncontended runs. Every scenario that counts through the critical section
// checks the counts afterwards, so a broken lock is an error, not a fast
// result.
#include <mutex>

#include "harness.hpp"
#include "hwsync/mutex.hpp"

namespace hwsync::bench {

template <>
struct lock_traits<hwsync::mutex> {
  static constexpr const char* id = "hwsync_mutex";
};

namespace {

using namespace std::chrono_literals;

constexpr int short_cs_lines = 4;

struct alignas(cache_line) counter_line {
  std::uint64_t value;
};

// The lock on its own line, then the lines the critical section writes.
template <class L>
struct shared_data {
  alignas(cache_line) L lock;
  counter_line lines[short_cs_lines];

  void reset() noexcept {
    for (auto& l : lines) l.value = 0;
  }
  // Plain (non-atomic) writes: only mutual exclusion keeps them exact.
  void touch() noexcept {
    for (auto& l : lines) ++l.value;
  }
  bool consistent(std::uint64_t expected) const noexcept {
    for (const auto& l : lines)
      if (l.value != expected) return false;
    return true;
  }
};

// One instance per lock type and scenario, shared by the threads of a run.
template <class L, int Scenario>
shared_data<L>& shared() {
  static shared_data<L> s;
  return s;
}

enum scenario : int { uncontended_s, contended_s, long_cs_s, handoff_s, fairness_s };

void fail_inconsistent(benchmark::State& state, std::uint64_t expected) {
  const std::string msg = "critical section counters differ from " + std::to_string(expected) +
                          ": mutual exclusion broke";
  state.SkipWithError(msg.c_str());
}

// ---------------------------------------------------------------------------

template <class L>
void bm_uncontended(benchmark::State& state) {
  auto& s = shared<L, uncontended_s>();
  lock_unlock_batches(state, s.lock);
}

// Per-thread acquisition counts of a self-timed run.
struct acquisitions {
  std::uint64_t total = 0, min = 0, max = 0;

  explicit acquisitions(const std::vector<padded<std::uint64_t>>& per_thread) {
    min = ~std::uint64_t{0};
    for (const auto& p : per_thread) {
      total += p.value;
      min = std::min(min, p.value);
      max = std::max(max, p.value);
    }
  }
};

void report_team(benchmark::State& state, const team_result& r, const acquisitions& a) {
  state.SetIterationTime(r.wall_seconds);
  state.SetItemsProcessed(static_cast<std::int64_t>(a.total));
  const double n = a.total ? static_cast<double>(a.total) : 1.0;
  state.counters["acquisitions"] = static_cast<double>(a.total);
  state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
  state.counters["cpu_ns_per_acq"] = r.cpu_seconds * 1e9 / n;
  // Cores kept busy on average: 1.0 is the holder alone.
  state.counters["cpu_utilization"] = r.cpu_seconds / r.wall_seconds;
  state.counters["min_acq"] = static_cast<double>(a.min);
  state.counters["max_acq"] = static_cast<double>(a.max);
  state.counters["fairness"] =
      a.max ? static_cast<double>(a.min) / static_cast<double>(a.max) : 0.0;
  // Context switches per 1000 acquisitions: voluntary ones are parks,
  // involuntary ones preemptions.
  state.counters["vcsw_per_kacq"] = static_cast<double>(r.voluntary_switches) * 1000.0 / n;
  state.counters["ivcsw_per_kacq"] = static_cast<double>(r.involuntary_switches) * 1000.0 / n;
}

// `threads` threads loop lock; touch the shared lines; `cs_units` of work;
// unlock; `outside_units` of work, for the scenario time; then the counts are
// checked against the shared lines.
template <class L, int Scenario>
void run_lock_team(benchmark::State& state, int threads, std::uint64_t cs_units,
                   std::uint64_t outside_units) {
  auto& s = shared<L, Scenario>();
  for (auto _ : state) {
    s.reset();
    std::vector<padded<std::uint64_t>> per_thread(static_cast<std::size_t>(threads));
    const auto r = run_team(threads, opts().scenario_time(), [&](int i, const auto& stop) {
      locker<L> h(s.lock);
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        h.lock();
        s.touch();
        if (cs_units) work::run(cs_units);
        h.unlock();
        ++n;
        if (outside_units) work::run(outside_units);
      }
      per_thread[static_cast<std::size_t>(i)].value = n;
    });
    const acquisitions a(per_thread);
    report_team(state, r, a);
    if (!s.consistent(a.total)) fail_inconsistent(state, a.total);
  }
}

template <class L>
void bm_contended_short(benchmark::State& state) {
  run_lock_team<L, contended_s>(state, static_cast<int>(state.range(0)), 0, 0);
}

template <class L>
void bm_long_cs(benchmark::State& state) {
  run_lock_team<L, long_cs_s>(state, static_cast<int>(state.range(0)), work::units_for(10us),
                              work::units_for(1us));
}

template <class L>
void bm_fairness(benchmark::State& state) {
  run_lock_team<L, fairness_s>(state, static_cast<int>(state.range(0)), work::units_for(1us),
                               work::units_for(1us));
}

// Two threads take turns. A thread waits for its turn without touching the
// lock, announces itself, and calls lock(); the holder sees the announcement,
// keeps the lock `hold` longer (so the waiter is really waiting: spinning or
// parked), stamps the time and unlocks. The waiter's lock() returning is the
// end of the hand-off. Nobody barges: the releasing thread waits for its next
// turn, so every sample is a true hand-off from one thread to the other.
template <class L>
void bm_handoff(benchmark::State& state) {
  constexpr int threads = 2;
  const auto hold = cycle_clock::from_duration(std::chrono::microseconds(state.range(0)));
  struct alignas(cache_line) handoff_data {
    alignas(cache_line) L lock;
    alignas(cache_line) std::atomic<cycle_clock::ticks> released{0};
    alignas(cache_line) std::atomic<int> turn{0};
    alignas(cache_line) std::atomic<int> waiting{-1};
  };
  for (auto _ : state) {
    auto d = std::make_unique<handoff_data>();
    std::vector<cycle_histogram> hist(threads);
    std::vector<padded<std::uint64_t>> per_thread(threads);
    const auto r = run_team(threads, opts().scenario_time(), [&](int me, const auto& stop) {
      const int other = 1 - me;
      locker<L> h(d->lock);
      auto& mine = hist[static_cast<std::size_t>(me)];
      std::uint64_t n = 0;
      for (;;) {
        if (!await([&] { return d->turn.load(std::memory_order_acquire) == me; }, stop)) break;
        d->waiting.store(me, std::memory_order_release);
        h.lock();
        const auto acquired = cycle_clock::now();
        // Written before the other thread's unlock(), so ordered by the lock.
        const auto released = d->released.load(std::memory_order_relaxed);
        if (released != 0) mine.record(acquired > released ? acquired - released : 0);
        ++n;
        d->turn.store(other, std::memory_order_release);
        if (await([&] { return d->waiting.load(std::memory_order_acquire) == other; }, stop))
          hold_for(hold);
        d->released.store(cycle_clock::now(), std::memory_order_relaxed);
        h.unlock();
      }
      per_thread[static_cast<std::size_t>(me)].value = n;
    });
    cycle_histogram all;
    for (const auto& x : hist) all.merge(x);
    report_team(state, r, acquisitions(per_thread));
    record_latency(state, all);
  }
}

// ---------------------------------------------------------------------------

// Not a lock a user would pick: the cheapest code with the shape the
// foundation issue fixes for hwsync::mutex — a 4-byte word, lock() one CAS,
// unlock() one atomic RMW — and nothing else (no waiter bits, no parking).
// Its uncontended cycles are the floor of that shape on this CPU, so the
// report can tell how much of hwsync::mutex's uncontended cost is the
// design and how much is the implementation.
class cas_fetch_sub_floor {
 public:
  void lock() noexcept {
    std::uint32_t expected = 0;
    while (!word_.compare_exchange_weak(expected, 1, std::memory_order_acquire,
                                        std::memory_order_relaxed))
      expected = 0;
  }
  void unlock() noexcept { word_.fetch_sub(1, std::memory_order_release); }

 private:
  std::atomic<std::uint32_t> word_{0};
};

template <class... Locks>
struct lock_list {};

using peers = lock_list<hwsync::mutex, std::mutex, pthread_default, pthread_adaptive,
                        tbb::spin_mutex, tbb::queuing_mutex, tbb::mutex, ttas_spinlock>;

std::string name(const char* scenario, const char* lock) {
  return std::string("mutex/") + scenario + "/" + lock;
}

// Registered scenario by scenario and, within one, thread count by thread
// count, all locks side by side: the locks compared in one row of the report
// ran within seconds of each other, so a drift in the machine's load moves
// them together.
template <class... Locks>
void register_all(lock_list<Locks...>) {
  (benchmark::RegisterBenchmark(name("uncontended", lock_traits<Locks>::id).c_str(),
                                bm_uncontended<Locks>),
   ...);
  benchmark::RegisterBenchmark(name("uncontended_floor", "cas_fetch_sub").c_str(),
                               bm_uncontended<cas_fetch_sub_floor>);

  // Self-timed: one iteration is one fixed-time run. The argument is in the
  // name so the report can read it ("threads:8", "hold_us:2").
  auto self_timed = [](benchmark::internal::Benchmark* b, const char* arg, int value) {
    b->ArgName(arg)->Arg(value)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  for (int threads : {1, 2, 4, 8, 16, 32}) {
    (self_timed(
         benchmark::RegisterBenchmark(name("contended_short", lock_traits<Locks>::id).c_str(),
                                      bm_contended_short<Locks>),
         "threads", threads),
     ...);
  }
  (self_timed(benchmark::RegisterBenchmark(name("long_cs", lock_traits<Locks>::id).c_str(),
                                           bm_long_cs<Locks>),
              "threads", 8),
   ...);
  for (int hold_us : {2, 50}) {
    (self_timed(benchmark::RegisterBenchmark(name("handoff", lock_traits<Locks>::id).c_str(),
                                             bm_handoff<Locks>),
                "hold_us", hold_us),
     ...);
  }
  (self_timed(benchmark::RegisterBenchmark(name("fairness", lock_traits<Locks>::id).c_str(),
                                           bm_fairness<Locks>),
              "threads", 8),
   ...);
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv,
                                   [] { hwsync::bench::register_all(hwsync::bench::peers{}); });
}
