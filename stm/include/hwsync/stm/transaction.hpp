// hwsync/stm/transaction.hpp — hwsync::stm::transaction, the handle user code
// gets inside atomically(): read, write, retry, or_else, on_commit, on_abort.
//
// Contract
//   One descriptor per thread, reused by every transaction of that thread
//   (its logs keep their capacity). User code only ever sees it as the
//   argument of the function given to atomically() (hwsync/stm/atomically.hpp).
//   Algorithm     TL2 with LSA timestamp extension and a lazily advanced
//                 clock (TL2's GV5): reads are validated against the read
//                 version rv (the clock sampled at begin for a read-only
//                 attempt; for a logged one the clock value the thread last
//                 saw) one by one, so user code never sees an inconsistent
//                 state (opacity), even in an attempt that will abort. A
//                 version newer than rv is not an abort by itself: the clock
//                 is advanced to it (one CAS), the read set is revalidated
//                 and rv moves there (extension). The thread's own commits
//                 at rv + 1 (their stripe words carry its commit tag) are
//                 taken as they are: disjoint writers never extend past each
//                 other, nor write the clock. Writes go to a redo log;
//                 commit locks the written stripes, loads the clock c (no
//                 increment: wv = c + 1 may be shared by concurrent
//                 committers), revalidates the read set, writes back, and
//                 unlocks with version wv (a commit that read 8 tvars or
//                 more then advances the clock to wv). One or two written
//                 word tvars take the same steps without loops
//                 (commit_small). docs/stm.md, "The clock", has the
//                 opacity argument.
//   Modes         (chosen per attempt, see begin())
//                 read_only      no read log; a version newer than rv aborts
//                                (it advances the clock first, so the rerun
//                                starts past it; a second such abort in one
//                                call reruns logged); a write upgrades
//                                (abort, rerun logged). Used at call sites
//                                that have never written.
//                 logged         the TL2 path above.
//                 serial         irrevocable: holds the serial mutex and the
//                                serial gate, so no other transaction
//                                commits while it runs; its reads cannot be
//                                invalidated and it always commits. Entered
//                                after tuning::serial_after aborts.
//                 single_thread  the only thread with a descriptor (a thread
//                                registering one waits for the running
//                                transaction to end), so reads and writes
//                                go straight to the tvars, with an undo log
//                                for exceptions, retry and or_else. No
//                                stripe, clock, read log or atomic
//                                read-modify-write.
//                 hardware       the HTM fast path (hwsync/htm): reads check
//                                the stripe is unlocked (else XABORT), the
//                                commit writes back, bumps the clock and the
//                                stripe versions inside the hardware
//                                transaction. Under HWSYNC_HTM=emulate it runs
//                                the serial protocol (the emulation cannot
//                                roll back). docs/stm.md, "Hybrid protocol".
//   Blocking      retry() ends the attempt; the thread registers its read
//                 set, revalidates it, and parks on a futex until a commit
//                 writes one of those stripes. Never a busy loop.
//   Contention    after an abort: randomized exponential backoff in
//                 cycle_clock ticks (yielding the CPU for long waits), and
//                 after serial_after aborts the serial mode, which cannot
//                 abort: no transaction starves.
//   Exceptions    a user exception discards the attempt (redo log dropped,
//                 undo log applied), runs on_abort callbacks and propagates.
//                 The STM's own signals (abort, retry) are exceptions too:
//                 user code that catches (...) must rethrow; one that
//                 swallows them still cannot commit (the attempt is doomed).
//   Nesting       flat: a nested atomically() joins the outer transaction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "hwsync/debug_checks.hpp"
#include "hwsync/htm/elision_policy.hpp"
#include "hwsync/stm/log_buffer.hpp"
#include "hwsync/stm/statistics.hpp"
#include "hwsync/stm/stripe_table.hpp"
#include "hwsync/stm/tvar.hpp"

namespace hwsync::htm {
class status;
}

