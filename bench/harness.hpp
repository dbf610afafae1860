// bench/harness.hpp — what every hwsync benchmark binary shares.
//
// Each bench/<primitive>_bench.cpp measures one hwsync primitive beside its
// std, glibc and oneTBB peers in one Google Benchmark (GB) binary, so every
// comparison in perf/out/report.md is a ratio taken in one run on one
// machine. This header holds the pieces that make those binaries measure the
// same way and name their results the same way:
//
//   cycle_histogram   log-linear histogram of cycle counts (32 sub-buckets per
//                     power of two: every percentile is within 1.6% of the
//                     true sample), merged across threads after a run.
//   ttas_spinlock     the plain test-and-test-and-set baseline.
//   pthread_lock<T>   a glibc pthread_mutex_t of type T as a Lockable.
//   locker<L>         one thread's handle on a shared lock: lock()/unlock()
//                     for every peer, including tbb::queuing_mutex, whose
//                     queue node must live from acquire to release.
//   lock_traits<L>    the id of each lock in benchmark names
//                     ("<primitive>/<scenario>/<lock id>/...").
//   pthread_rwlock<K>, shared_locker<L>
//                     the reader-writer peers: glibc's pthread_rwlock_t of a
//                     kind as a SharedLockable, and one thread's handle with
//                     lock()/unlock()/lock_shared()/unlock_shared() for every
//                     reader-writer peer, including tbb::queuing_rw_mutex.
//   work              busy work calibrated in cycle_clock ticks, for critical
//                     sections of a given length.
//   batch_timer       times each batch of a single-threaded GB loop with
//                     cycle_clock: cycles_per_op from the median batch.
//   run_team          N std::threads started together and stopped after a
//                     fixed wall time, with wall ticks and process CPU time:
//                     every multithreaded scenario runs on it, because GB's
//                     equal-iterations-per-thread model hides unfairness and
//                     misstates throughput once threads outnumber cores.
//   options, context  `--quick` (shorter self-timed scenarios) and the JSON
//                     context the report prints (tsc_hz, cpu_model, kernel,
//                     hwsync_version).
#pragma once

#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <oneapi/tbb/mutex.h>
#include <oneapi/tbb/queuing_mutex.h>
#include <oneapi/tbb/queuing_rw_mutex.h>
#include <oneapi/tbb/rw_mutex.h>
#include <oneapi/tbb/spin_mutex.h>
#include <oneapi/tbb/spin_rw_mutex.h>

#include "hwsync/config.hpp"
#include "hwsync/cycle_clock.hpp"

namespace hwsync::bench {

inline constexpr std::size_t cache_line = 64;

// A value alone on its cache line, so per-thread results and shared counters
// never false-share and distort what is measured.
template <class T>
struct alignas(cache_line) padded {
  T value{};
};

// ---------------------------------------------------------------------------
// cycle_histogram

class cycle_histogram {
 public:
  static constexpr unsigned sub_bits = 5;
  static constexpr std::uint64_t sub_count = 1u << sub_bits;
  static constexpr std::size_t bucket_count = (64 - sub_bits + 1) * sub_count;

  void record(std::uint64_t v) noexcept {
    ++buckets_[index(v)];
    ++count_;
    sum_ += static_cast<double>(v);
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }

  void merge(const cycle_histogram& o) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) buckets_[i] += o.buckets_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }

  // The value at percentile p (0 < p <= 100): the midpoint of the bucket
  // holding the ceil(p% * count)-th smallest sample, clamped to the exact
  // extremes so p100 is the true maximum. 0 for an empty histogram.
  std::uint64_t percentile(double p) const noexcept {
    if (count_ == 0) return 0;
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(p / 100.0 * static_cast<double>(count_) + 0.999999));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += buckets_[i];
      if (seen >= rank) {
        const std::uint64_t mid = lower_bound(i) + (width(i) - 1) / 2;
        return std::clamp(mid, min_, max_);
      }
    }
    return max_;
  }

  // Bucket layout: values below sub_count are exact; above, each power of two
  // [2^m, 2^(m+1)) is split into sub_count equal buckets.
  static std::size_t index(std::uint64_t v) noexcept {
    if (v < sub_count) return static_cast<std::size_t>(v);
    const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
    const unsigned shift = msb - sub_bits;
    return static_cast<std::size_t>((shift + 1) * sub_count + ((v >> shift) - sub_count));
  }
  static std::uint64_t lower_bound(std::size_t i) noexcept {
    if (i < sub_count) return i;
    const std::uint64_t shift = i / sub_count - 1;
    return (sub_count + i % sub_count) << shift;
  }
  static std::uint64_t width(std::size_t i) noexcept {
    return i < sub_count ? 1 : std::uint64_t{1} << (i / sub_count - 1);
  }

 private:
  std::array<std::uint64_t, bucket_count> buckets_{};
  std::uint64_t count_ = 0;
  double sum_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
};

