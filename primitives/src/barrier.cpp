// The slow paths of hwsync::barrier and its combining tree. The state word,
// the node fields and the invariants these functions keep are described in
// hwsync/barrier.hpp.
#include "hwsync/barrier.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "hwsync/latch.hpp"  // detail::release_wait_policy
#include "hwsync/spin.hpp"
#include "hwsync/topology.hpp"

namespace hwsync::detail {
namespace {

constexpr const char* type_name = "hwsync::barrier";

// A hash that differs between threads and stays the same within one: the
// address of a thread_local, mixed (splitmix64's finalizer), so that threads
// sharing a PU start at different leaves of it.
std::uint64_t thread_hash() noexcept {
  thread_local const char here = 0;
  thread_local const std::uint64_t hash = [] {
    std::uint64_t x = reinterpret_cast<std::uintptr_t>(&here);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }();
  return hash;
}

// For each grouping level, finest first, a key per PU: PUs with equal keys
// share that level's object. The levels are the PU, the core, each data or
// unified cache level, the NUMA node and the package, ordered by how many
// objects each has (more objects: finer), since which contains which varies
// (a NUMA node may span packages, or a package hold several nodes); the
// machine (all keys equal) comes last and gathers everything under one root.
std::vector<std::vector<std::uint32_t>> grouping_keys(const topology* t, unsigned pus) {
  std::vector<std::vector<std::uint32_t>> levels;
  std::vector<std::uint32_t> key(pus);
  for (unsigned u = 0; u < pus; ++u) key[u] = u;
  levels.push_back(key);
  if (t == nullptr) {
    levels.emplace_back(pus, 0u);
    return levels;
  }
  for (unsigned u = 0; u < pus; ++u) key[u] = t->core_of_pu(u);
  levels.push_back(key);
  std::map<unsigned, std::vector<const topology::cache_info*>> by_level;
  for (const auto& c : t->caches())
    if (c.kind != topology::cache_kind::instruction) by_level[c.level].push_back(&c);
  for (const auto& [level, caches] : by_level) {
    // A PU no cache of this level lists gets a key of its own.
    for (unsigned u = 0; u < pus; ++u) key[u] = 0x80000000u + u;
    for (std::size_t i = 0; i < caches.size(); ++i)
      for (unsigned u : caches[i]->pus)
        if (u < pus) key[u] = static_cast<std::uint32_t>(i);
    levels.push_back(key);
  }
  for (unsigned u = 0; u < pus; ++u) key[u] = t->node_of_pu(u);
  levels.push_back(key);
  for (unsigned u = 0; u < pus; ++u) key[u] = t->package_of_pu(u);
  levels.push_back(key);
  auto objects = [](const std::vector<std::uint32_t>& k) {
    return std::set<std::uint32_t>(k.begin(), k.end()).size();
  };
  // Stable (equal counts keep the order above), without std::stable_sort,
  // whose temporary buffer clang 19 flags as deprecated in libstdc++ 12.
  std::vector<std::size_t> order(levels.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const std::size_t oa = objects(levels[a]), ob = objects(levels[b]);
    return oa != ob ? oa > ob : a < b;
  });
  std::vector<std::vector<std::uint32_t>> sorted;
  for (std::size_t i : order) sorted.push_back(std::move(levels[i]));
  sorted.emplace_back(pus, 0u);
  return sorted;
}

}  // namespace

// ---------------------------------------------------------------------------
// combining_tree

struct combining_tree::node {
  alignas(64) std::atomic<std::uint32_t> arrived{0};
  std::atomic<std::uint32_t> capacity{0};
  std::int32_t parent = -1;
};

