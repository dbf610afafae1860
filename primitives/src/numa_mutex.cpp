// The contended paths of hwsync::numa_mutex. The algorithm, the state table
// of G and of the grant words, and the fairness bound are in
// hwsync/numa_mutex.hpp.
#include "hwsync/numa_mutex.hpp"

#include <algorithm>
#include <bit>
#include <memory>
#include <new>
#include <system_error>

#include "hwsync/cycle_clock.hpp"
#include "hwsync/numa_placement.hpp"
#include "hwsync/spin.hpp"

namespace hwsync {

namespace detail {

// One node's side of one numa_mutex, on its own cache line: the node's
// threads hammer it, other nodes' threads never touch it except to grant G.
struct alignas(64) numa_node_cohort {
  mutex_word local;  // the node's local lock
  // lock() callers of this node counted before they queue on `local` (not
  // timed ones: they may give up, and G passed to nobody would be stranded).
  std::atomic<std::uint32_t> waiting{0};
  futex::word grant{0};  // 0 registered, 2 parked, 1 granted (numa_mutex.hpp)
  // Guarded by `local`: G came with the local lock; cohort hand-offs in a
  // row; when the turn's head took G.
  bool passed = false;
  std::uint32_t passes = 0;
};

struct numa_cohorts {
  numa_cohorts(unsigned n, std::chrono::microseconds max_turn)
      : nodes(n),
        max_turn_ticks(cycle_clock::estimated_from_duration(max_turn)),
        node(new numa_node_cohort[n]) {}