// ---------------------------------------------------------------------------
// Locks that are not hwsync's, as Lockables.

// Test-and-test-and-set: waiters spin on a plain load (the line stays shared
// in their caches) and only attempt the exchange when the lock looks free.
// No backoff, no yield, no parking: the baseline every smarter lock must beat.
class ttas_spinlock {
 public:
  void lock() noexcept {
    for (;;) {
      while (flag_.load(std::memory_order_relaxed)) __builtin_ia32_pause();
      if (!flag_.exchange(true, std::memory_order_acquire)) return;
    }
  }
  bool try_lock() noexcept {
    return !flag_.load(std::memory_order_relaxed) &&
           !flag_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> flag_{false};
};

// glibc's pthread_mutex_t of a given type (PTHREAD_MUTEX_DEFAULT: what
// std::mutex wraps; PTHREAD_MUTEX_ADAPTIVE_NP: spins up to
// glibc.pthread.mutex_spin_count times before it parks).
template <int Type>
class pthread_lock {
 public:
  pthread_lock() noexcept {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, Type);
    pthread_mutex_init(&m_, &attr);
    pthread_mutexattr_destroy(&attr);
  }
  ~pthread_lock() { pthread_mutex_destroy(&m_); }
  pthread_lock(const pthread_lock&) = delete;
  pthread_lock& operator=(const pthread_lock&) = delete;

  void lock() noexcept { pthread_mutex_lock(&m_); }
  bool try_lock() noexcept { return pthread_mutex_trylock(&m_) == 0; }
  void unlock() noexcept { pthread_mutex_unlock(&m_); }

 private:
  pthread_mutex_t m_;
};

using pthread_default = pthread_lock<PTHREAD_MUTEX_DEFAULT>;
using pthread_adaptive = pthread_lock<PTHREAD_MUTEX_ADAPTIVE_NP>;

// One thread's handle on a shared lock. Benchmarks lock through it, so that
// locks whose API is not Lockable need one specialization here and nothing
// in the scenarios.
template <class L>
class locker {
 public:
  explicit locker(L& l) noexcept : l_(l) {}
  void lock() { l_.lock(); }
  void unlock() { l_.unlock(); }

 private:
  L& l_;
};

// MCS queue lock: the scoped_lock is this thread's queue node.
template <>
class locker<tbb::queuing_mutex> {
 public:
  explicit locker(tbb::queuing_mutex& m) noexcept : m_(m) {}
  void lock() { node_.acquire(m_); }
  void unlock() { node_.release(); }

 private:
  tbb::queuing_mutex& m_;
  tbb::queuing_mutex::scoped_lock node_;
};

// The id of a lock in benchmark names: no spaces, no regex metacharacters, so
// `--benchmark_filter=<id>` works. A bench file adds its hwsync types.
template <class L>
struct lock_traits;

template <>
struct lock_traits<std::mutex> {
  static constexpr const char* id = "std_mutex";
};
template <>
struct lock_traits<pthread_default> {
  static constexpr const char* id = "pthread_default";
};
template <>
struct lock_traits<pthread_adaptive> {
  static constexpr const char* id = "pthread_adaptive";
};
template <>
struct lock_traits<tbb::spin_mutex> {
  static constexpr const char* id = "tbb_spin_mutex";
};
template <>
struct lock_traits<tbb::queuing_mutex> {
  static constexpr const char* id = "tbb_queuing_mutex";
};
template <>
struct lock_traits<tbb::mutex> {
  static constexpr const char* id = "tbb_mutex";
};
template <>
struct lock_traits<ttas_spinlock> {
  static constexpr const char* id = "ttas_spinlock";
};

// ---------------------------------------------------------------------------
// Reader-writer locks that are not hwsync's