combining_tree::combining_tree(const topology* t, std::uint32_t parties)
    : topology_(t), pus_(t == nullptr ? 1u : std::max(1u, t->pus())) {
  const std::size_t wanted = std::max<std::size_t>(1, (parties + fan_in - 1) / fan_in);
  leaves_ = std::min<std::size_t>(wanted, std::size_t{max_leaves_per_pu} * pus_);

  // Leaves in PU order: PU u's leaves are home_leaf()'s range for u.
  pu_of_leaf_.assign(leaves_, 0);
  for (unsigned u = pus_; u-- > 0;) {
    const std::size_t lo = std::size_t{u} * leaves_ / pus_;
    const std::size_t hi = std::max(lo + 1, std::size_t{u + 1} * leaves_ / pus_);
    for (std::size_t j = lo; j < hi && j < leaves_; ++j) pu_of_leaf_[j] = u;
  }

  // Group level by level: a run of nodes whose PUs share the level's object
  // is split into ceil(run / fan_in) near-equal chunks, each chunk of two or
  // more becoming a new parent; repeat at the level until no run is left,
  // then go one level coarser.
  struct item {
    std::uint32_t id;
    unsigned pu;  // a PU under the node, for its keys
  };
  std::vector<item> current;
  for (std::size_t j = 0; j < leaves_; ++j)
    current.push_back({static_cast<std::uint32_t>(j), pu_of_leaf_[j]});
  std::vector<std::int32_t> parent_of(leaves_, -1);
  for (const auto& key : grouping_keys(t, pus_)) {
    for (bool grouped = true; grouped;) {
      grouped = false;
      std::vector<item> next;
      for (std::size_t i = 0; i < current.size();) {
        std::size_t j = i;
        while (j < current.size() && key[current[j].pu] == key[current[i].pu]) ++j;
        const std::size_t run = j - i;
        const std::size_t chunks = (run + fan_in - 1) / fan_in;
        for (std::size_t c = 0; c < chunks; ++c) {
          const std::size_t a = i + run * c / chunks, b = i + run * (c + 1) / chunks;
          if (b - a == 1) {
            next.push_back(current[a]);
            continue;
          }
          const auto id = static_cast<std::uint32_t>(parent_of.size());
          parent_of.push_back(-1);
          for (std::size_t k = a; k < b; ++k)
            parent_of[current[k].id] = static_cast<std::int32_t>(id);
          next.push_back({id, current[a].pu});
          grouped = true;
        }
        i = j;
      }
      current = std::move(next);
    }
  }
  node_count_ = parent_of.size();
  nodes_ = std::make_unique<node[]>(node_count_);
  for (std::size_t i = 0; i < node_count_; ++i) nodes_[i].parent = parent_of[i];
  set_capacities(parties);
}

combining_tree::~combining_tree() = default;

// Leaf j takes floor(P(j+1)/L) - floor(Pj/L) of the P parties: shares that
// differ by at most one and add up to P exactly. An inner node counts its
// children that take any. Parents are numbered after their children, so one
// pass in node order sees each child's final capacity before its parent's.
void combining_tree::set_capacities(std::uint32_t parties) noexcept {
  parties_ = parties;
  const std::uint64_t p = parties, l = leaves_;
  std::vector<std::uint32_t> cap(node_count_, 0);
  for (std::size_t j = 0; j < leaves_; ++j)
    cap[j] = static_cast<std::uint32_t>(p * (j + 1) / l - p * j / l);
  for (std::size_t i = 0; i < node_count_; ++i)
    if (cap[i] > 0 && nodes_[i].parent >= 0) ++cap[static_cast<std::size_t>(nodes_[i].parent)];
  for (std::size_t i = 0; i < node_count_; ++i)
    nodes_[i].capacity.store(cap[i], std::memory_order_relaxed);
}

void combining_tree::reset(std::uint32_t parties) noexcept {
  if (parties != parties_) set_capacities(parties);
  for (std::size_t i = 0; i < node_count_; ++i)
    nodes_[i].arrived.store(0, std::memory_order_relaxed);
}

std::size_t combining_tree::home_leaf(int pu, std::uint64_t thread_hash) const noexcept {
  if (pu < 0 || static_cast<unsigned>(pu) >= pus_) return thread_hash % leaves_;
  const auto u = static_cast<std::size_t>(pu);
  const std::size_t lo = u * leaves_ / pus_;
  const std::size_t hi = std::max(lo + 1, (u + 1) * leaves_ / pus_);
  return lo + thread_hash % (hi - lo);
}

