// The out-of-line half of hwsync::stm::transaction: slow reads, timestamp
// extension, the commit protocols (software, serial, hardware), blocking
// retry, contention management, and the per-thread descriptor's life.
#include "hwsync/stm/transaction.hpp"

#include <algorithm>
#include <iterator>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "hwsync/cycle_clock.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/htm/capabilities.hpp"
#include "hwsync/htm/transaction.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/spin.hpp"
#include "runtime.hpp"

namespace hwsync::stm {

using detail::mode;
using detail::runtime;
using detail::stripes;

namespace {

// How long a committer that is running holds a stripe (lock to unlock of a
// short transaction, ~0.2 µs at 2.45 GHz).
constexpr std::uint64_t owner_running_ticks = 512;

// Update transactions that read at least this many tvars advance the clock
// after they commit (commit_multi()).
constexpr std::uint32_t advance_after_reads = 8;

thread_local std::unique_ptr<transaction> descriptor_owner;  // frees it at thread exit

std::atomic<std::uint64_t> next_owner_id{1};

// Waits for a stripe a committer holds for write-back: spin briefly, then
// give the CPU away (the holder may be waiting for it when threads
// outnumber cores). Only the serial mode waits like this; software
// transactions abort after tuning::locked_spin_ticks instead.
std::uint64_t wait_unlocked(const std::atomic<std::uint64_t>& s) noexcept {
  unsigned spins = 0;
  for (;;) {
    const std::uint64_t w = s.load(std::memory_order_seq_cst);
    if (!detail::is_locked(w)) return w;
    if (++spins < 64) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace

namespace detail {

std::atomic<unlock_hook> test_after_unlock{nullptr};

constinit thread_local thread_slot slot
    __attribute__((tls_model("initial-exec"))) = {nullptr, nullptr};

transaction* enter_first() {
  transaction* t = &this_thread_transaction();
  // start() skips the tuning in the single-thread mode; loading it here
  // resolves the HTM backend at the thread's first transaction in any mode.
  t->refresh_tuning();
  return t;
}

}  // namespace detail

transaction& this_thread_transaction() {
  if (detail::slot.descriptor == nullptr) [[unlikely]] {
    descriptor_owner.reset(new transaction());
    detail::slot.descriptor = descriptor_owner.get();
  }
  return *detail::slot.descriptor;
}

transaction::transaction()
    : owner_id_(next_owner_id.fetch_add(1, std::memory_order_relaxed)),
      rng_(0x9E3779B97F4A7C15ull * owner_id_ + 1) {
  read_set_.reserve(64);
  writes_.reserve(16);
  arena_.reserve(64);
  undo_words_.reserve(64);
  commit_tag_ = detail::register_descriptor(this);
  own_word_low_bits_ = commit_tag_ != 0 ? commit_tag_ << 1 : detail::stripe_locked;
  set_snapshot(0);
  // Set once, by the first registration (runtime.cpp), which happened
  // before ours under the registry's mutex: a copy in the descriptor's own
  // line spares every commit a load from the runtime's shared lines.
  asymmetric_fence_ = runtime.asymmetric_fence.load(std::memory_order_relaxed);
}

transaction::~transaction() {
  detail::unregister_descriptor(this, commit_tag_, stats_);
  if (detail::slot.descriptor == this) detail::slot.descriptor = nullptr;
}

void transaction::refresh_tuning() noexcept {
  tuning_epoch_ = runtime.tuning_epoch.load(std::memory_order_acquire);
  tuning_ = current_tuning();
  // Resolve the HTM backend now rather than at the first transaction that
  // could use it: start() tests "backend off" first, and an unresolved
  // backend would send every single-thread-mode transaction through the
  // tests behind it.
  if (tuning_.hardware_attempts != 0) (void)htm::active_backend();
}

bool transaction::hardware_backend_active() noexcept {
  const htm::backend b = htm::active_backend();
  return b == htm::backend::rtm || b == htm::backend::policy_emulation;
}

void transaction::clear_logs() noexcept {
  read_set_.clear();
  writes_.clear();
  arena_.clear();
  pointers_.clear();
  locks_.clear();
  undo_words_.clear();
  on_commit_.clear();
  on_abort_.clear();
  filter_ = 0;
  floor_ = 0;
  unlogged_reads_ = 0;
  attention_ = 0;
}

void transaction::begin() {
  if (call_.attempts >= tuning_.serial_after) [[unlikely]] {
    begin_serial();
    return;
  }
  // The single-thread mode: no call, no atomic read-modify-write.
  if (tuning_.single_thread_mode && !call_.no_single && detail::try_enter_single_thread_mode()) {
    mode_ = mode::single_thread;
    return;
  }
  // A logged attempt keeps the thread's last snapshot (rv_: the clock
  // value it last saw): any clock value this thread has seen is a valid
  // rv, and an old one costs at most an extension, while reading the
  // clock here would be a cache miss whenever another core has just
  // advanced it.
  if (call_.force_logged || profile_->writes.load(std::memory_order_relaxed)) {
    mode_ = mode::logged;
    return;
  }
  begin_read_only();
}

// The logs are empty here: every way out of an attempt clears them.
void transaction::begin_serial() {
  count(&statistics::escalations);
  enter_serial();
}

void transaction::retry() {
  check_active();
  attention_ |= retry_requested;
  throw detail::retry_signal{};
}

void transaction::abort(std::uint64_t statistics::*cause) {
  count(cause);
  attention_ |= doomed;
  throw detail::abort_signal{};
}

void transaction::upgrade() {
  profile_->writes.store(true, std::memory_order_relaxed);
  call_.force_logged = true;
  abort(&statistics::aborts_upgrade);
}

// ---- reads ----

namespace {
struct word_source {
  const std::atomic<std::uint64_t>* src;
  std::uint32_t n;
};
void load_words(const void* ctx, void* out) {
  const auto* w = static_cast<const word_source*>(ctx);
  auto* o = static_cast<std::uint64_t*>(out);
  for (std::uint32_t i = 0; i < w->n; ++i) o[i] = w->src[i].load(std::memory_order_acquire);
}
}  // namespace

void transaction::read_words_slow(std::uint32_t idx, const std::atomic<std::uint64_t>* src,
                                  std::uint32_t n, std::uint64_t* out) {
  const word_source ws{src, n};
  read_validated(idx, &load_words, &ws, out);
}

std::uint64_t transaction::read_word_slow(const void* tv, const std::atomic<std::uint64_t>* src) {
  if (const detail::write_entry* e = find_write(tv, 0)) return e->value;
  std::uint64_t out;
  read_words_slow(detail::stripe_index(tv), src, 1, &out);
  return out;
}

void transaction::read_pointer(const void* tv, void (*load)(const void*, void*), void* out) {
  if (mode_ == mode::single_thread) {
    load(tv, out);
    return;
  }
  read_validated(detail::stripe_index(tv), load, tv, out);
}

void transaction::read_validated(std::uint32_t idx, void (*load)(const void*, void*),
                                 const void* ctx, void* out) {
  std::atomic<std::uint64_t>& s = stripes[idx];
  if (mode_ == mode::serial) {
    // No committer that could write this stripe is still in flight once it
    // is seen unlocked (the serial gate, docs/stm.md): the value is stable.
    wait_unlocked(s);
    load(ctx, out);
    read_set_.push_back(idx);  // for a retry's wait only
    return;
  }
  if (mode_ == mode::hardware) {
    // Subscription: the stripe word enters the hardware read set, so a
    // software committer locking it later aborts this transaction.
    if (detail::is_locked(s.load(std::memory_order_relaxed)))
      htm::transaction::abort(detail::code_locked);
    load(ctx, out);
    return;
  }
  const std::uint64_t spin_limit = tuning_.locked_spin_ticks;
  std::uint64_t locked_since = 0;
  for (;;) {
    const std::uint64_t w1 = s.load(std::memory_order_seq_cst);
    if (detail::is_locked(w1)) {
      const std::uint64_t now = cycle_clock::now();
      if (locked_since == 0) locked_since = now;
      if (now - locked_since > spin_limit) abort(&statistics::aborts_locked);
      wait_for_owner(now - locked_since);
      continue;
    }
    if (newer(w1)) {
      extend(detail::version_of(w1));
      continue;
    }
    load(ctx, out);
    if (s.load(std::memory_order_acquire) != w1) continue;
    if (mode_ == mode::logged) {
      read_set_.push_back(idx);
    } else {
      ++unlogged_reads_;
    }
    return;
  }
}

void transaction::extend(std::uint64_t seen) {
  if (mode_ == mode::read_only) {
    // Nothing logged: only an attempt that has read nothing yet can move.
    if (unlogged_reads_ == 0) {
      set_snapshot(detail::advance_clock(seen));
      return;
    }
    // Under GV5 a version above rv is often a commit that ended before this
    // attempt began but that nobody had observed yet: move the clock past
    // it, so a rerun without a log starts after it. A second such abort in
    // one call reruns logged (extension, no more aborts for this reason).
    (void)detail::advance_clock(seen);
    if (call_.read_only_aborted) call_.force_logged = true;
    call_.read_only_aborted = true;
    abort(&statistics::aborts_validation);
  }
  // Move the clock before validating: every read still valid now is valid
  // at `now`, and any later change to it gets a version above `now` (its
  // committer loads the clock after this CAS or load; docs/stm.md).
  const std::uint64_t now = detail::advance_clock(seen);
  if (!validate_reads()) abort(&statistics::aborts_validation);
  set_snapshot(now);
  count(&statistics::extensions);
}

void transaction::wait_for_owner(std::uint64_t waited_ticks) noexcept {
  // A committer holds the stripe for its write-back, a few hundred cycles
  // when it runs: spin that long. When threads outnumber CPUs and it is
  // still held, the owner is likely preempted, and the CPU this thread
  // would spin on is the one it needs.
  if (waited_ticks >= owner_running_ticks && detail::oversubscribed()) {
    count(&statistics::yields);
    std::this_thread::yield();
  } else {
    cpu_relax();
  }
}

bool transaction::validate_reads() const noexcept {
  const std::uint64_t mine = detail::locked_word(owner_id_);
  if (!locked_newer_) {
    // Every stripe this commit holds had a version <= rv when it was locked
    // (lock_write_set checked), so an entry it holds is valid as it is.
    for (const std::uint32_t idx : read_set_) {
      // seq_cst: see below.
      const std::uint64_t w = stripes[idx].load(std::memory_order_seq_cst);
      if (w != mine && (detail::is_locked(w) || newer(w))) return false;
    }
    return true;
  }
  for (const std::uint32_t idx : read_set_) {
    // seq_cst: quiesce() without membarrier relies on these loads' place in
    // the total order (a plain load on x86).
    const std::uint64_t w = stripes[idx].load(std::memory_order_seq_cst);
    if (detail::is_locked(w)) {
      if (w != mine) return false;
      // Locked by this commit: judge the version it replaced.
      const auto it = std::find_if(locks_.begin(), locks_.end(),
                                   [idx](const held_lock& h) { return h.stripe == idx; });
      if (it == locks_.end() || newer(it->previous)) return false;
    } else if (newer(w)) {
      return false;
    }
  }
  return true;
}

// ---- writes ----

void transaction::write_word_logged(const void* tv, std::uint64_t value) {
  if (mode_ == mode::read_only) upgrade();
  if (detail::write_entry* e = find_write(tv, floor_)) {
    e->value = value;
    return;
  }
  writes_.push_back({tv, value, nullptr, 0, 1});
  filter_ |= filter_bit(tv);
}

void transaction::write_words_logged(const void* tv, std::uint32_t n, const std::uint64_t* src) {
  if (mode_ == mode::read_only) upgrade();
  if (detail::write_entry* e = find_write(tv, floor_)) {
    std::memcpy(arena_.data() + e->offset, src, n * sizeof(std::uint64_t));
    return;
  }
  writes_.push_back({tv, 0, nullptr, arena_.size(), n});
  arena_.append(src, n);
  filter_ |= filter_bit(tv);
}

void transaction::write_pointer(const void* tv, void (*load)(const void*, void*),
                                void (*store)(const void*, const std::shared_ptr<const void>&),
                                std::shared_ptr<const void> p) {
  if (mode_ == mode::single_thread) {
    std::shared_ptr<const void> old;
    load(tv, &old);
    writes_.push_back({tv, 0, store, static_cast<std::uint32_t>(pointers_.size()), 0});
    pointers_.push_back(std::move(old));
    store(tv, p);
    attention_ |= rare_work;  // the commit clears writes_ and pointers_
    return;
  }
  if (mode_ == mode::read_only) upgrade();
  if (const detail::write_entry* e = find_write(tv, floor_)) {
    pointers_[e->offset] = std::move(p);
    return;
  }
  writes_.push_back({tv, 0, store, static_cast<std::uint32_t>(pointers_.size()), 0});
  pointers_.push_back(std::move(p));
  filter_ |= filter_bit(tv);
}

void transaction::undo_single_thread(std::uint32_t writes_to, std::uint32_t words_to) noexcept {
  // Newest first, so a tvar written twice gets its oldest value back.
  for (std::uint32_t i = undo_words_.size(); i-- > words_to;)
    undo_words_[i].word->store(undo_words_[i].old, std::memory_order_relaxed);
  undo_words_.resize(words_to);
  for (std::uint32_t i = writes_.size(); i-- > writes_to;) {
    const detail::write_entry& e = writes_[i];
    e.store_pointer(e.tvar, pointers_[e.offset]);
  }
}

void transaction::rollback_to(const checkpoint& cp) noexcept {
  if (mode_ == mode::single_thread) undo_single_thread(cp.writes, cp.undo_words);
  writes_.resize(cp.writes);
  arena_.resize(cp.arena);
  pointers_.resize(cp.pointers);
  filter_ = cp.filter;
  on_commit_.resize(cp.on_commit);
  // The abandoned branch's on_abort callbacks run now: its effects are gone.
  std::vector<std::function<void()>> branch(
      std::make_move_iterator(on_abort_.begin() + cp.on_abort),
      std::make_move_iterator(on_abort_.end()));
  on_abort_.resize(cp.on_abort);
  detail::slot.current = nullptr;
  for (auto& cb : branch) cb();
  detail::slot.current = this;
}

// ---- commit ----

bool transaction::lock_write_set(bool wait) {
  const std::uint64_t mine = detail::locked_word(owner_id_);
  locked_newer_ = false;
  const std::uint64_t spin_limit = tuning_.locked_spin_ticks;
  for (const detail::write_entry& e : writes_) {
    const std::uint32_t idx = e.stripe();
    std::atomic<std::uint64_t>& s = stripes[idx];
    std::uint64_t locked_since = 0;
    for (;;) {
      std::uint64_t w = s.load(std::memory_order_relaxed);
      if (w == mine) break;  // two tvars on one stripe
      if (detail::is_locked(w)) {
        if (wait) {
          wait_unlocked(s);
          continue;
        }
        const std::uint64_t now = cycle_clock::now();
        if (locked_since == 0) locked_since = now;
        if (now - locked_since > spin_limit) {
          release_locks();
          return false;
        }
        // Never give the CPU away while holding stripes: others would wait
        // on them for a whole time slice. With some held, abort instead
        // (after the bounded spin); the backoff yields.
        if (locks_.empty()) {
          wait_for_owner(now - locked_since);
        } else {
          cpu_relax();
        }
        continue;
      }
      // seq_cst: the Dekker pair with the serial gate (enter_serial).
      if (s.compare_exchange_weak(w, mine, std::memory_order_seq_cst, std::memory_order_relaxed)) {
        locks_.push_back({idx, w});
        locked_newer_ |= newer(w);
        break;
      }
    }
  }
  return true;
}

void transaction::release_locks() noexcept {
  for (const held_lock& h : locks_) stripes[h.stripe].store(h.previous, std::memory_order_release);
  locks_.clear();
}

void transaction::write_back() noexcept {
  // Release stores: a reader whose value load sees one of them also sees the
  // stripe locked when it re-reads it (the seqlock argument, docs/stm.md).
  for (const detail::write_entry& e : writes_) {
    if (e.count == 1) {
      e.words()[0].store(e.value, std::memory_order_release);
    } else if (e.count != 0) {
      for (std::uint32_t k = 0; k < e.count; ++k)
        e.words()[k].store(arena_[e.offset + k], std::memory_order_release);
    } else {
      e.store_pointer(e.tvar, pointers_[e.offset]);
    }
  }
}

void transaction::unlock_write_set(std::uint64_t wv) noexcept {
  for (const held_lock& h : locks_) {
    stripes[h.stripe].store(detail::unlocked_word(wv, commit_tag_), std::memory_order_release);
    detail::after_stripe_unlock(h.stripe);
  }
  locks_.clear();
}

std::uint64_t transaction::take_commit_version() noexcept {
  // Published before the read set is validated: quiesce() (an asymmetric
  // fence, see runtime.cpp) either sees it or runs before the validation,
  // which then sees the privatizing commit and fails.
  if (asymmetric_fence_) {
    commit_state_.store(std::numeric_limits<std::uint64_t>::max(), std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // membarrier does the rest
  } else {
    commit_state_.exchange(std::numeric_limits<std::uint64_t>::max(), std::memory_order_seq_cst);
  }
  // GV5: no increment. The stripes are locked already, so a reader whose
  // rv reaches wv (by advancing the clock past this load) sees them locked
  // or written back. Concurrent committers may share wv.
  const std::uint64_t wv = runtime.clock.load(std::memory_order_seq_cst) + 1;
  // Retry waiters: the Dekker pair with park_on_read_set() (register, then
  // load the stripes, both seq_cst). Read here, with the stripes already
  // locked: a waiter that registers after this load finds them locked or
  // with their new version, and does not park; one that registered before
  // is seen and woken after the unlock. So the unlock can be a plain release.
  wake_after_unlock_ = runtime.retry_waiters.load(std::memory_order_seq_cst) != 0;
  return wv;
}

void transaction::finish_write_back() {
  commit_state_.store(0, std::memory_order_release);
  if (wake_after_unlock_) wake_retry_waiters();
}

void transaction::commit_general() {
  if (attention_ & doomed) throw detail::abort_signal{};
  if (attention_ & retry_requested) throw detail::retry_signal{};
  switch (mode_) {
    case mode::single_thread:
      leave_mode();
      count(&statistics::single_thread_commits);
      committed();
      return;
    case mode::read_only:
      count(&statistics::read_only_commits);
      committed();
      return;
    case mode::serial:
      commit_serial();
      count(&statistics::serial_commits);
      committed();
      return;
    case mode::hardware:
      break;
    case mode::logged: {
      if (writes_.empty()) {
        count(&statistics::read_only_commits);
        committed();
        return;
      }
      // Larger write sets, and those commit_small() declined (commit_multi()
      // tried it first).
      if (!lock_write_set(false)) abort(&statistics::aborts_locked);
      if (runtime.serial_gate.load(std::memory_order_seq_cst) & detail::gate_serial) {
        release_locks();
        abort(&statistics::aborts_serial);
      }
      const std::uint64_t wv = take_commit_version();
      // No shortcut when wv == rv + 1: under GV5 other commits may have
      // used that version without moving the clock.
      if (!validate_reads()) {
        release_locks();
        commit_state_.store(0, std::memory_order_release);
        abort(&statistics::aborts_validation);
      }
      write_back();
      unlock_write_set(wv);
      finish_write_back();
      // The next logged attempt's snapshot: the clock value loaded above (a
      // value the clock had), not wv, which the clock may never reach.
      set_snapshot(wv - 1);
      // A long transaction advances the clock past its own commit: its
      // readers are likely long too (a traversal of the same structure),
      // and each would otherwise pay an extension over its whole read set,
      // or a read-only rerun, for a version the clock has not reached. Next
      // to validating this many reads, one CAS is small; short
      // transactions (the bank, a hash bucket) leave the clock alone.
      if (read_set_.size() >= advance_after_reads) set_snapshot(detail::advance_clock(wv));
      count(&statistics::update_commits);
      committed();
      return;
    }
  }
}

// The logged commit of one or two word-sized tvars (a transfer, a counter
// pair): the same protocol as the general path in commit_general(), with
// the stripes in locals instead of the locks_ log and no loop. Returns
// false, holding nothing, where the general path must decide: a larger tvar
// or a shared_ptr, a stripe locked by someone else or lost to a racing CAS
// (the general path's bounded wait), or a written stripe newer than rv (its
// validation compares against the version the lock replaced). Its aborts
// and its rare endings (retry waiters to wake, a clock to advance) are out
// of line, so that they add no calls to the committing path.
// Called by commit_multi() for a logged attempt, not doomed, with one or two
// write entries.
inline bool transaction::commit_small() {
  const detail::write_entry& a = writes_[0];
  const detail::write_entry& b = writes_[writes_.size() - 1];  // a again for one entry
  // count is 0 for a shared_ptr entry and the word count otherwise: 1 means
  // a word tvar (its words are at its address).
  if (a.count != 1 || b.count != 1) return false;
  const std::uint64_t mine = detail::locked_word(owner_id_);
  const std::uint32_t stripe_a = a.stripe();
  const std::uint32_t stripe_b = b.stripe();
  std::atomic<std::uint64_t>& sa = stripes[stripe_a];
  std::atomic<std::uint64_t>& sb = stripes[stripe_b];
  const bool two_stripes = &sb != &sa;
  std::uint64_t wa = sa.load(std::memory_order_relaxed);
  if (detail::is_locked(wa) || newer(wa)) return false;
  // seq_cst: the Dekker pair with the serial gate (enter_serial).
  if (!sa.compare_exchange_strong(wa, mine, std::memory_order_seq_cst, std::memory_order_relaxed))
    return false;
  std::uint64_t wb = wa;
  if (two_stripes) {
    wb = sb.load(std::memory_order_relaxed);
    if (detail::is_locked(wb) || newer(wb) ||
        !sb.compare_exchange_strong(wb, mine, std::memory_order_seq_cst,
                                    std::memory_order_relaxed)) {
      sa.store(wa, std::memory_order_release);
      return false;
    }
  }
  if (runtime.serial_gate.load(std::memory_order_seq_cst) & detail::gate_serial) [[unlikely]]
    abort_commit_small(wa, wb, false, &statistics::aborts_serial);
  const std::uint64_t wv = take_commit_version();
  // Both written stripes had a version <= rv when locked and stay locked,
  // so a read-set entry this commit holds is valid as it is (in the bank,
  // every entry): only the others are loaded. seq_cst as in validate_reads().
  for (const std::uint32_t idx : read_set_) {
    const std::uint64_t w = stripes[idx].load(std::memory_order_seq_cst);
    if (w != mine && (detail::is_locked(w) || newer(w))) [[unlikely]]
      abort_commit_small(wa, wb, true, &statistics::aborts_validation);
  }
  const std::uint64_t unlocked = detail::unlocked_word(wv, commit_tag_);
  // Release stores: the seqlock argument, as in write_back(). In this
  // order: after an or_else, b may be a newer entry for the same tvar.
  a.words()[0].store(a.value, std::memory_order_release);
  b.words()[0].store(b.value, std::memory_order_release);
  // One store per stripe held: once unlocked, a stripe may be locked by
  // another committer at once, and a second unlock store to it would
  // release that committer's lock (lost updates under the tsan preset:
  // OneStripeCommitUnlockedTwiceAndReleasedAnotherCommittersLock).
  sa.store(unlocked, std::memory_order_release);
  detail::after_stripe_unlock(stripe_a);
  if (two_stripes) {
    sb.store(unlocked, std::memory_order_release);
    detail::after_stripe_unlock(stripe_b);
  }
  commit_state_.store(0, std::memory_order_release);  // finish_write_back(), its first half
  set_snapshot(wv - 1);                               // as in commit_general()
  count(&statistics::update_commits);
  // What needs a call goes out of line, behind one branch: waking retry
  // waiters, advancing the clock after a long read set (as in
  // commit_general()), on_abort callbacks to drop.
  if (wake_after_unlock_ || read_set_.size() >= advance_after_reads || (attention_ & rare_work))
      [[unlikely]]
    return finish_commit_small(wv);
  committed_small();
  return true;
}

bool transaction::finish_commit_small(std::uint64_t wv) {
  if (wake_after_unlock_) wake_retry_waiters();
  if (read_set_.size() >= advance_after_reads) set_snapshot(detail::advance_clock(wv));
  if (!on_abort_.empty()) on_abort_.clear();
  committed_small();
  return true;
}

void transaction::commit_multi() {
  // The hot case first, with nothing on the way to it: a logged attempt
  // that wrote one or two word tvars (a transfer, a counter pair).
  if (mode_ == mode::logged && (attention_ & (doomed | retry_requested)) == 0 &&
      writes_.size() - 1 < 2 && commit_small()) [[likely]]
    return;
  commit_general();
}

// commit_small() lost after locking: puts back the words its locks replaced
// (each stripe once, see the unlock above) and aborts. After
// take_commit_version() it also tells quiesce() no write-back is coming.
void transaction::abort_commit_small(std::uint64_t wa, std::uint64_t wb, bool version_taken,
                                     std::uint64_t statistics::*cause) {
  const detail::write_entry& a = writes_[0];
  const detail::write_entry& b = writes_[writes_.size() - 1];
  const std::uint32_t sa = a.stripe();
  const std::uint32_t sb = b.stripe();
  stripes[sa].store(wa, std::memory_order_release);
  if (sb != sa) stripes[sb].store(wb, std::memory_order_release);
  if (version_taken) commit_state_.store(0, std::memory_order_release);
  abort(cause);
}

void transaction::commit_serial() {
  if (!writes_.empty()) {
    lock_write_set(true);
    const std::uint64_t wv = take_commit_version();
    write_back();
    unlock_write_set(wv);
    finish_write_back();
  }
  leave_mode();
}

void transaction::wake_retry_waiters() {
  std::lock_guard g(detail::waiters_mutex());
  for (detail::waiter* w : detail::waiters()) {
    if (w->woken.load(std::memory_order_relaxed) != 0) continue;
    for (const detail::write_entry& e : writes_) {
      if (std::binary_search(w->stripes, w->stripes + w->stripe_count, e.stripe())) {
        w->woken.store(1, std::memory_order_release);
        futex::wake_one(w->woken);
        break;
      }
    }
  }
}

// ---- after an attempt ----

void transaction::leave_mode() noexcept {
  if (mode_ == mode::serial) {
    leave_serial();
  } else if (mode_ == mode::single_thread) {
    detail::leave_single_thread_mode();
  }
  mode_ = mode::logged;
}

void transaction::run_on_abort() noexcept {
  if (on_abort_.empty()) return;
  std::vector<std::function<void()>> callbacks;
  callbacks.swap(on_abort_);
  detail::slot.current = nullptr;
  for (auto& cb : callbacks) cb();
  detail::slot.current = this;
  callbacks.clear();
  if (on_abort_.empty()) on_abort_.swap(callbacks);  // keep the block (run_on_commit)
}

void transaction::after_abort() {
  if (mode_ == mode::single_thread) undo_single_thread(0, 0);
  leave_mode();
  run_on_abort();
  clear_logs();
  ++call_.attempts;
  refresh_tuning_if_stale();  // for the backoff and begin()
  if (runtime.serial_gate.load(std::memory_order_acquire) & detail::gate_serial) {
    wait_for_serial_gate();
  } else {
    backoff();
  }
}

void transaction::after_retry() {
  refresh_tuning_if_stale();  // for begin()
  count(&statistics::aborts_explicit);
  const mode m = mode_;
  if (m == mode::single_thread) undo_single_thread(0, 0);
  leave_mode();  // a parked thread must hold neither the serial gate nor its mutex
  run_on_abort();
  if (m == mode::read_only || m == mode::single_thread) {
    // Nothing logged to wait on: rerun with a read log; its retry parks.
    call_.force_logged = true;
    call_.no_single = true;
    clear_logs();
    return;
  }
  park_on_read_set();
  clear_logs();
}

void transaction::after_exception() noexcept {
  if (mode_ == mode::single_thread) undo_single_thread(0, 0);
  leave_mode();
  count(&statistics::aborts_exception);
  run_on_abort();
  clear_logs();
  detail::slot.current = nullptr;
}

// Callbacks may start transactions of their own (which fill on_commit_
// again), so they run from a moved-out list; the list's block then goes
// back, so the next transaction with a callback does not allocate.
// after_commit() with rare_work set: the commit cleared every log but the
// on_commit callbacks.
void transaction::finish_rare_work() {
  attention_ = 0;
  if (!on_commit_.empty()) run_on_commit();
}

void transaction::run_on_commit() {
  std::vector<std::function<void()>> callbacks;
  callbacks.swap(on_commit_);
  for (auto& cb : callbacks) cb();
  callbacks.clear();
  if (on_commit_.empty()) on_commit_.swap(callbacks);
}

void transaction::park_on_read_set() {
  std::sort(read_set_.begin(), read_set_.end());
  read_set_.erase_from(std::unique(read_set_.begin(), read_set_.end()));
  detail::waiter me;
  me.stripes = read_set_.data();
  me.stripe_count = read_set_.size();
  {
    std::lock_guard g(detail::waiters_mutex());
    detail::waiters().push_back(&me);
    runtime.retry_waiters.fetch_add(1, std::memory_order_seq_cst);
  }
  // Registered first, validated second (seq_cst on both sides): a commit
  // either shows up here as a changed stripe or sees the waiter and wakes it.
  bool unchanged = true;
  for (const std::uint32_t idx : read_set_) {
    const std::uint64_t w = stripes[idx].load(std::memory_order_seq_cst);
    if (detail::is_locked(w) || newer(w)) {
      unchanged = false;
      break;
    }
  }
  if (unchanged) {
    count(&statistics::retries_parked);
    while (me.woken.load(std::memory_order_acquire) == 0) futex::wait(me.woken, 0);
  }
  std::lock_guard g(detail::waiters_mutex());
  auto& list = detail::waiters();
  list.erase(std::find(list.begin(), list.end(), &me));
  runtime.retry_waiters.fetch_sub(1, std::memory_order_relaxed);
}

void transaction::backoff() noexcept {
  const tuning& t = tuning_;
  const unsigned shift = std::min(call_.attempts, 24u);
  const std::uint64_t window = std::min(t.backoff_min_ticks << shift, t.backoff_max_ticks);
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const std::uint64_t wait = window > 0 ? rng_ % window : 0;
  const std::uint64_t until = cycle_clock::now() + wait;
  // Long windows, and every window when threads outnumber CPUs, give the
  // CPU away: the transaction this one conflicts with may be waiting for it.
  const bool yield = window >= 8192 || detail::oversubscribed();
  while (cycle_clock::now() < until) {
    if (yield) {
      count(&statistics::yields);
      std::this_thread::yield();
    } else {
      cpu_relax();
    }
  }
}

void transaction::wait_for_serial_gate() noexcept {
  spinner spin;
  for (;;) {
    std::uint32_t g = runtime.serial_gate.load(std::memory_order_acquire);
    if ((g & detail::gate_serial) == 0) return;
    if (spin.spin()) continue;
    if ((g & detail::gate_waiters) == 0 &&
        !runtime.serial_gate.compare_exchange_weak(g, g | detail::gate_waiters,
                                                   std::memory_order_relaxed))
      continue;
    futex::wait(runtime.serial_gate, g | detail::gate_waiters);
  }
}

void transaction::enter_serial() {
  detail::serial_mutex().lock();
  // seq_cst: the Dekker pair with lock_write_set's CAS and commit's gate load.
  runtime.serial_gate.fetch_or(detail::gate_serial, std::memory_order_seq_cst);
  set_snapshot(runtime.clock.load(std::memory_order_seq_cst));
  mode_ = mode::serial;
}

void transaction::leave_serial() noexcept {
  const std::uint32_t old = runtime.serial_gate.exchange(0, std::memory_order_seq_cst);
  if (old & detail::gate_waiters) futex::wake_all(runtime.serial_gate);
  detail::serial_mutex().unlock();
}

// ---- the hardware fast path ----

void transaction::begin_hardware() {
  clear_logs();
  if (htm::active_backend() == htm::backend::policy_emulation) {
    // The emulation cannot roll back and does not isolate: run the attempt
    // under the serial protocol, so it is atomic against software commits
    // too, and count it as hardware.
    hardware_emulated_ = true;
    enter_serial();
    return;
  }
  hardware_emulated_ = false;
  mode_ = mode::hardware;
  // Subscribe to the serial gate: a serial transaction starting later
  // writes it and aborts this one.
  if (runtime.serial_gate.load(std::memory_order_relaxed) & detail::gate_serial)
    htm::transaction::abort(detail::code_serial);
}

void transaction::commit_hardware() {
  if (attention_ & doomed) throw detail::abort_signal{};
  if (attention_ & retry_requested) throw detail::retry_signal{};
  if (hardware_emulated_) {
    commit_serial();
    htm::transaction::commit();
    count(&statistics::hardware_commits);
    committed();
    return;
  }
  // Inside the hardware transaction: every written stripe must be free (its
  // word joins the read set, so a software committer locking it aborts us),
  // then values, clock and versions change in one atomic step.
  for (const detail::write_entry& e : writes_)
    if (detail::is_locked(stripes[e.stripe()].load(std::memory_order_relaxed)))
      htm::transaction::abort(detail::code_locked);
  if (!writes_.empty()) {
    // GV5 as in software: the clock is read (it joins the read set: a
    // reader advancing it aborts us) but not written, so two hardware
    // writers do not conflict on it. Values and versions change in one
    // atomic step while the clock is below wv.
    const std::uint64_t wv = runtime.clock.load(std::memory_order_relaxed) + 1;
    write_back();
    for (const detail::write_entry& e : writes_)
      stripes[e.stripe()].store(detail::unlocked_word(wv, 0), std::memory_order_relaxed);
  }
  htm::transaction::commit();
  mode_ = mode::logged;
  if (!writes_.empty() && runtime.retry_waiters.load(std::memory_order_seq_cst) != 0)
    wake_retry_waiters();
  count(&statistics::hardware_commits);
  committed();
}

void transaction::abandon_hardware(detail::abandon_cause cause) {
  if (!hardware_emulated_) {
    switch (cause) {
      case detail::abandon_cause::retry:
        htm::transaction::abort(detail::code_retry);
        break;
      case detail::abandon_cause::abort:
        htm::transaction::abort(detail::code_abort);
        break;
      case detail::abandon_cause::exception:
        htm::transaction::abort(detail::code_exception);
        break;
    }
    // Not reached on RTM: XABORT returns to begin().
  }
  // Emulated: nothing was written (the redo log is dropped); release the
  // serial gate and the emulation's lock.
  leave_mode();
  htm::transaction::commit();
  if (cause == detail::abandon_cause::exception) {
    after_exception();
    return;
  }
  run_on_abort();
  clear_logs();
  count(&statistics::hw_aborts_explicit);
  count(&statistics::hw_fallbacks);
}

bool transaction::hardware_aborted(const htm::status& s) noexcept {
  if (s.is_unavailable()) return false;
  bool again = true;
  if (s.capacity()) {
    count(&statistics::hw_aborts_capacity);
    again = false;  // the same footprint overflows again
  } else if (s.is_explicit()) {
    count(&statistics::hw_aborts_explicit);
    const std::uint8_t c = s.explicit_code();
    // retry and exceptions need the software path's semantics.
    if (c == detail::code_retry || c == detail::code_exception) again = false;
    if (c == detail::code_serial) wait_for_serial_gate();
  } else if (s.conflict()) {
    count(&statistics::hw_aborts_conflict);
  } else {
    count(&statistics::hw_aborts_other);
  }
  if (again && ++call_.hardware_tries < tuning_.hardware_attempts) return true;
  count(&statistics::hw_fallbacks);
  return false;
}

}  // namespace hwsync::stm