// glibc's pthread_rwlock_t of a given kind: PTHREAD_RWLOCK_PREFER_READER_NP
// (the default, and what std::shared_mutex wraps: waiting writers do not
// hold back new readers) or PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP.
template <int Kind>
class pthread_rwlock {
 public:
  pthread_rwlock() noexcept {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, Kind);
    pthread_rwlock_init(&l_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~pthread_rwlock() { pthread_rwlock_destroy(&l_); }
  pthread_rwlock(const pthread_rwlock&) = delete;
  pthread_rwlock& operator=(const pthread_rwlock&) = delete;

  void lock() noexcept { pthread_rwlock_wrlock(&l_); }
  bool try_lock() noexcept { return pthread_rwlock_trywrlock(&l_) == 0; }
  void unlock() noexcept { pthread_rwlock_unlock(&l_); }
  void lock_shared() noexcept { pthread_rwlock_rdlock(&l_); }
  bool try_lock_shared() noexcept { return pthread_rwlock_tryrdlock(&l_) == 0; }
  void unlock_shared() noexcept { pthread_rwlock_unlock(&l_); }

 private:
  pthread_rwlock_t l_;
};

using pthread_rwlock_default = pthread_rwlock<PTHREAD_RWLOCK_PREFER_READER_NP>;
using pthread_rwlock_prefer_writer = pthread_rwlock<PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP>;

// One thread's handle on a shared reader-writer lock, as locker<L> is for
// mutexes.
template <class L>
class shared_locker {
 public:
  explicit shared_locker(L& l) noexcept : l_(l) {}
  void lock() { l_.lock(); }
  void unlock() { l_.unlock(); }
  void lock_shared() { l_.lock_shared(); }
  void unlock_shared() { l_.unlock_shared(); }

 private:
  L& l_;
};

// Queue-based reader-writer lock: the scoped_lock is this thread's queue
// node, in either mode.
template <>
class shared_locker<tbb::queuing_rw_mutex> {
 public:
  explicit shared_locker(tbb::queuing_rw_mutex& m) noexcept : m_(m) {}
  void lock() { node_.acquire(m_, true); }
  void unlock() { node_.release(); }
  void lock_shared() { node_.acquire(m_, false); }
  void unlock_shared() { node_.release(); }

 private:
  tbb::queuing_rw_mutex& m_;
  tbb::queuing_rw_mutex::scoped_lock node_;
};

template <>
struct lock_traits<std::shared_mutex> {
  static constexpr const char* id = "std_shared_mutex";
};
template <>
struct lock_traits<pthread_rwlock_default> {
  static constexpr const char* id = "pthread_rwlock";
};
template <>
struct lock_traits<pthread_rwlock_prefer_writer> {
  static constexpr const char* id = "pthread_rwlock_prefer_writer";
};
template <>
struct lock_traits<tbb::spin_rw_mutex> {
  static constexpr const char* id = "tbb_spin_rw_mutex";
};
template <>
struct lock_traits<tbb::queuing_rw_mutex> {
  static constexpr const char* id = "tbb_queuing_rw_mutex";
};
template <>
struct lock_traits<tbb::rw_mutex> {
  static constexpr const char* id = "tbb_rw_mutex";
};

// ---------------------------------------------------------------------------
// Calibrated busy work

// A dependent multiply-add chain the compiler can neither fold nor drop: its
// time per unit is stable, and it touches no memory that other threads use.
class work {
 public:
  static void run(std::uint64_t units) noexcept {
    std::uint64_t x = units;
    for (std::uint64_t i = 0; i < units; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      benchmark::DoNotOptimize(x);
    }
  }

  // Units that take about d on an otherwise idle core. Calibrated once (a
  // few ms); call it from main() before any benchmark runs.
  static std::uint64_t units_for(std::chrono::nanoseconds d) {
    static const double units_per_ns = calibrate();
    return std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(units_per_ns * static_cast<double>(d.count())));
  }

 private:
  static double calibrate() {
    constexpr std::uint64_t units = 200'000;
    std::uint64_t best = ~std::uint64_t{0};
    for (int i = 0; i < 7; ++i) {  // the fastest try: the least disturbed
      const auto t0 = cycle_clock::start();
      run(units);
      best = std::min(best, cycle_clock::stop() - t0);
    }
    const double ns = static_cast<double>(best) / cycle_clock::ticks_per_second() * 1e9;
    return static_cast<double>(units) / ns;
  }
};

// Busy-wait for d of wall time (not work): for holds that must last a given
// time whatever the scheduler does meanwhile.
inline void hold_for(cycle_clock::ticks d) noexcept {
  const auto t0 = cycle_clock::now();
  while (cycle_clock::now() - t0 < d) __builtin_ia32_pause();
}

