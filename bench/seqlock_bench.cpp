// bench/seqlock_bench.cpp — hwsync::seqlock<T> beside the locks a reader
// would otherwise take to read the same small value: std::shared_mutex,
// glibc's pthread_rwlock_t (default kind: readers preferred) and
// hwsync::mutex (exclusive for readers too), all in one binary and one run.
// hwsync::biased_shared_mutex is the main peer the issue names: the other
// way to make reads of read-mostly data cheap.
//
// Every impl guards the same value of 8, 32 or 64 bytes, whose every 8-byte
// word holds the same stamp; each read checks that its copy has equal words,
// so a broken impl is an error, not a fast result. Reads copy the whole value
// out (seqlock: load(); the locks: shared or exclusive lock, copy, unlock);
// writes store a new value (seqlock: store(); the locks: exclusive lock,
// assign, unlock).
//
// Scenarios (names "seqlock/<scenario>/<impl>/bytes:<n>/...", every result
// carries cycles_per_op from cycle_clock):
//   read_uncontended  one thread, reads in batches of 256: what a read costs
//                     when nothing else happens. cycles_per_op is the median
//                     batch (less the timer's own cost) over 256.
//   read_mostly       1, 2, 4, 8 threads for a fixed wall time, each thread
//                     doing reads and, at reads:99, a write every 100th
//                     operation (reads:100: no writer at all). items_per_second
//                     is the team's operations (reads + writes) per second;
//                     cycles_per_op is wall cycles per operation of the whole
//                     team. More threads than the machine's cores is on
//                     purpose: a reader preempted inside a read lock, or a
//                     writer preempted mid-write, is what oversubscription
//                     brings.
// Multithreaded scenarios run on harness.hpp's run_team, as in mutex_bench:
// GB's equal-iterations-per-thread model misstates throughput once threads
// outnumber cores.
#include <mutex>
#include <shared_mutex>

#include "harness.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/seqlock.hpp"
#include "hwsync/shared_mutex.hpp"

namespace hwsync::bench {
namespace {

// The guarded value: Bytes / 8 words, all holding the same stamp.
template <std::size_t Bytes>
struct value {
  static_assert(Bytes % 8 == 0);
  std::uint64_t w[Bytes / 8];

  static value of(std::uint64_t stamp) noexcept {
    value v;
    for (auto& x : v.w) x = stamp;
    return v;
  }
  bool consistent() const noexcept {
    bool ok = true;
    for (const auto x : w) ok &= x == w[0];  // no early exit: every read costs the same
    return ok;
  }
};

// One guarded value per impl: read() copies it out, write() replaces it.
// Each starts on its own cache line, laid out as a user would write it (the
// lock, then the value).
template <std::size_t Bytes>
struct alignas(cache_line) seqlock_guard {
  static constexpr const char* id = "hwsync_seqlock";
  using value_type = value<Bytes>;
  hwsync::seqlock<value<Bytes>> s{value<Bytes>::of(0)};

  value<Bytes> read() noexcept { return s.load(); }
  void write(const value<Bytes>& v) noexcept { s.store(v); }
};

template <class SharedLock, std::size_t Bytes>
struct alignas(cache_line) shared_lock_guard {
  using value_type = value<Bytes>;
  SharedLock m;
  value<Bytes> v = value<Bytes>::of(0);

  value<Bytes> read() {
    std::shared_lock g(m);
    return v;
  }
  void write(const value<Bytes>& nv) {
    std::lock_guard g(m);
    v = nv;
  }
};

template <class Lock, std::size_t Bytes>
struct alignas(cache_line) exclusive_guard {
  using value_type = value<Bytes>;
  Lock m;
  value<Bytes> v = value<Bytes>::of(0);

  value<Bytes> read() {
    std::lock_guard g(m);
    return v;
  }
  void write(const value<Bytes>& nv) {
    std::lock_guard g(m);
    v = nv;
  }
};

template <std::size_t Bytes>
struct std_shared_mutex_guard : shared_lock_guard<std::shared_mutex, Bytes> {
  static constexpr const char* id = lock_traits<std::shared_mutex>::id;
};
template <std::size_t Bytes>
struct pthread_rwlock_guard : shared_lock_guard<pthread_rwlock_default, Bytes> {
  static constexpr const char* id = lock_traits<pthread_rwlock_default>::id;
};
template <std::size_t Bytes>
struct biased_shared_mutex_guard : shared_lock_guard<hwsync::biased_shared_mutex, Bytes> {
  static constexpr const char* id = "hwsync_biased_shared_mutex";
};
template <std::size_t Bytes>
struct hwsync_mutex_guard : exclusive_guard<hwsync::mutex, Bytes> {
  static constexpr const char* id = "hwsync_mutex";
};

// ---------------------------------------------------------------------------

template <class Guard>
void bm_read_uncontended(benchmark::State& state) {
  constexpr int batch = 256;
  auto g = std::make_unique<Guard>();
  batch_timer timer;
  int bad = 0;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) bad += !g->read().consistent();
    timer.stop();
  }
  report_batches(state, timer, batch);
  if (bad != 0) state.SkipWithError("a read returned words that differ: the value was torn");
}