namespace hwsync::stm {

// Contention management and fast-path tuning, process-wide.
struct tuning {
  unsigned serial_after = 16;                  // aborts of one atomically() before it runs serially
  std::uint64_t backoff_min_ticks = 128;       // first backoff window (cycle_clock ticks)
  std::uint64_t backoff_max_ticks = 1u << 16;  // the window doubles up to this (~27 µs at 2.45 GHz)
  std::uint64_t locked_spin_ticks = 2048;      // wait this long for a locked stripe, then abort
  unsigned hardware_attempts = 4;              // hardware tries before software (capacity: at once)
  bool single_thread_mode = true;  // the uninstrumented mode when one thread uses the STM

  // Throws std::invalid_argument naming the field, what was expected and the value.
  void validate() const;
};
tuning current_tuning() noexcept;
void set_tuning(const tuning& t);  // validates; takes effect at the next attempt

// Privatization fence: returns once every update transaction that committed
// before the call has finished writing back. After a transaction makes data
// private (say, unlinks a node), call it before touching that data with
// unsafe_load/unsafe_store. Costs one pass over the thread list plus the
// wait; the price on the commit path is one store to the committer's own
// cache line (docs/stm.md, "Privatization").
void quiesce();

namespace detail {

// tuning::single_thread_mode as set_tuning() last stored it. start() tests
// it before anything else, so that the single-thread mode needs neither the
// tuning epoch nor the descriptor's copy of the tuning.
extern std::atomic<bool> single_thread_mode_enabled;

struct abort_signal {};  // the attempt aborted; atomically() reruns it
struct retry_signal {};  // tx.retry(): atomically() blocks, then reruns

enum class mode : std::uint8_t { read_only, logged, serial, hardware, single_thread };

// One per atomically() call site (the function object's type): whether it
// has ever written, so a reader-only site starts without a read log.
struct site_profile {
  std::atomic<bool> writes{false};
};

// One redo-log entry, 32 bytes. A word tvar's entry is three stores on
// the write path (tvar, value, and offset with count in one word): its
// words are the tvar's own address (tvar<T>::words_ is its first and only
// member, checked in transaction::write()) and its stripe is computed at
// commit from that address, as every read computes it. A larger tvar's
// words sit in arena_; a shared_ptr tvar's value in pointers_.
struct write_entry {
  const void* tvar;
  std::uint64_t value;  // the new value when count is 1; else not written
  // count 0 only (a shared_ptr tvar); else not written.
  void (*store_pointer)(const void*, const std::shared_ptr<const void>&);
  std::uint32_t offset;  // into arena_ (count > 1) or pointers_ (shared_ptr); else 0
  std::uint32_t count;   // words: 0 for a shared_ptr tvar

  // Not for a shared_ptr tvar (count 0).
  std::atomic<std::uint64_t>* words() const noexcept {
    return static_cast<std::atomic<std::uint64_t>*>(const_cast<void*>(tvar));
  }
  std::uint32_t stripe() const noexcept { return stripe_index(tvar); }
};
static_assert(sizeof(write_entry) == 32);

enum class abandon_cause : std::uint8_t { retry, abort, exception };

// Debug-checks builds only: called right after a commit stores the unlocked
// word of a stripe it held, so a test can lock that stripe "between" two
// steps of the commit and check that nothing the commit does afterwards
// touches it (stm_test: OneStripeCommitUnlockedTwiceAndReleasedAnotherCommittersLock).
// Release builds compile the call away.
using unlock_hook = void (*)(std::uint32_t stripe);
extern std::atomic<unlock_hook> test_after_unlock;
inline void after_stripe_unlock(std::uint32_t stripe) noexcept {
  if constexpr (debug::checks_enabled) {
    if (const unlock_hook h = test_after_unlock.load(std::memory_order_acquire)) [[unlikely]]
      h(stripe);
  }
}

// Per thread: the running transaction and the thread's descriptor.
// initial-exec: one %fs-relative access from inline code, no
// __tls_get_addr call (the library is linked, not dlopen'ed).
struct thread_slot {
  transaction* current;     // the running transaction, or null
  transaction* descriptor;  // this thread's descriptor, or null before its first use
};
extern constinit thread_local thread_slot slot __attribute__((tls_model("initial-exec")));

// The calling thread's transaction while atomically() runs one, else null.
inline transaction* current_transaction() noexcept {
  return slot.current;
}

// How atomically() entered: it joined the running transaction (flat
// nesting), or it started a call whose first attempt enter() began in
// software, or whose first attempt is to try the hardware path.
enum class entry : std::uint8_t { nested, software, hardware };

// atomically()'s entry: the running transaction when called inside one,
// else the thread's descriptor, created on first use (enter_first) and
// started for this call site (transaction::start()).
inline transaction* enter(site_profile& profile, entry& how);
// Creates the calling thread's descriptor (registering the thread) and
// loads the tuning into it.
transaction* enter_first();

}  // namespace detail

class transaction {
 public:
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  template <class T>
  [[gnu::always_inline]] T read(const tvar<T>& v) {
    check_active();
    // Inline at the call site only the single-thread mode's read, a mode
    // test and a plain load: a larger body would not be inlined into the
    // user's accessor functions, and every read would pay a call.
    if (mode_ == detail::mode::single_thread) {
      // Writes went in place: the tvar holds this transaction's view.
      std::uint64_t buf[tvar<T>::word_count];
      for (std::uint32_t i = 0; i < tvar<T>::word_count; ++i)
        buf[i] = v.words_[i].load(std::memory_order_relaxed);
      return tvar<T>::from_words(buf);
    }
    return read_instrumented(v);
  }

