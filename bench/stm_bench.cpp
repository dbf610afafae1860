// bench/stm_bench.cpp — hwsync::stm beside its peers in one binary: one
// global std::mutex, one global hwsync::mutex, GCC libitm (__transaction_atomic
// with -fgnu-tm, its default method; bench/stm_itm_peer.cpp) and
// tbb::speculative_spin_mutex, on the same workloads:
//   bank      1024 accounts, a transfer between two random accounts
//   disjoint  the bank, but each thread on its own 512 accounts (no conflicts:
//             disjoint-access parallelism, 1 vs 2 threads)
//   disjoint_logged  the same, hwsync::stm only, with the single-thread mode
//             off (tuning::single_thread_mode): the logged TL2 path at 1 and
//             2 threads, so its own scaling and its cost against the
//             single-thread mode's (disjoint, 1 thread) show in the report;
//             disjoint also runs the hand-written floors of
//             bench/stm_floors.hpp (unsynchronized, undo_log_by_hand,
//             tl2_by_hand, tl2_tagged_by_hand, per_account_spinlocks)
//   list      sorted linked list, keys 0..255, 20% updates
//   hash      chained hash set, 4096 buckets, keys 0..8191, 20% updates
//   rbtree    red-black tree, keys 0..8191, 20% updates
// at 1, 2, 4 and 8 threads (the machine has 2 cores: 4 and 8 oversubscribe).
// Names: stm/<workload>/<peer>/threads:<n>. Self-timed teams (run_team):
// operations/s, cycles and CPU ns per operation, and for the STM its abort
// rate, the share of serial and single-thread commits from its statistics.
// The sets use tests/stm/intsets.hpp: the same algorithm for every peer.
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "harness.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/spin.hpp"
#include "hwsync/stm.hpp"
#include "stm_floors.hpp"
#include "stm_itm_peer.hpp"

namespace hwsync::bench {

struct tbb_speculative_lock {
  tbb::speculative_spin_mutex m;
};
template <>
class locker<tbb_speculative_lock> {
 public:
  explicit locker(tbb_speculative_lock& l) noexcept : l_(l) {}
  void lock() { node_.acquire(l_.m); }
  void unlock() { node_.release(); }

