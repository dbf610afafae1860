// The lock observers' hooks (hwsync/lock_observer.hpp): the flag word, the
// per-thread held-lock stack, the lock names, and the lock-order checker
// (hwsync/lock_order.hpp). Samples go to src/lock_profile.cpp.
#include "hwsync/lock_order.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "hwsync/cycle_clock.hpp"
#include "hwsync/lock_observer.hpp"
#include "hwsync/lock_profile.hpp"

namespace hwsync {

namespace detail::observe {
// Constant-initialized, so hooks running during other libraries' static
// initialization see 0.
std::atomic<std::uint32_t> flag_word{0};
}  // namespace detail::observe

namespace {

namespace obs = detail::observe;

// Bumped before the observers are switched on: a thread whose stack was
// filled under an earlier epoch may have missed releases while they were off,
// so it starts again from an empty stack.
std::atomic<std::uint64_t> observer_epoch{1};

// Bumped whenever an edge leaves the graph (a lock destroyed, a reset):
// threads' edge caches are only valid for the generation they were filled in.
std::atomic<std::uint64_t> graph_generation{1};

std::atomic<std::uint64_t> cycles_reported{0};
std::atomic<std::uint64_t> held_overflows{0};

constexpr std::size_t held_capacity = 64;
constexpr std::size_t edge_cache_size = 256;
constexpr int stack_depth = 24;

struct held_lock {
  const void* lock;
  const void* site;          // return address of its acquisition
  std::uint64_t hold_start;  // cycle_clock ticks if sampled, else 0
  std::uint64_t wait;        // of a sampled acquisition
};

struct cached_edge {
  const void* from;
  const void* to;
  std::uint64_t generation;
};

struct thread_state {
  held_lock held[held_capacity];
  std::size_t depth = 0;      // tracked entries
  std::size_t untracked = 0;  // acquisitions beyond the capacity, still held
  std::uint64_t epoch = 0;
  std::uint32_t sample_countdown = 1;
  std::uint64_t random = 0;  // xorshift64 state, seeded at creation
  bool busy = false;         // inside the checker's callback: acquisitions are not observed
  cached_edge cache[edge_cache_size] = {};
};

// Only a pointer and a flag in static TLS (initial-exec: no call to reach
// them), so the library can also be dlopen'ed; the state itself is on the
// heap, created by a thread's first observed acquisition.
thread_local thread_state* tls_state __attribute__((tls_model("initial-exec"))) = nullptr;
thread_local bool tls_exited __attribute__((tls_model("initial-exec"))) = false;

struct thread_state_owner {
  std::unique_ptr<thread_state> state;
  ~thread_state_owner() {
    tls_state = nullptr;
    tls_exited = true;  // locks taken by later thread_local destructors are not observed
  }
};

thread_state* this_thread_state() noexcept {
  if (tls_state != nullptr) [[likely]]
    return tls_state;
  if (tls_exited) return nullptr;
  thread_local thread_state_owner owner;
  owner.state = std::make_unique<thread_state>();
  owner.state->random =
      (reinterpret_cast<std::uintptr_t>(owner.state.get()) ^ cycle_clock::now()) | 1;
  tls_state = owner.state.get();
  return tls_state;
}

void sync_epoch(thread_state& ts) noexcept {
  const std::uint64_t e = observer_epoch.load(std::memory_order_acquire);
  if (ts.epoch != e) {
    ts.epoch = e;
    ts.depth = 0;
    ts.untracked = 0;
    ts.sample_countdown = 1;  // a new period applies from the first acquisition
  }
}

pid_t this_thread_id() noexcept {
  return static_cast<pid_t>(syscall(SYS_gettid));
}

std::string this_thread_name() {
  char name[32] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

// Names ---------------------------------------------------------------------

struct name_registry {
  std::mutex m;
  std::unordered_map<const void*, std::string> names;
};
name_registry& names() {
  static auto* r = new name_registry;  // never destroyed: locks die after main
  return *r;
}

// The graph -----------------------------------------------------------------

struct edge_info {
  const void* held_at;
  const void* acquired_at;
  std::vector<void*> stack;
  pid_t thread;
  std::string thread_name;
};

struct node {
  std::unordered_map<const void*, edge_info> out;
  std::unordered_set<const void*> in;
};

struct order_graph {
  std::mutex m;
  std::unordered_map<const void*, node> nodes;
  std::uint64_t edges = 0;
  lock_order_action action = lock_order_action::log;
  std::function<void(const lock_order_report&)> callback;
};
order_graph& graph() {
  static auto* g = new order_graph;
  return *g;
}

std::size_t cache_index(const void* from, const void* to) noexcept {
  std::uint64_t h = reinterpret_cast<std::uintptr_t>(from) * 0x9E3779B97F4A7C15ull ^
                    reinterpret_cast<std::uintptr_t>(to);
  h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull;
  return static_cast<std::size_t>(h >> 56);  // 8 bits: 256 entries
}
static_assert(edge_cache_size == 256);

// A path to -> ... -> from in g (g.m held), as the list of its nodes, or
// empty if none.
std::vector<const void*> find_path(order_graph& g, const void* start, const void* goal) {
  std::unordered_map<const void*, const void*> parent{{start, nullptr}};
  std::vector<const void*> todo{start};
  while (!todo.empty()) {
    const void* n = todo.back();
    todo.pop_back();
    if (n == goal) {
      std::vector<const void*> path;
      for (const void* p = goal; p != nullptr; p = parent[p]) path.push_back(p);
      return {path.rbegin(), path.rend()};
    }
    const auto it = g.nodes.find(n);
    if (it == g.nodes.end()) continue;
    for (const auto& [next, info] : it->second.out) {
      if (parent.emplace(next, n).second) todo.push_back(next);
    }
  }
  return {};
}

lock_order_edge describe(const void* held, const void* acquired, const edge_info& e) {
  lock_order_edge r;
  r.held = held;
  r.acquired = acquired;
  r.held_at = e.held_at;
  r.acquired_at = e.acquired_at;
  r.stack = e.stack;
  r.thread = e.thread;
  r.thread_name = e.thread_name;
  return r;
}

void deliver(lock_order_report& report, thread_state& ts) {
  for (lock_order_edge& e : report.cycle) {
    e.held_name = lock_name(e.held);
    e.acquired_name = lock_name(e.acquired);
  }
  cycles_reported.fetch_add(1, std::memory_order_relaxed);
  order_graph& g = graph();
  lock_order_action action;
  std::function<void(const lock_order_report&)> callback;
  {
    std::lock_guard guard(g.m);
    action = g.action;
    callback = g.callback;
  }
  if (action == lock_order_action::callback && callback) {
    ts.busy = true;
    callback(report);
    ts.busy = false;
    return;
  }
  const std::string text = report.text();
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
  if (action == lock_order_action::abort) std::abort();
}

// The slow path of an edge the thread's cache does not know.
void add_edge(thread_state& ts, const held_lock& from, const void* to, const void* site,
              std::vector<void*>& stack) {
  order_graph& g = graph();
  {
    std::lock_guard guard(g.m);
    const auto it = g.nodes.find(from.lock);
    if (it != g.nodes.end() && it->second.out.contains(to)) {
      ts.cache[cache_index(from.lock, to)] = {from.lock, to,
                                              graph_generation.load(std::memory_order_relaxed)};
      return;
    }
  }
  // New (as far as we know): record where it comes from outside the lock,
  // backtrace() may allocate and load libgcc the first time.
  if (stack.empty()) {
    void* frames[stack_depth];
    const int n = backtrace(frames, stack_depth);
    // From the acquisition's call site on: the checker's own frames are noise.
    int first = 0;
    while (first < n && frames[first] != site) ++first;
    if (first == n) first = 0;
    stack.assign(frames + first, frames + (n > 0 ? n : 0));
  }
  lock_order_report report;
  {
    std::lock_guard guard(g.m);
    node& f = g.nodes[from.lock];
    const auto [edge, inserted] = f.out.try_emplace(
        to, edge_info{from.site, site, stack, this_thread_id(), this_thread_name()});
    ts.cache[cache_index(from.lock, to)] = {from.lock, to,
                                            graph_generation.load(std::memory_order_relaxed)};
    if (!inserted) return;  // another thread added it meanwhile (and checked it)
    g.nodes[to].in.insert(from.lock);
    ++g.edges;
    obs::flag_word.fetch_or(obs::entries_bit, std::memory_order_relaxed);
    const std::vector<const void*> path = find_path(g, to, from.lock);
    if (path.empty()) return;
    report.cycle.push_back(describe(from.lock, to, edge->second));
    for (std::size_t i = 0; i + 1 < path.size(); ++i)
      report.cycle.push_back(describe(path[i], path[i + 1], g.nodes[path[i]].out.at(path[i + 1])));
  }
  deliver(report, ts);
}

void push_held(thread_state& ts, const void* lock, const void* site, std::uint64_t hold_start,
               std::uint64_t wait) noexcept {
  if (ts.depth == held_capacity) {
    ++ts.untracked;
    held_overflows.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  ts.held[ts.depth++] = {lock, site, hold_start, wait};
}

bool edge_cached(const thread_state& ts, const void* from, const void* to,
                 std::uint64_t generation) noexcept {
  const cached_edge& c = ts.cache[cache_index(from, to)];
  return c.from == from && c.to == to && c.generation == generation;
}

void check_order(thread_state& ts, const void* lock, const void* site) {
  const std::uint64_t generation = graph_generation.load(std::memory_order_acquire);
  std::vector<void*> stack;  // filled once, if some edge is new
  for (std::size_t i = 0; i < ts.depth; ++i) {
    const held_lock& h = ts.held[i];
    if (h.lock == lock) continue;  // relocking: no edge to itself
    if (!edge_cached(ts, h.lock, lock, generation)) add_edge(ts, h, lock, site, stack);
  }
}

void remove_node(const void* lock) {
  order_graph& g = graph();
  std::lock_guard guard(g.m);
  const auto it = g.nodes.find(lock);
  if (it == g.nodes.end()) return;
  for (const auto& [to, info] : it->second.out) {
    if (to != lock) g.nodes[to].in.erase(lock);
  }
  for (const void* from : it->second.in) {
    g.edges -= g.nodes[from].out.erase(lock);
  }
  g.edges -= it->second.out.size();
  g.nodes.erase(it);
  graph_generation.fetch_add(1, std::memory_order_release);
}

std::string symbolize(const void* address) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%p", address);
  std::string out = buf;
  Dl_info info;
  if (address != nullptr && dladdr(address, &info) != 0) {
    if (info.dli_sname != nullptr) {
      int status = 0;
      char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
      out += " ";
      out += status == 0 && demangled != nullptr ? demangled : info.dli_sname;
      std::free(demangled);
      std::snprintf(buf, sizeof buf, "+0x%zx",
                    static_cast<std::size_t>(static_cast<const char*>(address) -
                                             static_cast<const char*>(info.dli_saddr)));
      out += buf;
    }
    if (info.dli_fname != nullptr) {
      std::snprintf(buf, sizeof buf, "+0x%zx",
                    static_cast<std::size_t>(static_cast<const char*>(address) -
                                             static_cast<const char*>(info.dli_fbase)));
      out += std::string(" (") + info.dli_fname + buf + ")";
    }
  }
  return out;
}

std::string lock_label(const void* lock, const std::string& name) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", lock);
  return name.empty() ? std::string("lock ") + buf
                      : "lock " + std::string(buf) + " \"" + name + "\"";
}

// HWSYNC_LOCKORDER, read when the library loads.
[[maybe_unused]] const bool environment_read = [] {
  const char* v = std::getenv("HWSYNC_LOCKORDER");
  if (v == nullptr || std::strcmp(v, "") == 0 || std::strcmp(v, "0") == 0) return true;
  if (std::strcmp(v, "1") == 0) {
    obs::switch_on(obs::order_bit);
  } else {
    std::fprintf(stderr,
                 "hwsync: HWSYNC_LOCKORDER=\"%s\": expected 1 (check lock order) or 0 (off); "
                 "the lock-order checker stays off\n",
                 v);
  }
  return true;
}();

}  // namespace

// Hooks -----------------------------------------------------------------------

namespace {

// Whether the thread's edge cache knows every edge from a held lock to
// `lock`: the common case, checked without the graph's mutex.
bool edges_cached(const thread_state& ts, const void* lock, std::uint64_t generation) noexcept {
  for (std::size_t i = 0; i < ts.depth; ++i) {
    const void* held = ts.held[i].lock;
    if (held != lock && !edge_cached(ts, held, lock, generation)) return false;
  }
  return true;
}

// Out of line, so the acquisition's own path saves few registers.
[[gnu::noinline]] void add_edges(thread_state& ts, const void* lock, const void* site) noexcept {
  try {
    check_order(ts, lock, site);
  } catch (...) {
    // Out of memory growing the graph, or the callback threw: the
    // acquisition goes on, as if the checker had not looked.
    ts.busy = false;
  }
}

// Draws the distance to the next sample and returns this one's start.
[[gnu::noinline]] std::uint64_t start_sample(thread_state& ts) noexcept {
  // The next sample in 1..2N-1 acquisitions (N on average), at random: a
  // fixed stride would alias with a loop that takes locks in a cycle of a
  // length that divides it, and sample one lock only.
  const std::uint32_t n = detail::profile::period();
  std::uint64_t& x = ts.random;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  ts.sample_countdown = n == 1 ? 1 : static_cast<std::uint32_t>(1 + x % (2 * std::uint64_t{n} - 1));
  const std::uint64_t t = cycle_clock::now();
  return t != 0 ? t : 1;
}

[[gnu::noinline]] void record_sample(const void* lock, std::uint64_t hold_start,
                                     std::uint64_t wait) noexcept {
  const std::uint64_t now = cycle_clock::now();
  try {
    detail::profile::record(lock, wait, now > hold_start ? now - hold_start : 0);
  } catch (...) {
    // Out of memory for a new entry: the sample is lost, the lock works.
  }
}

}  // namespace

namespace detail::observe {

void switch_on(std::uint32_t bit) noexcept {
  // Also when the profiler was on alone: its stacks hold sampled locks only.
  if ((flag_word.load(std::memory_order_seq_cst) & bit) == 0)
    observer_epoch.fetch_add(1, std::memory_order_seq_cst);
  flag_word.fetch_or(bit, std::memory_order_seq_cst);
}

std::uint64_t before_acquire(const void* lock, std::uint32_t flags, bool blocking,
                             bool certain) noexcept {
  thread_state* ts = this_thread_state();
  if (ts == nullptr || ts->busy) return 0;
  sync_epoch(*ts);
  const void* site = __builtin_return_address(0);
  if ((flags & order_bit) != 0 && blocking && ts->depth > 0 &&
      !edges_cached(*ts, lock, graph_generation.load(std::memory_order_acquire))) [[unlikely]]
    add_edges(*ts, lock, site);
  if (flags == order_bit && certain) {
    // The attempt cannot fail: record the held lock now and spare the
    // acquisition its second call. Nothing reads the stack before the lock
    // is ours but this thread, whose next step is that acquisition.
    push_held(*ts, lock, site, 0, 0);
    return already_recorded;
  }
  if ((flags & profile_bit) != 0) {
    if (ts->sample_countdown <= 1) return start_sample(*ts);
    --ts->sample_countdown;
  }
  return 0;
}

void after_acquire(const void* lock, std::uint32_t, std::uint64_t start, mode) noexcept {
  thread_state* ts = this_thread_state();
  if (ts == nullptr || ts->busy) return;  // before_acquire synced the epoch
  if (start != 0) {
    const std::uint64_t now = cycle_clock::now();
    push_held(*ts, lock, __builtin_return_address(0), now != 0 ? now : 1,
              now > start ? now - start : 0);
  } else {
    push_held(*ts, lock, __builtin_return_address(0), 0, 0);
  }
}

void on_release(const void* lock) noexcept {
  thread_state* ts = this_thread_state();
  if (ts == nullptr || ts->busy) return;
  // No epoch check: popping from a stale stack is harmless, the next
  // acquisition clears it.
  for (std::size_t i = ts->depth; i-- > 0;) {
    if (ts->held[i].lock != lock) continue;
    // Field by field: a whole-entry copy reads 16 bytes at a time from what
    // the acquisition just stored 8 at a time, and the failed store
    // forwarding cost the release about 10 cycles.
    const std::uint64_t hold_start = ts->held[i].hold_start;
    const std::uint64_t wait = ts->held[i].wait;
    for (std::size_t j = i + 1; j < ts->depth; ++j) ts->held[j - 1] = ts->held[j];
    --ts->depth;
    if (hold_start != 0) record_sample(lock, hold_start, wait);
    return;
  }
  if (ts->untracked > 0) --ts->untracked;
}

void on_destroy(const void* lock) noexcept {
  try {
    profile::retire(lock);  // first: it keeps the name
    {
      name_registry& r = names();
      std::lock_guard guard(r.m);
      r.names.erase(lock);
    }
    remove_node(lock);
  } catch (...) {
    // Out of memory copying the name or growing a map: entries leak, locks work.
  }
}

}  // namespace detail::observe

// Names -----------------------------------------------------------------------

void set_lock_name(const void* lock, std::string_view name) {
  name_registry& r = names();
  std::lock_guard guard(r.m);
  if (name.empty()) {
    r.names.erase(lock);
    return;
  }
  r.names[lock] = std::string(name);
  obs::flag_word.fetch_or(obs::entries_bit, std::memory_order_relaxed);
}

std::string lock_name(const void* lock) {
  name_registry& r = names();
  std::lock_guard guard(r.m);
  const auto it = r.names.find(lock);
  return it == r.names.end() ? std::string() : it->second;
}

// The checker's API -----------------------------------------------------------

void enable_lock_order_checking() noexcept {
  obs::switch_on(obs::order_bit);
}

void disable_lock_order_checking() noexcept {
  obs::flag_word.fetch_and(~obs::order_bit, std::memory_order_seq_cst);
}

bool lock_order_checking_enabled() noexcept {
  return (obs::flag_word.load(std::memory_order_relaxed) & obs::order_bit) != 0;
}

void set_lock_order_action(lock_order_action a) noexcept {
  order_graph& g = graph();
  std::lock_guard guard(g.m);
  g.action = a;
}

void set_lock_order_callback(std::function<void(const lock_order_report&)> callback) {
  order_graph& g = graph();
  std::lock_guard guard(g.m);
  g.action = callback ? lock_order_action::callback : lock_order_action::log;
  g.callback = std::move(callback);
}

void reset_lock_order_graph() {
  order_graph& g = graph();
  std::lock_guard guard(g.m);
  g.nodes.clear();
  g.edges = 0;
  graph_generation.fetch_add(1, std::memory_order_release);
}

lock_order_statistics lock_order_stats() {
  lock_order_statistics s;
  {
    order_graph& g = graph();
    std::lock_guard guard(g.m);
    s.nodes = g.nodes.size();
    s.edges = g.edges;
  }
  s.cycles_reported = cycles_reported.load(std::memory_order_relaxed);
  s.held_overflows = held_overflows.load(std::memory_order_relaxed);
  return s;
}

std::string lock_order_report::text() const {
  std::string out = "hwsync lock-order checker: possible deadlock: a cycle of " +
                    std::to_string(cycle.size()) + " lock-order edges\n";
  for (std::size_t i = 0; i < cycle.size(); ++i) {
    const lock_order_edge& e = cycle[i];
    out += i == 0 ? "  now:     thread " : "  earlier: thread ";
    out += std::to_string(e.thread) + " \"" + e.thread_name + "\" acquired " +
           lock_label(e.acquired, e.acquired_name) + "\n             at " +
           symbolize(e.acquired_at) + "\n           while holding " +
           lock_label(e.held, e.held_name) + "\n             taken at " + symbolize(e.held_at) +
           "\n           stack:\n";
    for (void* frame : e.stack) out += "             " + symbolize(frame) + "\n";
  }
  return out;
}

}  // namespace hwsync