  template <class T>
  std::shared_ptr<const T> read(const tvar<std::shared_ptr<const T>>& v) {
    check_active();
    if (const detail::write_entry* e = find_write(&v, 0))
      return std::static_pointer_cast<const T>(pointers_[e->offset]);
    std::shared_ptr<const void> p;
    read_pointer(&v, &tvar<std::shared_ptr<const T>>::load_erased, &p);
    return std::static_pointer_cast<const T>(std::move(p));
  }

  template <class T>
  [[gnu::always_inline]] void write(tvar<T>& v, const std::type_identity_t<T>& x) {
    check_active();
    constexpr std::uint32_t n = tvar<T>::word_count;
    // Two buffers: the logged path passes its address on, which would keep
    // the single-thread mode's value on the stack too.
    if (mode_ == detail::mode::single_thread) {
      std::uint64_t words[n];
      tvar<T>::to_words(x, words);
      // In place, with an undo record of each old word.
      for (std::uint32_t i = 0; i < n; ++i) {
        undo_words_.push_back({&v.words_[i], v.words_[i].load(std::memory_order_relaxed)});
        v.words_[i].store(words[i], std::memory_order_relaxed);
      }
      return;
    }
    // The redo entry names the tvar by its address and writes back through
    // the same address (write_entry::words()).
    static_assert(offsetof(tvar<T>, words_) == 0, "a tvar's words are at its address");
    std::uint64_t buf[n];
    tvar<T>::to_words(x, buf);
    if constexpr (n == 1) {
      write_word(&v, buf[0]);
    } else {
      write_words(&v, n, buf);
    }
  }

  template <class T>
  void write(tvar<std::shared_ptr<const T>>& v, std::shared_ptr<const T> x) {
    check_active();
    write_pointer(&v, &tvar<std::shared_ptr<const T>>::load_erased,
                  &tvar<std::shared_ptr<const T>>::store_erased,
                  std::static_pointer_cast<const void>(std::move(x)));
  }

  // Ends the attempt and blocks until another transaction commits to a tvar
  // this one has read (in or_else: in either branch), then reruns it.
  [[noreturn]] void retry();

  // Runs f1; if f1 retries, undoes f1's writes and callbacks (keeping its
  // reads, so a retry of the whole waits on both branches) and runs f2.
  template <class F1, class F2>
  auto or_else(F1&& f1, F2&& f2) -> std::invoke_result_t<F1&, transaction&> {
    const checkpoint cp = save();
    const std::uint32_t outer_floor = floor_;
    floor_ = writes_.size();
    try {
      if constexpr (std::is_void_v<std::invoke_result_t<F1&, transaction&>>) {
        f1(*this);
        floor_ = outer_floor;
        return;
      } else {
        auto r = f1(*this);
        floor_ = outer_floor;
        return r;
      }
    } catch (const detail::retry_signal&) {
      rollback_to(cp);
      floor_ = outer_floor;
      attention_ &= ~retry_requested;
    } catch (...) {
      floor_ = outer_floor;
      throw;
    }
    return f2(*this);
  }