 private:
  tbb_speculative_lock& l_;
  tbb::speculative_spin_mutex::scoped_lock node_;
};
template <>
struct lock_traits<hwsync::mutex> {
  static constexpr const char* id = "hwsync_mutex";
};
template <>
struct lock_traits<tbb_speculative_lock> {
  static constexpr const char* id = "tbb_speculative_spin_mutex";
};

namespace {

namespace sets = stm_sets;

struct stm_peer {
  static constexpr const char* id = "hwsync_stm";
};
struct itm_peer {
  static constexpr const char* id = "gcc_libitm";
};
template <class L>
struct lock_peer {
  static constexpr const char* id = lock_traits<L>::id;
};
// A hand-written floor from bench/stm_floors.hpp (disjoint only).
template <class Floor>
struct floor_peer {
  static constexpr const char* id = Floor::id;
};

constexpr int accounts = 1024;
constexpr int disjoint_block = 512;

std::uint64_t total_of(const std::vector<padded<std::uint64_t>>& v) {
  std::uint64_t t = 0;
  for (const auto& p : v) t += p.value;
  return t;
}

// Runs the team, then reports throughput and, for the STM, what its
// statistics say about the same interval.
template <class Body>
void team(benchmark::State& state, bool is_stm, Body&& body) {
  const int threads = static_cast<int>(state.range(0));
  std::vector<padded<std::uint64_t>> per_thread(static_cast<std::size_t>(threads));
  const stm::statistics before = stm::process_statistics();
  const auto r = run_team(threads, opts().scenario_time(), [&](int i, const auto& stop) {
    per_thread[static_cast<std::size_t>(i)].value = body(i, stop);
  });
  const std::uint64_t ops = total_of(per_thread);
  const double n = ops ? static_cast<double>(ops) : 1.0;
  state.SetIterationTime(r.wall_seconds);
  state.SetItemsProcessed(static_cast<std::int64_t>(ops));
  state.counters["operations"] = static_cast<double>(ops);
  state.counters["ops_per_s"] = static_cast<double>(ops) / r.wall_seconds;
  state.counters["cycles_per_op"] = static_cast<double>(r.wall_ticks) / n;
  state.counters["cpu_ns_per_op"] = r.cpu_seconds * 1e9 / n;
  if (is_stm) {
    const stm::statistics d = stm::process_statistics() - before;
    const double attempts = d.attempts() ? static_cast<double>(d.attempts()) : 1.0;
    const double commits = d.commits() ? static_cast<double>(d.commits()) : 1.0;
    state.counters["abort_rate"] = static_cast<double>(d.aborts()) / attempts;
    state.counters["aborts_validation"] = static_cast<double>(d.aborts_validation);
    state.counters["aborts_locked"] = static_cast<double>(d.aborts_locked);
    state.counters["aborts_other"] =
        static_cast<double>(d.aborts() - d.aborts_validation - d.aborts_locked);
    state.counters["serial_share"] = static_cast<double>(d.serial_commits) / commits;
    state.counters["single_thread_share"] = static_cast<double>(d.single_thread_commits) / commits;
    state.counters["hardware_share"] = static_cast<double>(d.hardware_commits) / commits;
    // Per operation: what the logged path pays beyond its own work (a clock
    // CAS and a read-set validation per extension; a time slice per yield).
    state.counters["extensions_per_op"] = static_cast<double>(d.extensions) / n;
    state.counters["yields_per_op"] = static_cast<double>(d.yields) / n;
  }
}

// ---- bank and disjoint ----

template <class Peer>
struct bank_state;

template <>
struct bank_state<stm_peer> {
  std::unique_ptr<stm::tvar<long>[]> a = std::make_unique<stm::tvar<long>[]>(accounts);
  bank_state() {
    for (int i = 0; i < accounts; ++i) a[i].unsafe_store(1000);
  }
  void transfer(int from, int to, long amount) {
    stm::atomically([&](stm::transaction& tx) {
      tx.write(a[from], tx.read(a[from]) - amount);
      tx.write(a[to], tx.read(a[to]) + amount);
    });
  }
  long total() const {
    long s = 0;
    for (int i = 0; i < accounts; ++i) s += a[i].unsafe_load();
    return s;
  }
};

template <>
struct bank_state<itm_peer> {
  std::vector<long> a = std::vector<long>(accounts, 1000);
  void transfer(int from, int to, long amount) { itm::bank_transfer(a.data(), from, to, amount); }
  long total() const { return itm::bank_total(a.data(), accounts); }
};

template <class L>
struct bank_state<lock_peer<L>> {
  alignas(cache_line) L lock;
  std::vector<long> a = std::vector<long>(accounts, 1000);
  void transfer(int from, int to, long amount) {
    locker<L> h(lock);
    h.lock();
    a[static_cast<std::size_t>(from)] -= amount;
    a[static_cast<std::size_t>(to)] += amount;
    h.unlock();
  }
  long total() const {
    long s = 0;
    for (long v : a) s += v;
    return s;
  }
};

template <class Floor>
struct bank_state<floor_peer<Floor>> : Floor {
  bank_state() : Floor(accounts) {}
};

// Turns the single-thread mode off for one scenario.
class logged_only_scope {
 public:
  logged_only_scope() : saved_(stm::current_tuning()) {
    stm::tuning t = saved_;
    t.single_thread_mode = false;
    stm::set_tuning(t);
  }
  ~logged_only_scope() { stm::set_tuning(saved_); }
  logged_only_scope(const logged_only_scope&) = delete;
  logged_only_scope& operator=(const logged_only_scope&) = delete;

