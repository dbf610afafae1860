// bench/htm_bench.cpp — htm::elided<hwsync::mutex> beside the plain
// hwsync::mutex it wraps and oneTBB's speculative_spin_mutex, in one binary
// and one run.
//
// Scenarios (names "htm/<scenario>/<lock id>/<arg>:<n>"):
//   uncontended       one thread, lock+unlock in batches of 256; cycles_per_op
//                     is the median batch (less the timer's own cost) over
//                     256. Where RTM is not usable (the backend is off) this
//                     is the cost of elision's one load and branch per lock()
//                     and per unlock(): the target is elided <= 1.05x
//                     plain.
//   contended         2 threads on one lock, a critical section that
//                     increments 4 counters on 4 cache lines, nothing outside
//                     it; cycles_per_op is wall cycles per acquisition of the
//                     team (the inverse of its throughput).
//   contended_paired  the contended scenario for elided and plain in turn,
//                     9 pairs (5 with --quick) of 1/4 of a scenario's time
//                     each, the order swapped every pair; paired_ratio is
//                     the median of the pairs' elided/plain ratios. On the
//                     2-core guest one contended run of either lock lands
//                     in a fast or a slow mode (runs of one binary scatter
//                     0.93-1.22x against each other), so the ratio of two
//                     separately run scenarios cannot resolve 5%; pairs run
//                     back to back can. The report holds this one to the
//                     contended target. hwsync_elided_mutex_scoped: the
//                     same lock held through elided::scoped_lock.
//   read_mostly_table 2 threads on a 1024-slot hash table behind one lock,
//                     95% lookups and 5% updates: where RTM lets readers of
//                     different slots run in parallel; without RTM elided and
//                     plain must be level.
// The detected HTM capabilities (hwsync::htm::capabilities().describe()), the
// backend and what tbb::speculative_spin_mutex compiled to are recorded in the
// benchmark context; perf/report_htm.py prints them in the machine table.
// Every scenario that writes through the lock checks the counts afterwards,
// so a broken lock is an error, not a fast result.
#include <algorithm>
#include <array>
#include <random>
#include <string>
#include <type_traits>

#include "harness.hpp"
#include "hwsync/htm.hpp"
#include "hwsync/mutex.hpp"

namespace hwsync::bench {

// oneTBB's speculative lock is tbb::speculative_spin_mutex: rtm_mutex when
// the compiler targets RTM (__RTM__), else tbb::spin_mutex itself. A type of
// its own here, so its id and its result are its own either way.
struct tbb_speculative {
  tbb::speculative_spin_mutex m;
};
inline constexpr bool tbb_speculative_is_rtm =
    !std::is_same_v<tbb::speculative_spin_mutex, tbb::spin_mutex>;

template <>
class locker<tbb_speculative> {
 public:
  explicit locker(tbb_speculative& l) noexcept : l_(l) {}
  void lock() { node_.acquire(l_.m); }
  void unlock() { node_.release(); }

 private:
  tbb_speculative& l_;
  tbb::speculative_spin_mutex::scoped_lock node_;
};

using elided_mutex = htm::elided<hwsync::mutex>;
// The same elided<hwsync::mutex>, held through its scoped_lock (the release
// tests lock()'s decision instead of a load): contended_paired only.
struct elided_scoped {
  elided_mutex m;
};

template <>
struct lock_traits<hwsync::mutex> {
  static constexpr const char* id = "hwsync_mutex";
};
template <>
struct lock_traits<elided_mutex> {
  static constexpr const char* id = "hwsync_elided_mutex";
};
template <>
struct lock_traits<elided_scoped> {
  static constexpr const char* id = "hwsync_elided_mutex_scoped";
};
template <>
struct lock_traits<tbb_speculative> {
  static constexpr const char* id = "tbb_speculative_spin_mutex";
};

namespace {

constexpr int short_cs_lines = 4;

struct alignas(cache_line) counter_line {
  std::uint64_t value;
};

template <class L>
struct counted_lock {
  alignas(cache_line) L lock;
  counter_line lines[short_cs_lines];