  // Runs cb once, after this transaction commits, outside any transaction.
  template <class F>
  void on_commit(F&& cb) {
    check_active();
    on_commit_.emplace_back(std::forward<F>(cb));
    attention_ |= rare_work;
  }
  // Runs cb if this attempt is rolled back (abort, retry, exception); it is
  // then forgotten (a rerun registers again).
  template <class F>
  void on_abort(F&& cb) {
    check_active();
    on_abort_.emplace_back(std::forward<F>(cb));
    attention_ |= rare_work;
  }

  // ---- used by atomically() (hwsync/stm/atomically.hpp) ----
  // start() (called by detail::enter()) began the call's first attempt, or
  // chose the hardware path for it; begin() begins every later software
  // attempt (after an abort, a retry, or the hardware path's fallback).
  void begin();
  void commit() {
    // The single-thread mode's commit: nothing to publish (the writes went
    // in place), so only the mode to leave, the count, and the undo log to
    // forget. Everything rarer (a swallowed abort or retry signal to
    // rethrow, callbacks, shared_ptr undo records) is behind attention_.
    if (mode_ == detail::mode::single_thread && attention_ == 0) [[likely]] {
      detail::leave_single_thread_mode();
      count(&statistics::single_thread_commits);
      detail::slot.current = nullptr;
      undo_words_.clear();
      return;
    }
    commit_multi();
  }
  void after_abort();
  void after_retry();
  void after_exception() noexcept;
  // After a successful commit (which already left the transaction): runs
  // the on_commit callbacks, if any.
  void after_commit() {
    if (attention_ & rare_work) [[unlikely]]
      finish_rare_work();
  }
  void begin_hardware();
  void commit_hardware();
  // A retry, abort or exception left a hardware attempt. On RTM: XABORT,
  // does not return. Emulated: undoes the attempt and returns.
  void abandon_hardware(detail::abandon_cause cause);
  // After an aborted hardware begin: whether to try hardware again.
  bool hardware_aborted(const htm::status& s) noexcept;
  ~transaction();

 private:
  friend transaction& this_thread_transaction();
  friend transaction* detail::enter(detail::site_profile& profile, detail::entry& how);
  friend transaction* detail::enter_first();
  transaction();
  // Starts an atomically() call (enter() made this the running
  // transaction): resets what the call accumulates and begins its first
  // attempt, or returns true where that attempt is to try the hardware
  // path. The single-thread mode is tested first, with nothing on the way
  // to it: the tuning copy, the HTM backend and the site's profile only
  // matter when it cannot run.
  [[gnu::always_inline]] bool start(detail::site_profile& profile) noexcept {
    if constexpr (debug::checks_enabled) {
      if (attention_ != 0)
        debug::misuse("hwsync::stm::transaction", this,
                      "internal: the last atomically() call left attention bits set");
    }
    profile_ = &profile;
    call_ = {};
    if (detail::single_thread_mode_enabled.load(std::memory_order_relaxed) &&
        detail::try_enter_single_thread_mode()) [[likely]] {
      mode_ = detail::mode::single_thread;
      return false;
    }
    refresh_tuning_if_stale();
    // First the test that decides where there is no hardware path (no TSX
    // here): one relaxed load (refresh_tuning() resolved the backend). One
    // thread: the single-thread mode beats any hardware transaction.
    // hardware_backend_active() resolves the backend and tells rtm from the
    // emulation.
    if (htm::detail::current_backend.load(std::memory_order_relaxed) != htm::backend::off &&
        tuning_.hardware_attempts != 0 &&
        !(tuning_.single_thread_mode &&
          detail::runtime.live_threads.load(std::memory_order_relaxed) == 1) &&
        hardware_backend_active()) [[unlikely]]
      return true;  // atomically() runs begin_hardware()
    // begin() for a first attempt: no abort yet, nothing forces a log.
    if (profile.writes.load(std::memory_order_relaxed)) {
      mode_ = detail::mode::logged;
      return false;
    }
    begin_read_only();
    return false;
  }
  // A read-only attempt cannot extend after its first read: a fresh rv.
  void begin_read_only() noexcept {
    mode_ = detail::mode::read_only;
    set_snapshot(detail::runtime.clock.load(std::memory_order_seq_cst));
  }
  // set_tuning() takes effect at the next attempt: start() checks the
  // epoch where the copy matters, and so do after_abort() and
  // after_retry(), since an attempt that start() began in the single-thread
  // mode did not.
  void refresh_tuning_if_stale() noexcept {
    if (detail::runtime.tuning_epoch.load(std::memory_order_acquire) != tuning_epoch_) [[unlikely]]
      refresh_tuning();
  }
  void refresh_tuning() noexcept;
  static bool hardware_backend_active() noexcept;
  void begin_serial();
  void finish_rare_work();
  void commit_multi();
  void commit_general();