// Waits until pred() holds or stop is raised (then false). Spins for 1 µs,
// then yields: a harness thread waiting for its turn must not hold a CPU
// that the thread it waits for needs (on a 2-core machine with anything else
// running, that wait would otherwise last a whole scheduler tick).
template <class Pred>
bool await(Pred&& pred, const std::atomic<bool>& stop) {
  static const cycle_clock::ticks spin_limit =
      cycle_clock::from_duration(std::chrono::microseconds(1));
  const auto t0 = cycle_clock::now();
  for (;;) {
    if (pred()) return true;
    if (stop.load(std::memory_order_relaxed)) return false;
    if (cycle_clock::now() - t0 < spin_limit) {
      __builtin_ia32_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

// ---------------------------------------------------------------------------
// Counters

// A GB loop's span in cycle_clock ticks, from the start of its first batch to
// the end of its last. Read inside the loop, not around it: GB's start and
// stop barriers run in the loop's begin() and final comparison.
//
// Meant for single-threaded GB benchmarks. Multithreaded ones use run_team
// instead: GB gives every thread the same iteration count and averages the
// threads' own spans, so with more threads than cores the threads partly run
// one after another and the "throughput" can exceed the one-thread rate.
class cycle_span {
 public:
  void begin_once() noexcept {
    if (first_ == 0) [[unlikely]]
      first_ = cycle_clock::now();
  }
  void end() noexcept { last_ = cycle_clock::now(); }
  cycle_clock::ticks ticks() const noexcept { return last_ > first_ ? last_ - first_ : 0; }

 private:
  cycle_clock::ticks first_ = 0;
  cycle_clock::ticks last_ = 0;
};

// The cost of a cycle_clock::start()/stop() pair around nothing: the median
// of many, subtracted from each timed batch.
inline cycle_clock::ticks timer_overhead() {
  static const cycle_clock::ticks overhead = [] {
    cycle_histogram h;
    for (int i = 0; i < 10000; ++i) {
      const auto t0 = cycle_clock::start();
      h.record(cycle_clock::stop() - t0);
    }
    return h.percentile(50);
  }();
  return overhead;
}

// Times each batch of a single-threaded GB loop on its own. The median batch
// is what a lock costs; the mean over the whole span also carries every
// interrupt and preemption the thread suffered, which on a busy machine can
// double it.
class batch_timer {
 public:
  void start() noexcept { t0_ = cycle_clock::start(); }
  void stop() noexcept {
    const auto d = cycle_clock::stop() - t0_;
    const auto o = timer_overhead();
    hist_.record(d > o ? d - o : 0);
    span_.end();
  }
  void begin_once() noexcept { span_.begin_once(); }
  const cycle_histogram& batches() const noexcept { return hist_; }
  const cycle_span& span() const noexcept { return span_; }

 private:
  cycle_clock::ticks t0_ = 0;
  cycle_histogram hist_;
  cycle_span span_;
};

// cycles_per_op (median batch), cycles_per_op_mean (whole span) and
// items_per_second for a single-threaded GB loop timed by batch_timer.
inline void report_batches(benchmark::State& state, const batch_timer& t, std::int64_t batch) {
  state.SetItemsProcessed(state.iterations() * batch);
  const double b = static_cast<double>(batch);
  state.counters["cycles_per_op"] = static_cast<double>(t.batches().percentile(50)) / b;
  state.counters["cycles_per_op_p99"] = static_cast<double>(t.batches().percentile(99)) / b;
  state.counters["cycles_per_op_mean"] =
      benchmark::Counter(static_cast<double>(t.span().ticks()) / b,
                         benchmark::Counter::kAvgThreads | benchmark::Counter::kAvgIterations);
}

// The uncontended scenario every lock bench shares: lock+unlock in batches of
// 256 on one thread, reported by report_batches (cycles_per_op is the median
// batch, timer cost removed, over 256).
template <class L>
void lock_unlock_batches(benchmark::State& state, L& lock) {
  constexpr int batch = 256;
  locker<L> h(lock);
  batch_timer timer;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) {
      h.lock();
      h.unlock();
    }
    timer.stop();
  }
  report_batches(state, timer, batch);
}

inline double ticks_to_ns(double ticks) {
  return ticks / cycle_clock::ticks_per_second() * 1e9;
}

// A latency histogram as counters: samples, p50/p90/p99/p999 in cycles and
// in ns, max_ns and mean_ns. The report reads these names.
inline void record_latency(benchmark::State& state, const cycle_histogram& h) {
  state.counters["samples"] = static_cast<double>(h.count());
  constexpr std::pair<const char*, double> percentiles[] = {
      {"p50", 50.0}, {"p90", 90.0}, {"p99", 99.0}, {"p999", 99.9}};
  for (const auto& [label, p] : percentiles) {
    const auto c = static_cast<double>(h.percentile(p));
    state.counters[std::string(label) + "_cycles"] = c;
    state.counters[std::string(label) + "_ns"] = ticks_to_ns(c);
  }
  state.counters["max_ns"] = ticks_to_ns(static_cast<double>(h.max()));
  state.counters["mean_ns"] = ticks_to_ns(h.mean());
}

// ---------------------------------------------------------------------------
// Self-timed teams

inline double process_cpu_seconds() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct team_result {
  cycle_clock::ticks wall_ticks = 0;
  double wall_seconds = 0;
  double cpu_seconds = 0;  // whole process: user + system, every thread
  // Whole process: a voluntary switch is a thread blocking (a futex park), an
  // involuntary one a thread preempted (its time slice ran out).
  long voluntary_switches = 0;
  long involuntary_switches = 0;
};

inline rusage process_usage() noexcept {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u;
}

// Runs body(index, stop) on `threads` new threads, for `duration`. They are all created and
// parked before the clock starts; `stop` is raised after `duration`, and the
// clocks stop when the last thread has returned, so work done after the stop
// signal is both timed and counted. The calling thread sleeps meanwhile:
// process CPU time is the team's alone.
template <class Body>
team_result run_team(int threads, std::chrono::nanoseconds duration, Body&& body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      ready.fetch_add(1, std::memory_order_release);
      ready.notify_all();
      go.wait(false, std::memory_order_acquire);
      body(i, static_cast<const std::atomic<bool>&>(stop));
    });
  }
  for (int r = ready.load(); r < threads; r = ready.load()) ready.wait(r);

  team_result res;
  const rusage u0 = process_usage();
  const double cpu0 = process_cpu_seconds();
  const auto wall0 = std::chrono::steady_clock::now();
  const auto t0 = cycle_clock::start();
  go.store(true, std::memory_order_release);
  go.notify_all();
  std::this_thread::sleep_for(duration);
  stop.store(true, std::memory_order_relaxed);
  for (auto& t : pool) t.join();
  res.wall_ticks = cycle_clock::stop() - t0;
  res.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  res.cpu_seconds = process_cpu_seconds() - cpu0;
  const rusage u1 = process_usage();
  res.voluntary_switches = u1.ru_nvcsw - u0.ru_nvcsw;
  res.involuntary_switches = u1.ru_nivcsw - u0.ru_nivcsw;
  return res;
}