  void reset() noexcept {
    for (auto& l : lines) l.value = 0;
  }
  void touch() noexcept {
    for (auto& l : lines) ++l.value;
  }
  bool consistent(std::uint64_t expected) const noexcept {
    for (const auto& l : lines)
      if (l.value != expected) return false;
    return true;
  }
};

enum scenario : int { uncontended_s, contended_s };

template <class L, int Scenario>
counted_lock<L>& shared() {
  static counted_lock<L> s;
  return s;
}

template <class L>
void bm_uncontended(benchmark::State& state) {
  auto& s = shared<L, uncontended_s>();
  lock_unlock_batches(state, s.lock);
}

std::uint64_t total_of(const std::vector<padded<std::uint64_t>>& per_thread) {
  std::uint64_t t = 0;
  for (const auto& p : per_thread) t += p.value;
  return t;
}

void report_team(benchmark::State& state, const team_result& r, std::uint64_t ops) {
  state.SetIterationTime(r.wall_seconds);
  state.SetItemsProcessed(static_cast<std::int64_t>(ops));
  const double n = ops ? static_cast<double>(ops) : 1.0;
  state.counters["operations"] = static_cast<double>(ops);
  state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
  state.counters["cpu_ns_per_op"] = r.cpu_seconds * 1e9 / n;
}

struct contended_run {
  team_result team;
  std::uint64_t operations = 0;
  bool consistent = true;
  double cycles_per_op() const {
    return static_cast<double>(team.wall_ticks) / static_cast<double>(operations ? operations : 1);
  }
};

template <class L>
contended_run run_contended(int threads, std::chrono::nanoseconds duration) {
  auto& s = shared<L, contended_s>();
  s.reset();
  std::vector<padded<std::uint64_t>> per_thread(static_cast<std::size_t>(threads));
  contended_run out;
  out.team = run_team(threads, duration, [&](int i, const auto& stop) {
    std::uint64_t n = 0;
    if constexpr (std::is_same_v<L, elided_scoped>) {
      while (!stop.load(std::memory_order_relaxed)) {
        {
          elided_mutex::scoped_lock g(s.lock.m);
          s.touch();
        }
        ++n;
      }
    } else {
      locker<L> h(s.lock);
      while (!stop.load(std::memory_order_relaxed)) {
        h.lock();
        s.touch();
        h.unlock();
        ++n;
      }
    }
    per_thread[static_cast<std::size_t>(i)].value = n;
  });
  out.operations = total_of(per_thread);
  out.consistent = s.consistent(out.operations);
  return out;
}

void skip_broken(benchmark::State& state, const contended_run& run) {
  const std::string msg = "critical section counters differ from " +
                          std::to_string(run.operations) + ": mutual exclusion broke";
  state.SkipWithError(msg.c_str());
}

template <class L>
void bm_contended(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    const contended_run run = run_contended<L>(threads, opts().scenario_time());
    report_team(state, run.team, run.operations);
    if (!run.consistent) skip_broken(state, run);
  }
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

template <class Subject, class Plain>
void bm_contended_paired(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int pairs = opts().quick ? 5 : 9;
  const auto each = opts().scenario_time() / 4;
  for (auto _ : state) {
    std::vector<double> ratios, subject, plain;
    double wall = 0;
    for (int i = 0; i < pairs; ++i) {
      contended_run a, b;
      if (i % 2 == 0) {
        a = run_contended<Subject>(threads, each);
        b = run_contended<Plain>(threads, each);
      } else {
        b = run_contended<Plain>(threads, each);
        a = run_contended<Subject>(threads, each);
      }
      if (!a.consistent || !b.consistent) return skip_broken(state, a.consistent ? b : a);
      subject.push_back(a.cycles_per_op());
      plain.push_back(b.cycles_per_op());
      ratios.push_back(a.cycles_per_op() / b.cycles_per_op());
      wall += a.team.wall_seconds + b.team.wall_seconds;
    }
    state.SetIterationTime(wall);
    state.counters["pairs"] = pairs;
    state.counters["paired_ratio"] = median_of(ratios);
    state.counters["paired_ratio_min"] = *std::min_element(ratios.begin(), ratios.end());
    state.counters["paired_ratio_max"] = *std::max_element(ratios.begin(), ratios.end());
    state.counters["cycles_per_op"] = median_of(subject);
    state.counters["plain_cycles_per_op"] = median_of(plain);
  }
}

// One lock over a table of 1024 slots: a lookup reads one slot, an update
// writes one. Transactions touching different slots do not conflict, which
// is what elision on RTM turns into parallel reads.
template <class L>
struct table {
  static constexpr std::size_t slots = 1024;
  struct alignas(16) slot {
    std::uint64_t key;
    std::uint64_t value;
  };
  alignas(cache_line) L lock;
  std::array<slot, slots> data{};
  std::uint64_t updates = 0;  // under the lock