  struct checkpoint {
    std::uint32_t writes, arena, undo_words;
    std::size_t pointers, on_commit, on_abort;
    std::uint64_t filter;
  };
  checkpoint save() const noexcept {
    return {writes_.size(),   arena_.size(),     undo_words_.size(),
            pointers_.size(), on_commit_.size(), on_abort_.size(),
            filter_};
  }
  void rollback_to(const checkpoint& cp) noexcept;

  // Debug checks: a transaction reference that escaped its atomically()
  // block (stored, then used after the block returned, or by another thread).
  void check_active() const noexcept {
    if constexpr (debug::checks_enabled) {
      if (detail::current_transaction() != this)
        debug::misuse("hwsync::stm::transaction", this,
                      "used outside its atomically() block (the reference escaped it)");
    }
  }

  // Whether an unlocked stripe word is newer than the snapshot: a version
  // above rv, except the word this thread's own commits leave at rv + 1
  // (own_word_; stripe_table.hpp; docs/stm.md, "The clock").
  [[gnu::always_inline]] bool newer(std::uint64_t unlocked) const noexcept {
    return detail::version_of(unlocked) > rv_ && unlocked != own_word_;
  }
  // Every change of rv goes through here, so that own_word_ follows it.
  void set_snapshot(std::uint64_t rv) noexcept {
    rv_ = rv;
    own_word_ = detail::unlocked_word(rv + 1, 0) | own_word_low_bits_;
  }

  static std::uint64_t filter_bit(const void* tv) noexcept {
    return std::uint64_t{1} << ((reinterpret_cast<std::uintptr_t>(tv) >> 3) & 63);
  }

  // Out of line on purpose: inlined, it makes read() too large for GCC to
  // inline the user's accessor functions that call it.
  template <class T>
  [[gnu::noinline]] T read_instrumented(const tvar<T>& v) {
    constexpr std::uint32_t n = tvar<T>::word_count;
    if constexpr (n == 1) {
      const std::uint64_t w = read_word(&v, v.words_[0]);
      return tvar<T>::from_words(&w);
    }
    std::uint64_t buf[n];
    if (const detail::write_entry* e = find_write(&v, 0)) {
      std::memcpy(buf, arena_.data() + e->offset, sizeof buf);  // n > 1: in the arena
    } else {
      read_words(&v, v.words_, n, buf);
    }
    return tvar<T>::from_words(buf);
  }

  detail::write_entry* find_write(const void* tv, std::uint32_t floor) noexcept {
    if ((filter_ & filter_bit(tv)) == 0) [[likely]]
      return nullptr;
    for (std::uint32_t i = writes_.size(); i-- > floor;)
      if (writes_[i].tvar == tv) return &writes_[i];
    return nullptr;
  }

