// The contention profiler (hwsync/lock_profile.hpp): sampled wait and hold
// times per lock, aggregated per thread in log-linear histograms.
#include "hwsync/lock_profile.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "hwsync/cycle_clock.hpp"
#include "hwsync/lock_observer.hpp"
#include "hwsync/log_linear_histogram.hpp"

namespace hwsync {

namespace {

namespace obs = detail::observe;

constexpr std::uint32_t default_period = 16;
std::atomic<std::uint32_t> sample_period{default_period};
// cycle_clock ticks in 1 µs: a sampled wait this long counts as contended.
std::atomic<std::uint64_t> contended_ticks{0};

struct lock_stats {
  detail::log_linear_histogram wait;
  detail::log_linear_histogram hold;
  std::uint64_t contended = 0;

  void merge(const lock_stats& o) {
    wait.merge(o.wait);
    hold.merge(o.hold);
    contended += o.contended;
  }
};

using stats_map = std::unordered_map<const void*, lock_stats>;

// A thread's own table: it records under its own mutex, which only
// snapshots, retirements and the thread's exit ever contend for.
struct thread_table {
  std::mutex m;
  stats_map locks;
};

struct profile_tables {
  std::mutex m;  // before any thread_table::m
  std::vector<thread_table*> threads;
  stats_map exited;  // merged from threads that have exited
  std::vector<lock_profile_entry> retired;
};
profile_tables& tables() {
  static auto* t = new profile_tables;  // never destroyed: locks die after main
  return *t;
}

void merge_into(stats_map& to, const stats_map& from) {
  for (const auto& [lock, st] : from) to[lock].merge(st);
}

// As the hooks' thread state (src/lock_order.cpp): a pointer in static TLS,
// the table on the heap, merged into `exited` when the thread ends.
thread_local thread_table* tls_table __attribute__((tls_model("initial-exec"))) = nullptr;
thread_local bool tls_table_exited __attribute__((tls_model("initial-exec"))) = false;

struct thread_table_owner {
  std::unique_ptr<thread_table> table;
  ~thread_table_owner() {
    tls_table = nullptr;
    tls_table_exited = true;
    if (!table) return;
    profile_tables& t = tables();
    std::lock_guard guard(t.m);
    std::erase(t.threads, table.get());
    std::lock_guard own(table->m);
    merge_into(t.exited, table->locks);
  }
};

thread_table* this_thread_table() {
  if (tls_table != nullptr) [[likely]]
    return tls_table;
  if (tls_table_exited) return nullptr;
  thread_local thread_table_owner owner;
  owner.table = std::make_unique<thread_table>();
  profile_tables& t = tables();
  std::lock_guard guard(t.m);
  t.threads.push_back(owner.table.get());
  tls_table = owner.table.get();
  return tls_table;
}

lock_time_summary summarize(const detail::log_linear_histogram& h) {
  return {h.count(),          h.total(),           h.percentile(0.5),
          h.percentile(0.99), h.percentile(0.999), h.max()};
}

lock_profile_entry entry_of(const void* lock, const lock_stats& s) {
  lock_profile_entry e;
  e.lock = lock;
  e.sampled_acquisitions = s.wait.count();
  e.contended = s.contended;
  e.wait = summarize(s.wait);
  e.hold = summarize(s.hold);
  return e;
}

void print_at_exit() {
  const std::string text = snapshot_lock_profile().text();
  std::fwrite(text.data(), 1, text.size(), stderr);
}

// HWSYNC_LOCKPROF and HWSYNC_LOCKPROF_PERIOD, read when the library loads.
[[maybe_unused]] const bool environment_read = [] {
  std::uint32_t period = default_period;
  if (const char* p = std::getenv("HWSYNC_LOCKPROF_PERIOD"); p != nullptr && *p != '\0') {
    char* end = nullptr;
    const unsigned long v = std::strtoul(p, &end, 10);
    if (*end != '\0' || v == 0 || v > 1u << 30 || *p == '-') {
      std::fprintf(stderr,
                   "hwsync: HWSYNC_LOCKPROF_PERIOD=\"%s\": expected a whole number from 1 to "
                   "2^30 (sample one acquisition in that many); using %u\n",
                   p, default_period);
    } else {
      period = static_cast<std::uint32_t>(v);
    }
  }
  const char* v = std::getenv("HWSYNC_LOCKPROF");
  if (v == nullptr || std::strcmp(v, "") == 0 || std::strcmp(v, "0") == 0) return true;
  if (std::strcmp(v, "1") == 0) {
    enable_lock_profiling(period);
    std::atexit(print_at_exit);
  } else {
    std::fprintf(stderr,
                 "hwsync: HWSYNC_LOCKPROF=\"%s\": expected 1 (profile lock contention, report "
                 "at exit) or 0 (off); the profiler stays off\n",
                 v);
  }
  return true;
}();

std::string micros(std::uint64_t ticks, double tps) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(ticks) * 1e6 / tps);
  return buf;
}

void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

void append_summary(std::string& out, const lock_time_summary& s) {
  out += "{\"count\":" + std::to_string(s.count) + ",\"total\":" + std::to_string(s.total) +
         ",\"p50\":" + std::to_string(s.p50) + ",\"p99\":" + std::to_string(s.p99) +
         ",\"p999\":" + std::to_string(s.p999) + ",\"max\":" + std::to_string(s.max) + "}";
}

}  // namespace