// Each filled node adds one to its parent; fetch_add is enough there, since a
// child fills exactly once per phase and so no parent overflows.
bool combining_tree::climb(std::size_t filled) noexcept {
  for (std::int32_t i = nodes_[filled].parent; i >= 0;
       i = nodes_[static_cast<std::size_t>(i)].parent) {
    node& n = nodes_[static_cast<std::size_t>(i)];
    const std::uint32_t cap = n.capacity.load(std::memory_order_relaxed);
    if (n.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 != cap) return false;
  }
  return true;
}

// Leaves take what room they have left with a CAS (a leaf must never count
// more than its capacity: that would steal room another arrival needs); the
// remainder moves on to the next leaf in topology order.
bool combining_tree::arrive(std::uint32_t n, std::uint32_t& unplaced) noexcept {
  const int pu = topology_ == nullptr ? -1 : topology_->current_pu();
  const std::size_t start = home_leaf(pu, thread_hash());
  bool root_filled = false;
  for (std::size_t k = 0; k < leaves_ && n > 0; ++k) {
    const std::size_t j = (start + k) % leaves_;
    node& leaf = nodes_[j];
    const std::uint32_t cap = leaf.capacity.load(std::memory_order_relaxed);
    std::uint32_t a = leaf.arrived.load(std::memory_order_relaxed);
    while (a < cap) {
      const std::uint32_t take = std::min(n, cap - a);
      if (leaf.arrived.compare_exchange_weak(a, a + take, std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
        n -= take;
        if (a + take == cap && climb(j)) root_filled = true;
        break;
      }
    }
  }
  unplaced = n;
  return root_filled;
}

// A waiter reads every leaf once, before it decides whether to spin: a few
// lines for tens of parties, at most 64 per PU.
std::uint64_t combining_tree::missing_arrivals() const noexcept {
  std::uint64_t missing = 0;
  for (std::size_t j = 0; j < leaves_; ++j) {
    const std::uint32_t cap = nodes_[j].capacity.load(std::memory_order_relaxed);
    const std::uint32_t a = nodes_[j].arrived.load(std::memory_order_relaxed);
    if (a < cap) missing += cap - a;
  }
  return missing;
}

int combining_tree::parent(std::size_t node) const noexcept {
  return node < node_count_ ? nodes_[node].parent : -1;
}

std::uint32_t combining_tree::capacity(std::size_t node) const noexcept {
  return node < node_count_ ? nodes_[node].capacity.load(std::memory_order_relaxed) : 0;
}

unsigned combining_tree::pu_of_leaf(std::size_t leaf) const noexcept {
  return leaf < leaves_ ? pu_of_leaf_[leaf] : 0;
}

std::string combining_tree::describe() const {
  std::size_t depth = 0;
  for (std::int32_t i = nodes_[0].parent; i >= 0; i = nodes_[static_cast<std::size_t>(i)].parent)
    ++depth;
  std::uint32_t lo = ~0u, hi = 0;
  for (std::size_t j = 0; j < leaves_; ++j) {
    lo = std::min(lo, capacity(j));
    hi = std::max(hi, capacity(j));
  }
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%zu parties in %zu leaves over %u PUs, %zu inner nodes, depth %zu, leaf "
                "capacity %u..%u",
                static_cast<std::size_t>(parties_), leaves_, pus_, node_count_ - leaves_, depth, lo,
                hi);
  return buf;
}

// ---------------------------------------------------------------------------
// barrier_core

barrier_core::barrier_core(std::ptrdiff_t expected, barrier_algorithm a)
    : state_(a == barrier_algorithm::central ? static_cast<std::uint64_t>(expected) & left_mask
                                             : 0),
      parties_(static_cast<std::uint32_t>(expected)),
      algorithm_(a) {
  if constexpr (debug::checks_enabled) {
    if (expected < 0 || expected > max) {
      char message[160];
      std::snprintf(message, sizeof message,
                    "constructed with an expected count outside 0..max(): %td (max() = %td)",
                    expected, max);
      debug::misuse(type_name, this, message);
    }
  }
  if (a == barrier_algorithm::combining_tree)
    tree_ =
        std::make_unique<combining_tree>(&topology::system(), static_cast<std::uint32_t>(expected));
}