  // Not in the single-thread mode (read() handles it).
  [[gnu::always_inline]] void read_words(const void* tv, const std::atomic<std::uint64_t>* src,
                                         std::uint32_t n, std::uint64_t* out) {
    const std::uint32_t idx = detail::stripe_index(tv);
    if (mode_ <= detail::mode::logged) [[likely]] {
      const std::atomic<std::uint64_t>& s = detail::stripes[idx];
      // seq_cst (a plain load on x86): the clock argument orders this load
      // after the clock operation that gave rv (docs/stm.md, "The clock").
      const std::uint64_t w1 = s.load(std::memory_order_seq_cst);
      if (!detail::is_locked(w1) && !newer(w1)) [[likely]] {
        // acquire: the stripe re-load below cannot move above these loads.
        for (std::uint32_t i = 0; i < n; ++i) out[i] = src[i].load(std::memory_order_acquire);
        if (s.load(std::memory_order_relaxed) == w1) [[likely]] {
          if (mode_ == detail::mode::logged) {
            read_set_.push_back(idx);
          } else {
            ++unlogged_reads_;  // read_only: extension is possible only before the first read
          }
          return;
        }
      }
    }
    read_words_slow(idx, src, n, out);
  }

  void read_words_slow(std::uint32_t idx, const std::atomic<std::uint64_t>* src, std::uint32_t n,
                       std::uint64_t* out);