// The threads of a read_mostly run: each does `write_every - 1` reads and
// then one write (write_every 0: reads only), checking `stop` every 16
// operations so the check costs next to nothing even for the seqlock's
// few-cycle reads.
template <class Guard>
void bm_read_mostly(benchmark::State& state, int threads, int reads_percent) {
  const int write_every = reads_percent >= 100 ? 0 : 100 / (100 - reads_percent);
  for (auto _ : state) {
    auto g = std::make_unique<Guard>();
    std::vector<padded<std::uint64_t>> ops(static_cast<std::size_t>(threads));
    std::vector<padded<std::uint64_t>> writes(static_cast<std::size_t>(threads));
    std::atomic<std::uint64_t> torn{0};
    const auto r = run_team(threads, opts().scenario_time(), [&](int i, const auto& stop) {
      std::uint64_t n = 0, w = 0, bad = 0;
      // Stamps unique per thread; the countdown starts at a different phase
      // in each thread so that their writes do not line up.
      std::uint64_t stamp = static_cast<std::uint64_t>(i + 1) << 40;
      int until_write = write_every ? 1 + (i * 37) % write_every : 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int k = 0; k < 16; ++k) {
          if (write_every != 0 && --until_write == 0) {
            until_write = write_every;
            g->write(Guard::value_type::of(++stamp));
            ++w;
          } else {
            bad += !g->read().consistent();
          }
        }
        n += 16;
      }
      ops[static_cast<std::size_t>(i)].value = n;
      writes[static_cast<std::size_t>(i)].value = w;
      torn.fetch_add(bad, std::memory_order_relaxed);
    });
    std::uint64_t total = 0, total_writes = 0, min_ops = ~std::uint64_t{0}, max_ops = 0;
    for (int i = 0; i < threads; ++i) {
      const auto n = ops[static_cast<std::size_t>(i)].value;
      total += n;
      total_writes += writes[static_cast<std::size_t>(i)].value;
      min_ops = std::min(min_ops, n);
      max_ops = std::max(max_ops, n);
    }
    state.SetIterationTime(r.wall_seconds);
    state.SetItemsProcessed(static_cast<std::int64_t>(total));
    const double n = total ? static_cast<double>(total) : 1.0;
    state.counters["ops"] = static_cast<double>(total);
    state.counters["writes"] = static_cast<double>(total_writes);
    state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
    state.counters["cpu_ns_per_op"] = r.cpu_seconds * 1e9 / n;
    state.counters["cpu_utilization"] = r.cpu_seconds / r.wall_seconds;
    state.counters["fairness"] =
        max_ops ? static_cast<double>(min_ops) / static_cast<double>(max_ops) : 0.0;
    // Voluntary context switches per 1000 operations: readers or writers
    // that blocked (parked).
    state.counters["vcsw_per_kop"] = static_cast<double>(r.voluntary_switches) * 1000.0 / n;
    if (torn.load() != 0) {
      const std::string msg = std::to_string(torn.load()) + " of " + std::to_string(total) +
                              " reads returned words that differ: the value was torn";
      state.SkipWithError(msg.c_str());
    }
  }
}

// ---------------------------------------------------------------------------

template <template <std::size_t> class... Guards>
struct impl_list {};

// biased_shared_mutex goes here when it exists.
using impls = impl_list<seqlock_guard, biased_shared_mutex_guard, std_shared_mutex_guard,
                        pthread_rwlock_guard, hwsync_mutex_guard>;

std::string name(const char* scenario, const char* impl, std::size_t bytes) {
  return std::string("seqlock/") + scenario + "/" + impl + "/bytes:" + std::to_string(bytes);
}

template <std::size_t Bytes, template <std::size_t> class... Guards>
void register_uncontended(impl_list<Guards...>) {
  (benchmark::RegisterBenchmark(name("read_uncontended", Guards<Bytes>::id, Bytes).c_str(),
                                bm_read_uncontended<Guards<Bytes>>),
   ...);
}

// All impls side by side for each (bytes, reads, threads): the impls compared
// in one row of the report ran within seconds of each other.
template <std::size_t Bytes, template <std::size_t> class... Guards>
void register_read_mostly(impl_list<Guards...>, int reads, int threads) {
  (benchmark::RegisterBenchmark((name("read_mostly", Guards<Bytes>::id, Bytes) + "/reads:" +
                                 std::to_string(reads) + "/threads:" + std::to_string(threads))
                                    .c_str(),
                                bm_read_mostly<Guards<Bytes>>, threads, reads)
       ->Iterations(1)
       ->UseManualTime()
       ->Unit(benchmark::kMillisecond),
   ...);
}

template <std::size_t... Bytes>
void register_all(std::index_sequence<Bytes...>) {
  (register_uncontended<Bytes>(impls{}), ...);
  for (int reads : {100, 99})
    for (int threads : {1, 2, 4, 8}) (register_read_mostly<Bytes>(impls{}, reads, threads), ...);
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(
      argc, argv, [] { hwsync::bench::register_all(std::index_sequence<8, 32, 64>{}); });
}