barrier_core::~barrier_core() = default;

// The phase is read before the tree counts the arrivals: they cannot fill
// the root of a later phase, since this phase cannot end without them.
std::uint32_t barrier_core::arrive_tree(std::ptrdiff_t n, bool& last, const void* self) noexcept {
  const auto phase =
      static_cast<std::uint32_t>(state_.load(std::memory_order_acquire) >> phase_shift);
  std::uint32_t unplaced = 0;
  last = tree_->arrive(static_cast<std::uint32_t>(n), unplaced);
  if constexpr (debug::checks_enabled) {
    if (unplaced != 0) bad_arrival(self, n, n - static_cast<std::ptrdiff_t>(unplaced));
  }
  (void)self;
  return phase;
}

void barrier_core::drop(const void* self) noexcept {
  const std::uint32_t before = parties_.fetch_sub(1, std::memory_order_relaxed);
  if constexpr (debug::checks_enabled) {
    if (before == 0) debug::misuse(type_name, self, "arrive_and_drop() with no parties left");
  }
  (void)before;
  (void)self;
}

void barrier_core::finish_phase(std::uint32_t phase) noexcept {
  const std::uint32_t parties = parties_.load(std::memory_order_relaxed);
  std::uint64_t next = static_cast<std::uint64_t>(phase + 1) << phase_shift;
  if (algorithm_ == barrier_algorithm::central)
    next |= parties;
  else
    tree_->reset(parties);
  if (state_.exchange(next, std::memory_order_release) & parked) futex::wake_all(phase_word());
}

// Spins and yields while that can help (await_release), then sets PARKED (on a word still in
// `phase`) and sleeps while the high half still holds `phase`. Arrivals change only the low half,
// so they do not disturb a sleeper.
bool barrier_core::park_until(std::uint32_t phase, const futex::deadline& d) const noexcept {
  auto over = [phase](std::uint64_t s) {
    return static_cast<std::uint32_t>(s >> phase_shift) != phase;
  };
  std::uint64_t s = state_.load(std::memory_order_acquire);
  if (await_release([&] { return over(state_.load(std::memory_order_acquire)); },
                    missing_arrivals(s)))
    return true;
  s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (over(s)) return true;
    if ((s & parked) == 0) {
      if (!state_.compare_exchange_weak(s, s | parked, std::memory_order_acquire,
                                        std::memory_order_acquire))
        continue;
    }
    const futex::wait_result r = futex::wait_until(phase_word(), phase, d);
    s = state_.load(std::memory_order_acquire);
    if (r == futex::wait_result::timed_out) return over(s);
  }
}

// The arrivals the phase still needs, as a waiter sees them: central's LEFT,
// or the room left in the tree's leaves.
std::uint64_t barrier_core::missing_arrivals(std::uint64_t s) const noexcept {
  if (algorithm_ == barrier_algorithm::central) return s & left_mask;
  return tree_->missing_arrivals();
}

void barrier_core::check_token(std::uint64_t s, std::uint32_t phase, const void* self) noexcept {
  const auto current = static_cast<std::uint32_t>(s >> phase_shift);
  if (phase == current || phase == current - 1) return;
  char message[200];
  std::snprintf(message, sizeof message,
                "wait() with an arrival token of phase %u while the barrier is in phase %u (a "
                "token is good for its own phase and the next)",
                phase, current);
  debug::misuse(type_name, self, message);
}

void barrier_core::bad_token_owner(const void* self) noexcept {
  debug::misuse(type_name, self, "wait() with an arrival token of another barrier");
}

void barrier_core::bad_arrival(const void* self, std::ptrdiff_t n, std::ptrdiff_t left) noexcept {
  char message[200];
  if (left < 0)
    std::snprintf(message, sizeof message, "arrive(n) with n = %td (expected 1..max())", n);
  else
    std::snprintf(message, sizeof message,
                  "arrive(n) with n = %td, more than the %td arrivals left in this phase", n, left);
  debug::misuse(type_name, self, message);
}

}  // namespace hwsync::detail