  // read_words() for a word tvar, shaped so that its fast paths need no
  // stack frame: everything that calls (a tvar this attempt wrote, a locked
  // or newer stripe, a full read log, the serial and hardware modes) is one
  // tail call to read_word_slow(), which starts over.
  [[gnu::always_inline]] std::uint64_t read_word(const void* tv,
                                                 const std::atomic<std::uint64_t>& src) {
    if ((filter_ & filter_bit(tv)) == 0) [[likely]] {
      const std::uint32_t idx = detail::stripe_index(tv);
      std::uint64_t value;
      if (mode_ == detail::mode::logged && read_set_.has_room()) [[likely]] {
        if (load_if_consistent(detail::stripes[idx], src, value)) [[likely]] {
          read_set_.push_back_unchecked(idx);
          return value;
        }
      } else if (mode_ == detail::mode::read_only) {
        if (load_if_consistent(detail::stripes[idx], src, value)) [[likely]] {
          ++unlogged_reads_;
          return value;
        }
      }
    }
    return read_word_slow(tv, &src);
  }
  // The loads of read_words() and their orders, for one word: false where
  // the stripe is locked, newer than rv, or changed around the load.
  [[gnu::always_inline]] bool load_if_consistent(const std::atomic<std::uint64_t>& s,
                                                 const std::atomic<std::uint64_t>& src,
                                                 std::uint64_t& value) const noexcept {
    const std::uint64_t w1 = s.load(std::memory_order_seq_cst);
    if (detail::is_locked(w1) || newer(w1)) return false;
    value = src.load(std::memory_order_acquire);
    return s.load(std::memory_order_relaxed) == w1;
  }
  std::uint64_t read_word_slow(const void* tv, const std::atomic<std::uint64_t>* src);
  void read_pointer(const void* tv, void (*load)(const void*, void*), void* out);
  // Waits for a consistent (unlocked, valid at rv) stripe around `load`.
  void read_validated(std::uint32_t idx, void (*load)(const void*, void*), const void* ctx,
                      void* out);
  // Not in the single-thread mode (write() handles it). A word tvar's
  // value goes in a register, also to the slow path: no stack copy.
  [[gnu::always_inline]] void write_word(const void* tv, std::uint64_t value) {
    const std::uint64_t bit = filter_bit(tv);
    if (mode_ != detail::mode::read_only && (filter_ & bit) == 0 && writes_.has_room()) [[likely]] {
      // A tvar not written yet (the filter has no false negatives), and the
      // log has room: no growth, so no call in the user's function.
      detail::write_entry& e = writes_.append_unchecked_unfilled();
      e.tvar = tv;
      e.value = value;
      e.offset = 0;
      e.count = 1;
      filter_ |= bit;
      return;
    }
    write_word_logged(tv, value);
  }
  // A tvar of n > 1 words; as write_word(), with the words in the arena.
  [[gnu::always_inline]] void write_words(const void* tv, std::uint32_t n,
                                          const std::uint64_t* src) {
    const std::uint64_t bit = filter_bit(tv);
    if (mode_ != detail::mode::read_only && (filter_ & bit) == 0 && writes_.has_room() &&
        arena_.room() >= n) [[likely]] {
      detail::write_entry& e = writes_.append_unchecked_unfilled();
      e.tvar = tv;
      e.offset = arena_.size();
      e.count = n;
      arena_.append_unchecked(src, n);
      filter_ |= bit;
      return;
    }
    write_words_logged(tv, n, src);
  }
  void write_word_logged(const void* tv, std::uint64_t value);
  void write_words_logged(const void* tv, std::uint32_t n, const std::uint64_t* src);
  void run_on_commit();
  // The attempt committed: leave it, keeping only the on_commit callbacks
  // (after_commit() runs them outside any transaction).
  void committed() noexcept {
    detail::slot.current = nullptr;
    read_set_.clear();
    writes_.clear();
    arena_.clear();
    if (!pointers_.empty()) pointers_.clear();
    locks_.clear();
    undo_words_.clear();
    if (!on_abort_.empty()) on_abort_.clear();
    filter_ = 0;
    floor_ = 0;
    unlogged_reads_ = 0;
  }
  // committed() after commit_small(), which only a logged attempt with one
  // or two word entries reaches: clears what such an attempt fills (the
  // caller clears on_abort_, rarely filled, out of line). The rest is empty
  // already: pointers_ and arena_ (they hold the values of shared_ptr and
  // multi-word entries, and every entry left is a word tvar's; a rolled-back
  // or_else branch shrank them with its entries), locks_ (commit_small()
  // holds its stripes in locals), undo_words_ (the single-thread mode's),
  // unlogged_reads_ (the read-only mode's); floor_ is 0 outside or_else().
  // Debug-checks builds check that.
  void committed_small() noexcept {
    if constexpr (debug::checks_enabled) {
      if (!pointers_.empty() || !arena_.empty() || !locks_.empty() || !undo_words_.empty() ||
          unlogged_reads_ != 0 || floor_ != 0)
        debug::misuse("hwsync::stm::transaction", this,
                      "internal: a log commit_small() does not clear was not empty");
    }
    detail::slot.current = nullptr;
    read_set_.clear();
    writes_.clear();
    filter_ = 0;
  }
  void write_pointer(const void* tv, void (*load)(const void*, void*),
                     void (*store)(const void*, const std::shared_ptr<const void>&),
                     std::shared_ptr<const void> p);
  [[noreturn]] void abort(std::uint64_t statistics::*cause);
  [[noreturn]] void upgrade();
  void extend(std::uint64_t seen);
  void wait_for_owner(std::uint64_t waited_ticks) noexcept;
  bool validate_reads() const noexcept;
  // Inlined into commit_multi(), its only caller.
  [[gnu::always_inline]] inline bool commit_small();
  [[noreturn, gnu::cold, gnu::noinline]] void abort_commit_small(std::uint64_t wa, std::uint64_t wb,
                                                                 bool version_taken,
                                                                 std::uint64_t statistics::*cause);
  [[gnu::noinline]] bool finish_commit_small(std::uint64_t wv);
  bool lock_write_set(bool wait);
  void release_locks() noexcept;
  void write_back() noexcept;
  void unlock_write_set(std::uint64_t wv) noexcept;
  std::uint64_t take_commit_version() noexcept;
  void finish_write_back();
  void commit_serial();
  void wake_retry_waiters();
  void enter_serial();
  void leave_serial() noexcept;
  void leave_mode() noexcept;
  void undo_single_thread(std::uint32_t writes_to, std::uint32_t words_to) noexcept;
  void run_on_abort() noexcept;
  void clear_logs() noexcept;
  void park_on_read_set();
  void backoff() noexcept;
  void wait_for_serial_gate() noexcept;
  // The owner's own counters: a load and a store, never a shared RMW.
  void count(std::uint64_t statistics::*field) noexcept {
    std::atomic_ref<std::uint64_t> r(stats_.*field);
    r.store(r.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  friend statistics process_statistics();
  friend void quiesce();

  // The running attempt's mode (between calls, the last attempt's: start(),
  // begin() and begin_hardware() set it before anything reads it).
  detail::mode mode_ = detail::mode::logged;
  // What the end of an attempt must look at beyond the common case, in one
  // byte so that a commit tests it all at once. 0 between atomically()
  // calls: every way out of a call clears it (clear_logs(), after_commit()).
  std::uint8_t attention_ = 0;
  static constexpr std::uint8_t doomed = 1;           // aborted: a swallowed abort signal
  static constexpr std::uint8_t retry_requested = 2;  // tx.retry() ran (or a swallowed retry)
  // on_commit/on_abort callbacks registered, or (single-thread mode) a
  // shared_ptr tvar's undo record in writes_/pointers_. No false negatives.
  static constexpr std::uint8_t rare_work = 4;
  bool wake_after_unlock_ = false;
  bool locked_newer_ = false;  // a stripe this commit locked had a version above rv
  bool hardware_emulated_ = false;
  bool asymmetric_fence_ = false;  // runtime.asymmetric_fence, fixed before registration
  // What one atomically() call accumulates over its attempts: start()
  // resets it with one store.
  struct per_call {
    unsigned attempts;            // aborted attempts (serial after tuning::serial_after)
    std::uint8_t hardware_tries;  // at most tuning::hardware_attempts (<= 64)
    bool force_logged;            // an upgrade, a retry or a second read-only abort
    bool read_only_aborted;       // a read-only attempt met a newer version
    bool no_single;               // a retry left the single-thread mode: rerun logged
  };
  static_assert(sizeof(per_call) == 8, "start() resets it with one store");
  per_call call_{};
  tuning tuning_;  // refreshed when set_tuning() bumps the epoch
  std::uint64_t tuning_epoch_ = ~std::uint64_t{0};
  std::uint64_t rv_ = 0;
  // The word this thread's own commits leave on a stripe at rv + 1
  // (unlocked_word(rv + 1, commit_tag_)), which newer() takes as not newer.
  // Untagged (commit_tag_ 0) it has the lock bit set: an unlocked word
  // never equals it, and newer() only judges unlocked words.
  std::uint64_t own_word_ = 0;
  std::uint64_t own_word_low_bits_ = 0;  // commit_tag_ << 1, or the lock bit untagged
  std::uint64_t filter_ = 0;
  std::uint32_t floor_ = 0;
  std::size_t unlogged_reads_ = 0;
  detail::site_profile* profile_ = nullptr;
  std::uint64_t owner_id_;
  // This descriptor's commit tag (stripe_table.hpp): 1..255, unique among
  // live descriptors, or 0 (untagged) when all were taken at registration.
  std::uint64_t commit_tag_ = 0;
  std::uint64_t rng_;

  detail::log_buffer<std::uint32_t> read_set_;
  detail::log_buffer<detail::write_entry> writes_;  // redo log (shared_ptr undo in single_thread)
  detail::log_buffer<std::uint64_t> arena_;
  std::vector<std::shared_ptr<const void>> pointers_;
  struct held_lock {
    std::uint32_t stripe;
    std::uint64_t previous;
  };
  detail::log_buffer<held_lock> locks_;
  // The single-thread mode's undo log of word tvars (shared_ptr tvars keep
  // theirs in writes_/pointers_).
  struct word_undo {
    std::atomic<std::uint64_t>* word;
    std::uint64_t old;
  };
  detail::log_buffer<word_undo> undo_words_;
  std::vector<std::function<void()>> on_commit_;
  std::vector<std::function<void()>> on_abort_;

  // Read by quiesce(): MAX while taking a commit version, then that version,
  // 0 when no write-back is in flight.
  alignas(64) std::atomic<std::uint64_t> commit_state_{0};
  // This thread's counters: written by it alone (atomic_ref load + store),
  // read by process_statistics().
  alignas(64) statistics stats_;
};

// The calling thread's descriptor (created, and the thread registered, on
// first use).
transaction& this_thread_transaction();

inline transaction* detail::enter(site_profile& profile, entry& how) {
  thread_slot& s = slot;
  if (s.current != nullptr) {
    how = entry::nested;
    return s.current;
  }
  transaction* t = s.descriptor;
  if (t == nullptr) [[unlikely]]
    t = enter_first();
  s.current = t;
  how = t->start(profile) ? entry::hardware : entry::software;
  return t;
}

}  // namespace hwsync::stm