namespace detail::profile {

std::uint32_t period() noexcept {
  return sample_period.load(std::memory_order_relaxed);
}

void record(const void* lock, std::uint64_t wait_ticks, std::uint64_t hold_ticks) {
  thread_table* table = this_thread_table();
  if (table == nullptr) return;  // the thread is exiting
  std::lock_guard guard(table->m);
  lock_stats& st = table->locks[lock];
  st.wait.record(wait_ticks);
  st.hold.record(hold_ticks);
  if (wait_ticks >= contended_ticks.load(std::memory_order_relaxed)) ++st.contended;
  if (st.wait.count() == 1) obs::flag_word.fetch_or(obs::entries_bit, std::memory_order_relaxed);
}

void retire(const void* lock) {
  profile_tables& t = tables();
  std::lock_guard guard(t.m);
  lock_stats merged;
  bool found = false;
  auto take = [&](stats_map& from) {
    const auto it = from.find(lock);
    if (it == from.end()) return;
    merged.merge(it->second);
    from.erase(it);
    found = true;
  };
  for (thread_table* table : t.threads) {
    std::lock_guard own(table->m);
    take(table->locks);
  }
  take(t.exited);
  if (!found) return;
  lock_profile_entry e = entry_of(lock, merged);
  e.name = lock_name(lock);  // the caller drops the name after this
  e.destroyed = true;
  t.retired.push_back(std::move(e));
}

}  // namespace detail::profile

void enable_lock_profiling(std::uint32_t period) noexcept {
  sample_period.store(std::max<std::uint32_t>(period, 1), std::memory_order_relaxed);
  contended_ticks.store(static_cast<std::uint64_t>(cycle_clock::ticks_per_second() / 1e6),
                        std::memory_order_relaxed);
  obs::switch_on(obs::profile_bit);
}

void disable_lock_profiling() noexcept {
  obs::flag_word.fetch_and(~obs::profile_bit, std::memory_order_seq_cst);
}

bool lock_profiling_enabled() noexcept {
  return (obs::flag_word.load(std::memory_order_relaxed) & obs::profile_bit) != 0;
}

lock_profile_snapshot snapshot_lock_profile() {
  lock_profile_snapshot snap;
  snap.ticks_per_second = cycle_clock::ticks_per_second();
  snap.sample_period = sample_period.load(std::memory_order_relaxed);
  profile_tables& t = tables();
  {
    std::lock_guard guard(t.m);
    stats_map all = t.exited;
    for (thread_table* table : t.threads) {
      std::lock_guard own(table->m);
      merge_into(all, table->locks);
    }
    for (const auto& [lock, st] : all) snap.locks.push_back(entry_of(lock, st));
    snap.locks.insert(snap.locks.end(), t.retired.begin(), t.retired.end());
  }
  for (lock_profile_entry& e : snap.locks) {
    if (!e.destroyed) e.name = lock_name(e.lock);
  }
  std::sort(snap.locks.begin(), snap.locks.end(),
            [](const lock_profile_entry& a, const lock_profile_entry& b) {
              if (a.wait.total != b.wait.total) return a.wait.total > b.wait.total;
              return std::less<const void*>()(a.lock, b.lock);
            });
  return snap;
}

void reset_lock_profile() {
  profile_tables& t = tables();
  std::lock_guard guard(t.m);
  for (thread_table* table : t.threads) {
    std::lock_guard own(table->m);
    table->locks.clear();
  }
  t.exited.clear();
  t.retired.clear();
}

std::string lock_profile_snapshot::text() const {
  const double tps = ticks_per_second > 0 ? ticks_per_second : 1;
  std::string out = "hwsync lock profile: " + std::to_string(locks.size()) +
                    " locks, one acquisition in " + std::to_string(sample_period) +
                    " sampled, ranked by total wait; times in µs\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-4s %-18s %-20s %9s %9s %11s %9s %9s %9s %9s %9s %9s %9s\n",
                "rank", "lock", "name", "sampled", "contended", "wait total", "wait p50",
                "wait p99", "p99.9", "wait max", "hold p50", "hold p99", "hold max");
  out += line;
  for (std::size_t i = 0; i < locks.size(); ++i) {
    const lock_profile_entry& e = locks[i];
    char address[32];
    std::snprintf(address, sizeof address, "%p", e.lock);
    std::string name = e.name.empty() ? "-" : e.name;
    if (e.destroyed) name += " (destroyed)";
    std::snprintf(line, sizeof line,
                  "%-4zu %-18s %-20s %9llu %9llu %11s %9s %9s %9s %9s %9s %9s %9s\n", i + 1,
                  address, name.c_str(), static_cast<unsigned long long>(e.sampled_acquisitions),
                  static_cast<unsigned long long>(e.contended), micros(e.wait.total, tps).c_str(),
                  micros(e.wait.p50, tps).c_str(), micros(e.wait.p99, tps).c_str(),
                  micros(e.wait.p999, tps).c_str(), micros(e.wait.max, tps).c_str(),
                  micros(e.hold.p50, tps).c_str(), micros(e.hold.p99, tps).c_str(),
                  micros(e.hold.max, tps).c_str());
    out += line;
  }
  return out;
}

std::string lock_profile_snapshot::json() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", ticks_per_second);
  std::string out = std::string("{\"ticks_per_second\":") + buf +
                    ",\"sample_period\":" + std::to_string(sample_period) + ",\"locks\":[";
  for (std::size_t i = 0; i < locks.size(); ++i) {
    const lock_profile_entry& e = locks[i];
    if (i != 0) out += ',';
    std::snprintf(buf, sizeof buf, "\"%p\"", e.lock);
    out += std::string("{\"lock\":") + buf + ",\"name\":";
    append_json_string(out, e.name);
    out += std::string(",\"destroyed\":") + (e.destroyed ? "true" : "false") +
           ",\"sampled_acquisitions\":" + std::to_string(e.sampled_acquisitions) +
           ",\"contended\":" + std::to_string(e.contended) + ",\"wait\":";
    append_summary(out, e.wait);
    out += ",\"hold\":";
    append_summary(out, e.hold);
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace hwsync