  const unsigned nodes;
  const cycle_clock::ticks max_turn_ticks;
  // Serializes registering a head, granting G and a timed-out head's
  // withdrawal: the heads mask and HEADS in G change together under it.
  alignas(64) mutex_word guard;
  std::atomic<std::uint64_t> heads_mask{0};
  // Written by G's holder when a turn begins: whose turn, and until when.
  std::atomic<unsigned> turn_node{0};
  std::atomic<cycle_clock::ticks> turn_end{0};
  std::atomic<std::uint64_t> contended{0}, local_handoffs{0}, global_handoffs{0},
      cross_node_handoffs{0};
  std::unique_ptr<numa_node_cohort[]> node;
};

}  // namespace detail

namespace {

constexpr unsigned max_cohorts = 64;  // one bit each in the heads mask

void bump(std::atomic<std::uint64_t>& c) noexcept {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// The first node in `mask` after `from` in round-robin order (from itself last).
unsigned next_node(std::uint64_t mask, unsigned from, unsigned nodes) noexcept {
  const unsigned start = from >= nodes ? 0 : (from + 1) % nodes;
  const std::uint64_t rotated = std::rotr(mask, static_cast<int>(start));
  return (start + static_cast<unsigned>(std::countr_zero(rotated))) % max_cohorts;
}

}  // namespace

numa_mutex::~numa_mutex() {
  if constexpr (debug::checks_enabled) {
    if (is_locked())
      debug::misuse(type_name, this, "destroyed while locked; held by",
                    owner_.load(std::memory_order_relaxed));
  }
  tsan::mutex_destroy(this, 0);
  delete cohorts_.load(std::memory_order_acquire);
  detail::observe::destroyed(this);
}

detail::numa_cohorts& numa_mutex::cohorts() {
  if (detail::numa_cohorts* c = cohorts_.load(std::memory_order_acquire)) [[likely]]
    return *c;
  const unsigned nodes = std::clamp(numa::node_count(), 1u, max_cohorts);
  auto fresh = std::unique_ptr<detail::numa_cohorts>(new (std::nothrow)
                                                         detail::numa_cohorts(nodes, max_turn()));
  if (!fresh)
    throw std::system_error(std::make_error_code(std::errc::not_enough_memory),
                            "hwsync::numa_mutex: no memory for the per-node local locks");
  detail::numa_cohorts* expected = nullptr;
  if (cohorts_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel,
                                       std::memory_order_acquire))
    return *fresh.release();
  return *expected;  // another thread's block won; ours is freed
}

bool numa_mutex::lock_contended(const futex::deadline* d) {
  detail::numa_cohorts& c = cohorts();
  const unsigned n = numa::current_node() % c.nodes;
  detail::numa_node_cohort& mine = c.node[n];
  if (d == nullptr) {
    mine.waiting.fetch_add(1, std::memory_order_relaxed);
    mine.local.lock();
    mine.waiting.fetch_sub(1, std::memory_order_relaxed);
  } else if (!mine.local.lock_until(*d)) {
    return false;
  }
  if (mine.passed) {
    mine.passed = false;
  } else {
    switch (take_global(c, n, d)) {
      case took::nothing:
        mine.local.unlock();
        return false;
      case took::new_turn:
        mine.passes = 0;
        c.turn_node.store(n, std::memory_order_relaxed);
        c.turn_end.store(cycle_clock::now() + c.max_turn_ticks, std::memory_order_relaxed);
        break;
      case took::kept:  // the node's turn goes on: passes and its end stay
        break;
    }
  }
  cohort_.store(n + 1, std::memory_order_relaxed);
  bump(c.contended);  // as G's holder: no other thread counts meanwhile
  return true;
}

// Under the guard, with G kept for a node whose turn is over and nobody of
// that node came back for it: grant it to the next waiting node, as a
// release would have. False if G is not in that state.
bool numa_mutex::grant_expired_turn(detail::numa_cohorts& c) noexcept {
  const std::uint32_t s = word_.load(std::memory_order_relaxed);
  if ((s & kept) == 0 || cycle_clock::now() < c.turn_end.load(std::memory_order_relaxed))
    return false;
  grant_next(c, c.turn_node.load(std::memory_order_relaxed));
  return true;
}

// Under the guard, G free (reserved or kept) and heads registered: hand G to
// the first registered node after `from` in round-robin order, waking its
// head if it parked.
void numa_mutex::grant_next(detail::numa_cohorts& c, unsigned from) noexcept {
  std::uint64_t mask = c.heads_mask.load(std::memory_order_relaxed);  // not empty: HEADS is set
  const unsigned to = next_node(mask, from, c.nodes);
  mask &= ~(std::uint64_t{1} << to);
  c.heads_mask.store(mask, std::memory_order_relaxed);
  // Nobody else changes a free word while heads are registered: the fast
  // path and heads' own tries need 0 (or their own kept turn), and
  // registering or withdrawing heads hold the guard.
  word_.store(locked | (mask != 0 ? heads : 0), std::memory_order_relaxed);
  bump(c.global_handoffs);
  if (to != from) bump(c.cross_node_handoffs);
  futex::word& grant = c.node[to].grant;
  if (grant.exchange(1, std::memory_order_acq_rel) == 2) futex::wake_one(grant);
}

// The calling thread holds node n's local lock and now competes for G as
// the node's head.
numa_mutex::took numa_mutex::take_global(detail::numa_cohorts& c, unsigned n,
                                         const futex::deadline* d) noexcept {
  // G free, or kept for this node's turn: take it. Returns what was taken,
  // or nothing (s updated) when the CAS lost.
  auto try_take = [&](std::uint32_t& s) {
    if (s == 0)
      return word_.compare_exchange_weak(s, locked, std::memory_order_acquire,
                                         std::memory_order_relaxed)
                 ? took::new_turn
                 : took::nothing;
    if ((s & kept) != 0 && c.turn_node.load(std::memory_order_relaxed) == n &&
        cycle_clock::now() < c.turn_end.load(std::memory_order_relaxed))
      return word_.compare_exchange_weak(s, (s & ~kept) | locked, std::memory_order_acquire,
                                         std::memory_order_relaxed)
                 ? took::kept
                 : took::nothing;
    return took::nothing;
  };
  // While no head waits, G goes to whoever CASes it free: spin for it.
  {
    spinner spin;
    for (;;) {
      std::uint32_t s = word_.load(std::memory_order_relaxed);
      if (const took t = try_take(s); t != took::nothing) return t;
      if ((s & heads) != 0 || !spin.spin()) break;  // heads wait: take a turn after them
    }
  }
  detail::numa_node_cohort& mine = c.node[n];
  const std::uint64_t my_bit = std::uint64_t{1} << n;
  c.guard.lock();
  for (std::uint32_t s = word_.load(std::memory_order_relaxed);;) {
    if (s == 0 || (s & kept) != 0) {
      if (const took t = try_take(s); t != took::nothing) {
        c.guard.unlock();
        return t;
      }
      if (s == 0 || (s & kept) == 0) continue;  // the CAS lost, or the word changed
    }
    if ((s & heads) != 0 || word_.compare_exchange_weak(s, s | heads, std::memory_order_release,
                                                        std::memory_order_relaxed))
      break;
  }
  c.heads_mask.store(c.heads_mask.load(std::memory_order_relaxed) | my_bit,
                     std::memory_order_relaxed);
  c.guard.unlock();

  // Registered: G comes through the grant word. Spin, then park.
  {
    spinner spin;
    while (mine.grant.load(std::memory_order_acquire) != 1 && spin.spin()) {
    }
  }
  for (;;) {
    std::uint32_t g = mine.grant.load(std::memory_order_acquire);
    if (g == 1) {
      mine.grant.store(0, std::memory_order_relaxed);
      return took::new_turn;
    }
    // A turn kept past its end by a node that did not come back: nobody
    // would ever release it, so a waiting head grants it.
    if ((word_.load(std::memory_order_relaxed) & kept) != 0 &&
        cycle_clock::now() >= c.turn_end.load(std::memory_order_relaxed)) {
      c.guard.lock();
      grant_expired_turn(c);
      c.guard.unlock();
      continue;
    }
    if (g == 0 && !mine.grant.compare_exchange_weak(g, 2, std::memory_order_acquire,
                                                    std::memory_order_acquire))
      continue;
    // Sleep no later than the current turn's end (or one turn from now if
    // it is over and its holder has yet to release): G may be kept for the
    // turn's node, and then only a waiting head can move it on.
    const cycle_clock::ticks now = cycle_clock::now();
    const cycle_clock::ticks end = c.turn_end.load(std::memory_order_relaxed);
    const cycle_clock::ticks nap = end > now ? end - now : c.max_turn_ticks;
    const futex::deadline turn_check =
        futex::deadline::after(std::chrono::nanoseconds(static_cast<std::int64_t>(
            static_cast<double>(nap) / cycle_clock::estimated_ticks_per_second() * 1e9)));
    const bool caller_first =
        d != nullptr && !d->is_never() &&
        d->nanoseconds_since_epoch() <= turn_check.nanoseconds_since_epoch() && !d->is_realtime();
    const futex::wait_result r = futex::wait_until(mine.grant, 2, caller_first ? *d : turn_check);
    if (r != futex::wait_result::timed_out) continue;
    if (d == nullptr || !d->passed()) continue;  // the turn check, not the caller's deadline
    // Timed out: withdraw, unless the grant came meanwhile (then it is ours).
    c.guard.lock();
    const std::uint64_t mask = c.heads_mask.load(std::memory_order_relaxed);
    if ((mask & my_bit) == 0) {
      c.guard.unlock();
      continue;  // granted under the guard: grant is 1
    }
    c.heads_mask.store(mask & ~my_bit, std::memory_order_relaxed);
    if ((mask & ~my_bit) == 0) word_.fetch_and(~(heads | kept), std::memory_order_relaxed);
    mine.grant.store(0, std::memory_order_relaxed);
    c.guard.unlock();
    return took::nothing;
  }
}

// The holder holds node n's local lock: pass G to the node's queued threads,
// keep it for the node's turn, or release it.
void numa_mutex::unlock_cohort() noexcept {
  const unsigned n = cohort_.load(std::memory_order_relaxed) - 1;
  detail::numa_cohorts& c = *cohorts_.load(std::memory_order_relaxed);
  detail::numa_node_cohort& mine = c.node[n];
  const bool turn_left =
      mine.passes < bound_ && cycle_clock::now() < c.turn_end.load(std::memory_order_relaxed);
  if (turn_left && mine.waiting.load(std::memory_order_relaxed) != 0) {
    ++mine.passes;
    mine.passed = true;
    bump(c.local_handoffs);
    mine.local.unlock();
    return;
  }
  cohort_.store(0, std::memory_order_relaxed);
  if (turn_left) {
    // Nobody of this node is queued, but its turn has time left and other
    // nodes' heads wait: keep G for the node instead of paying a hand-off
    // (a futex wake-up) each time its one thread comes back. With no head
    // waiting, a plain release is as good.
    std::uint32_t s = locked | heads;
    if (word_.compare_exchange_strong(s, heads | kept, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
      ++mine.passes;
      mine.local.unlock();
      return;
    }
  }
  if (word_.fetch_sub(locked, std::memory_order_acq_rel) - locked != 0) hand_global(n);
  mine.local.unlock();
}

// G was released (LOCKED cleared) with HEADS set: the free lock is reserved,
// and this thread, its last holder, grants it to the next waiting node.
void numa_mutex::hand_global(unsigned from_node) noexcept {
  detail::numa_cohorts& c = *cohorts_.load(std::memory_order_acquire);
  if (from_node == no_node) from_node = numa::current_node() % c.nodes;
  c.guard.lock();
  // Still reserved (HEADS without LOCKED), or the heads that made it so
  // withdrew (timed out) and cleared HEADS: then G was free, and may have
  // been taken since by a new holder that hands it on at its own unlock.
  // Either way, only a reserved word is this thread's to grant, once.
  if (word_.load(std::memory_order_relaxed) == heads) grant_next(c, from_node);
  c.guard.unlock();
}

numa_mutex::statistics numa_mutex::stats() const noexcept {
  statistics s;
  const detail::numa_cohorts* c = cohorts_.load(std::memory_order_acquire);
  if (c == nullptr) return s;
  s.nodes = c->nodes;
  s.contended_acquisitions = c->contended.load(std::memory_order_relaxed);
  s.local_handoffs = c->local_handoffs.load(std::memory_order_relaxed);
  s.global_handoffs = c->global_handoffs.load(std::memory_order_relaxed);
  s.cross_node_handoffs = c->cross_node_handoffs.load(std::memory_order_relaxed);
  s.heads_waiting = c->heads_mask.load(std::memory_order_relaxed);
  return s;
}

}  // namespace hwsync