 private:
  stm::tuning saved_;
};

template <class Peer>
void bm_bank(benchmark::State& state, bool disjoint) {
  for (auto _ : state) {
    auto s = std::make_unique<bank_state<Peer>>();
    team(state, std::is_same_v<Peer, stm_peer>, [&](int i, const auto& stop) {
      std::minstd_rand rng(static_cast<unsigned>(i) * 7919u + 3u);
      const int base = disjoint ? i * disjoint_block : 0;
      const int range = disjoint ? disjoint_block : accounts;
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const int from = base + static_cast<int>(rng() % range);
        const int to = base + static_cast<int>(rng() % range);
        s->transfer(from, to, static_cast<long>(rng() % 100));
        ++n;
      }
      return n;
    });
    if (s->total() != accounts * 1000L) state.SkipWithError("the bank's total changed");
  }
}

// ---- integer sets ----

enum class set_kind { list, hash, rbtree };

struct set_params {
  long key_range;
  const char* name;
};
constexpr set_params params(set_kind k) {
  switch (k) {
    case set_kind::list:
      return {256, "list"};
    case set_kind::hash:
      return {8192, "hash"};
    case set_kind::rbtree:
      return {8192, "rbtree"};
  }
  return {0, ""};
}

template <set_kind K, class A>
struct set_type;
template <class A>
struct set_type<set_kind::list, A> {
  using type = sets::list_set<A>;
  static std::unique_ptr<type> make() { return std::make_unique<type>(); }
};
template <class A>
struct set_type<set_kind::hash, A> {
  using type = sets::hash_set<A>;
  static std::unique_ptr<type> make() { return std::make_unique<type>(4096); }
};
template <class A>
struct set_type<set_kind::rbtree, A> {
  using type = sets::rb_tree_set<A>;
  static std::unique_ptr<type> make() { return std::make_unique<type>(); }
};

template <class Set>
auto* new_spare() {
  using node = typename Set::node;
  if constexpr (std::is_constructible_v<node, long, node*>) {
    return new node(0, nullptr);
  } else {
    return new node(0);
  }
}

template <class Set, class A>
bool apply(Set& s, A& a, int op, long key) {
  return op == 0 ? s.contains(a, key) : op == 1 ? s.insert(a, key) : s.erase(a, key);
}

template <set_kind K, class Peer>
void bm_set(benchmark::State& state) {
  constexpr set_params p = params(K);
  constexpr bool is_stm = std::is_same_v<Peer, stm_peer>;
  using A = std::conditional_t<is_stm, sets::stm_access, sets::plain_access>;
  using S = typename set_type<K, A>::type;
  for (auto _ : state) {
    auto s = set_type<K, A>::make();
    // Half the keys, inserted by a thread that then exits: the timed
    // threads are then the only ones with an STM descriptor.
    std::thread([&] {
      for (long k = 0; k < p.key_range; k += 2) {
        if constexpr (is_stm) {
          stm::atomically([&](stm::transaction& tx) {
            A a{tx};
            s->insert(a, k);
          });
        } else {
          A a;
          a.spare = new_spare<S>();
          s->insert(a, k);
        }
      }
    }).join();
    [[maybe_unused]] alignas(cache_line) static std::mutex std_lock;
    [[maybe_unused]] alignas(cache_line) static hwsync::mutex hw_lock;
    [[maybe_unused]] alignas(cache_line) static tbb_speculative_lock tbb_lock;
    team(state, is_stm, [&](int i, const auto& stop) {
      std::minstd_rand rng(static_cast<unsigned>(i) * 104729u + 11u);
      std::uint64_t n = 0;
      [[maybe_unused]] std::conditional_t<is_stm, int, A> plain{};
      while (!stop.load(std::memory_order_relaxed)) {
        const long key = static_cast<long>(rng() % static_cast<unsigned long>(p.key_range));
        const unsigned dice = static_cast<unsigned>(rng() % 10);
        const int op = dice == 0 ? 1 : dice == 1 ? 2 : 0;  // 10% insert, 10% erase
        bool r = false;
        if constexpr (is_stm) {
          // Lookups and updates are separate call sites, as a user writes
          // them: the lookup site never writes, so it runs read-only
          // (no read log, no commit work).
          if (op == 0) {
            r = stm::atomically([&](stm::transaction& tx) {
              A a{tx};
              return s->contains(a, key);
            });
          } else {
            r = stm::atomically([&](stm::transaction& tx) {
              A a{tx};
              return apply(*s, a, op, key);
            });
          }
        } else {
          if (op == 1 && plain.spare == nullptr) plain.spare = new_spare<S>();
          if constexpr (std::is_same_v<Peer, itm_peer>) {
            if constexpr (K == set_kind::list) r = itm::list_apply(*s, plain, op, key);
            if constexpr (K == set_kind::hash) r = itm::hash_apply(*s, plain, op, key);
            if constexpr (K == set_kind::rbtree) r = itm::rbtree_apply(*s, plain, op, key);
          } else if constexpr (std::is_same_v<Peer, lock_peer<std::mutex>>) {
            std::lock_guard g(std_lock);
            r = apply(*s, plain, op, key);
          } else if constexpr (std::is_same_v<Peer, lock_peer<hwsync::mutex>>) {
            std::lock_guard g(hw_lock);
            r = apply(*s, plain, op, key);
          } else {
            locker<tbb_speculative_lock> h(tbb_lock);
            h.lock();
            r = apply(*s, plain, op, key);
            h.unlock();
          }
          if (plain.unlinked != nullptr) {
            delete static_cast<typename S::node*>(plain.unlinked);
            plain.unlinked = nullptr;
          }
        }
        benchmark::DoNotOptimize(r);
        ++n;
      }
      if constexpr (!is_stm) delete static_cast<typename S::node*>(plain.spare);
      return n;
    });
    if (!s->check()) state.SkipWithError("the set's structure is broken");
  }
}

template <class... Peers>
struct peer_list {};
using peers = peer_list<stm_peer, lock_peer<std::mutex>, lock_peer<hwsync::mutex>, itm_peer,
                        lock_peer<tbb_speculative_lock>>;

std::string name(const char* workload, const char* peer) {
  return std::string("stm/") + workload + "/" + peer;
}

void self_timed(benchmark::internal::Benchmark* b, std::initializer_list<int> threads) {
  b->ArgName("threads")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  for (int t : threads) b->Arg(t);
}

template <class... Floors>
struct floor_list {};
template <class... Floors>
void register_floors(floor_list<Floors...>) {
  (self_timed(benchmark::RegisterBenchmark(
                  name("disjoint", Floors::id).c_str(),
                  [](benchmark::State& s) { bm_bank<floor_peer<Floors>>(s, true); }),
              {1, 2}),
   ...);
}

template <class... Peers>
void register_all(peer_list<Peers...>) {
  benchmark::AddCustomContext("stm_tuning_serial_after",
                              std::to_string(stm::current_tuning().serial_after));
  const auto all = {1, 2, 4, 8};
  (self_timed(benchmark::RegisterBenchmark(name("bank", Peers::id).c_str(),
                                           [](benchmark::State& s) { bm_bank<Peers>(s, false); }),
              all),
   ...);
  (self_timed(benchmark::RegisterBenchmark(name("disjoint", Peers::id).c_str(),
                                           [](benchmark::State& s) { bm_bank<Peers>(s, true); }),
              {1, 2}),
   ...);
  self_timed(benchmark::RegisterBenchmark(name("disjoint_logged", stm_peer::id).c_str(),
                                          [](benchmark::State& s) {
                                            logged_only_scope logged;
                                            bm_bank<stm_peer>(s, true);
                                          }),
             {1, 2});
  register_floors(
      floor_list<stm_floors::unsynchronized, stm_floors::undo_log_by_hand, stm_floors::tl2_by_hand,
                 stm_floors::tl2_tagged_by_hand, stm_floors::per_account_spinlocks>{});
  (self_timed(
       benchmark::RegisterBenchmark(name("list", Peers::id).c_str(), bm_set<set_kind::list, Peers>),
       all),
   ...);
  (self_timed(
       benchmark::RegisterBenchmark(name("hash", Peers::id).c_str(), bm_set<set_kind::hash, Peers>),
       all),
   ...);
  (self_timed(benchmark::RegisterBenchmark(name("rbtree", Peers::id).c_str(),
                                           bm_set<set_kind::rbtree, Peers>),
              all),
   ...);
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv,
                                   [] { hwsync::bench::register_all(hwsync::bench::peers{}); });
}