  void reset() {
    for (std::size_t i = 0; i < slots; ++i) data[i] = {i, 0};
    updates = 0;
  }
};

template <class L>
void bm_read_mostly_table(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  static table<L> t;
  for (auto _ : state) {
    t.reset();
    std::vector<padded<std::uint64_t>> per_thread(static_cast<std::size_t>(threads));
    std::vector<padded<std::uint64_t>> updates(static_cast<std::size_t>(threads));
    std::vector<padded<std::uint64_t>> misses(static_cast<std::size_t>(threads));
    const auto r = run_team(threads, opts().scenario_time(), [&](int i, const auto& stop) {
      locker<L> h(t.lock);
      std::minstd_rand rng(static_cast<unsigned>(i) * 7919u + 17u);
      std::uint64_t n = 0, u = 0, miss = 0, found = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t key = rng() % table<L>::slots;
        const bool update = rng() % 100 < 5;
        h.lock();
        auto& s = t.data[key];
        if (s.key != key) {
          ++miss;
        } else if (update) {
          ++s.value;
          ++t.updates;
        } else {
          found += s.value;
        }
        h.unlock();
        u += update ? 1 : 0;
        ++n;
      }
      benchmark::DoNotOptimize(found);
      per_thread[static_cast<std::size_t>(i)].value = n;
      updates[static_cast<std::size_t>(i)].value = u;
      misses[static_cast<std::size_t>(i)].value = miss;
    });
    const std::uint64_t total = total_of(per_thread);
    report_team(state, r, total);
    std::uint64_t sum_values = 0;
    for (const auto& s : t.data) sum_values += s.value;
    const std::uint64_t wanted = total_of(updates);
    if (total_of(misses) != 0 || t.updates != wanted || sum_values != wanted) {
      const std::string msg = "table updates " + std::to_string(t.updates) + " and slot sum " +
                              std::to_string(sum_values) + " differ from " +
                              std::to_string(wanted) + " updates made: mutual exclusion broke";
      state.SkipWithError(msg.c_str());
    }
  }
}

template <class... Locks>
struct lock_list {};
using locks = lock_list<hwsync::mutex, elided_mutex, tbb_speculative>;

std::string name(const char* scenario, const char* lock) {
  return std::string("htm/") + scenario + "/" + lock;
}

void add_htm_context() {
  const htm::capability_report& c = htm::capabilities();  // decided here, not in a timed loop
  benchmark::AddCustomContext("htm_capabilities", c.describe());
  benchmark::AddCustomContext("htm_backend", std::string(htm::to_string(htm::active_backend())));
  benchmark::AddCustomContext("htm_rtm_usable", c.rtm_usable ? "true" : "false");
  benchmark::AddCustomContext("htm_tbb_speculative_spin_mutex",
                              tbb_speculative_is_rtm
                                  ? "tbb::detail::d1::rtm_mutex (compiled with __RTM__)"
                                  : "tbb::spin_mutex (compiled without __RTM__: no speculation)");
}

template <class... Locks>
void register_all(lock_list<Locks...>) {
  add_htm_context();
  (benchmark::RegisterBenchmark(name("uncontended", lock_traits<Locks>::id).c_str(),
                                bm_uncontended<Locks>),
   ...);
  auto self_timed = [](benchmark::internal::Benchmark* b, int threads) {
    b->ArgName("threads")->Arg(threads)->Iterations(1)->UseManualTime()->Unit(
        benchmark::kMillisecond);
  };
  (self_timed(benchmark::RegisterBenchmark(name("contended", lock_traits<Locks>::id).c_str(),
                                           bm_contended<Locks>),
              2),
   ...);
  self_timed(
      benchmark::RegisterBenchmark(name("contended_paired", lock_traits<elided_mutex>::id).c_str(),
                                   bm_contended_paired<elided_mutex, hwsync::mutex>),
      2);
  self_timed(
      benchmark::RegisterBenchmark(name("contended_paired", lock_traits<elided_scoped>::id).c_str(),
                                   bm_contended_paired<elided_scoped, hwsync::mutex>),
      2);
  (self_timed(
       benchmark::RegisterBenchmark(name("read_mostly_table", lock_traits<Locks>::id).c_str(),
                                    bm_read_mostly_table<Locks>),
       2),
   ...);
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv,
                                   [] { hwsync::bench::register_all(hwsync::bench::locks{}); });
}