// ---------------------------------------------------------------------------
// Options and context

struct options {
  bool quick = false;

  // Wall time of one self-timed scenario run.
  std::chrono::milliseconds scenario_time() const {
    return quick ? std::chrono::milliseconds(250) : std::chrono::milliseconds(500);
  }
};

inline options& opts() {
  static options o;
  return o;
}

// Takes this harness's flags out of argv before GB sees it (GB rejects flags
// it does not know): `--quick` shortens the self-timed scenarios. GB's own
// --benchmark_min_time sets the length of the GB-timed ones.
inline void parse_options(int& argc, char** argv) {
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      opts().quick = true;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  argv[argc] = nullptr;
}

inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        const auto start = line.find_first_not_of(' ', colon + 1);
        return start == std::string::npos ? std::string() : line.substr(start);
      }
    }
  }
  return "unknown";
}

// The machine as the report prints it. Calibrates cycle_clock (100 ms+) and
// the busy work, so no benchmark pays for either.
inline void add_context() {
  const double hz = cycle_clock::ticks_per_second();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", hz);
  benchmark::AddCustomContext("tsc_hz", buf);
  benchmark::AddCustomContext("tsc_invariant", cycle_clock::is_invariant_tsc() ? "true" : "false");
  benchmark::AddCustomContext("cpu_model", cpu_model());
  benchmark::AddCustomContext("online_cpus", std::to_string(std::thread::hardware_concurrency()));
  utsname u{};
  if (uname(&u) == 0) benchmark::AddCustomContext("kernel", u.release);
  std::snprintf(buf, sizeof buf, "%d.%d.%d", HWSYNC_VERSION_MAJOR, HWSYNC_VERSION_MINOR,
                HWSYNC_VERSION_PATCH);
  benchmark::AddCustomContext("hwsync_version", buf);
  benchmark::AddCustomContext("hwsync_bench_mode", opts().quick ? "quick" : "full");
  (void)work::units_for(std::chrono::microseconds(1));
  (void)timer_overhead();
}

// main() of a bench binary: harness flags, context, then GB. `register_all`
// registers this binary's benchmarks (after the context, so it may use the
// calibrated clock).
template <class Register>
int bench_main(int argc, char** argv, Register&& register_all) {
  parse_options(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  add_context();
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace hwsync::bench
