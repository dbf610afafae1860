// hwsync/seqlock.hpp — hwsync::seqlock<T>: optimistic reads of a small, read-mostly value.
//
// Contract
//   What          One value of a trivially copyable T that many threads read
//                 and few write. load() writes no shared memory: it reads a
//                 sequence number, copies the value, re-reads the sequence and
//                 retries if a write overlapped the copy (optimistic
//                 concurrency control, in memory). store(v) and update(f) are
//                 serialized by an internal hwsync::mutex and never wait for
//                 readers.
//   Requires      T trivially copyable (a static_assert says so): it is
//                 copied byte for byte, padding included, while a writer may
//                 be changing it, so no copy constructor of T may run.
//   Size          8 + 8 * ceil(sizeof(T) / 8) bytes, aligned to 8: a 32-bit
//                 sequence word, the writers' 4-byte hwsync::mutex, and the
//                 value in 8-byte atomic words (the mutex takes 8 bytes with
//                 HWSYNC_DEBUG_CHECKS, and the seqlock 8 more). alignof(T)
//                 above 8 is fine: the value is only ever handed out as a
//                 copy. Not padded to a cache line: a reader misses on every
//                 write to its line, so keep often-written neighbours off it
//                 (alignas(64) on the seqlock or on what contains it).
//   Ordering      A load() that returns the value written by a store() or
//                 update() synchronizes with it: what the writer wrote before
//                 is visible after the load. Every load() returns a value that
//                 one store(), update() or the constructor wrote whole, never
//                 a mix of two; loads and writes are linearizable. Race-free
//                 under the C++ memory model: the value is copied through
//                 relaxed atomic words, ordered by the fences of Boehm, "Can
//                 seqlocks get along with programming language memory
//                 models?" (MSPC 2012), so ThreadSanitizer runs clean with no
//                 suppressions and no annotations.
//   Blocking      Writers wait only for writers (hwsync::mutex: brief spin,
//                 then futex park). Readers never make writers or other
//                 readers wait. A reader that finds a write in progress
//                 waits for it: a few rounds of `pause` (a write is a few
//                 stores, tens of ns), then the runtime's spin policy
//                 (hwsync/spin.hpp: 4 µs, one spinner per spare core), then
//                 it parks on the sequence word with futex(2) until the
//                 writer's end wakes it. So a writer preempted mid-write costs
//                 the readers a sleep, not the rest of a time slice of
//                 spinning. Parking is the only time a reader writes shared
//                 memory: it sets PARKED so that the writer knows to wake it.
//   Fairness      Writers: hwsync::mutex's. Readers are not wait-free: a
//                 load() retries while writes keep landing during its copy,
//                 so back-to-back writers can delay a reader without bound in
//                 principle (the classic seqlock trade; read-mostly data only).
//   update(f)     f(current) runs under the writer lock but before the write
//                 starts, so readers never wait for f, only other writers do.
//                 f must not write this seqlock (it would deadlock; with
//                 HWSYNC_DEBUG_CHECKS the mutex aborts naming it). If f
//                 throws, nothing is written.
//
// The sequence word (32 bits)
//   bit 0      WRITING   a write is in progress ("odd": the value may be torn)
//   bit 1      PARKED    a reader sleeps on the word; the write's end wakes all
//   bits 2-31  count     writes completed, modulo 2^30
//
//   Only writers (under the lock) change WRITING and the count; a reader sets
//   PARKED, by CAS, only while WRITING is set, and the write's end clears both
//   with one exchange. So between writes the word is stable, and a reader
//   whose copy saw the same stable word before and after it copied a value
//   that no write touched. A reader is fooled only if it is suspended between
//   its two reads of the word across a multiple of 2^30 writes (about 20 s of
//   back-to-back writes), the same bound Linux's 32-bit seqcount accepts.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <type_traits>
#include <utility>

#include "hwsync/config.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/mutex.hpp"

namespace hwsync {

namespace detail {

// The reader/writer protocol on the sequence word, without the payload: one
// non-template copy of it, whatever T is. Readers: read_begin, copy,
// read_validate. Writers, holding the writer lock: write_begin, copy,
// write_end.
class seqlock_sequence {
 public:
  static constexpr std::uint32_t writing = 1u << 0;
  static constexpr std::uint32_t parked = 1u << 1;
  static constexpr std::uint32_t one_write = 1u << 2;

  constexpr seqlock_sequence() noexcept = default;

  // A stable word to copy under, waiting (spin, then park) while a write is
  // in progress.
  std::uint32_t read_begin() const noexcept {
    const std::uint32_t s = word_.load(std::memory_order_acquire);
    if ((s & writing) != 0) [[unlikely]]
      return wait_stable(s);
    return s;
  }

  // One look: false while a write is in progress.
  bool try_read_begin(std::uint32_t& s) const noexcept {
    s = word_.load(std::memory_order_acquire);
    return (s & writing) == 0;
  }

  // After the copy: true when no write overlapped it.
  bool read_validate(std::uint32_t s) const noexcept {
    // If a relaxed load of the copy read a word of a later write, this fence
    // synchronizes with that write's release fence (after its WRITING store),
    // so the re-read below cannot miss the WRITING store. Keeps the copy's
    // loads above the re-read, too.
    std::atomic_thread_fence(std::memory_order_acquire);
    return word_.load(std::memory_order_relaxed) == s;
  }

  // Holding the writer lock. Returns the stable word the write started from.
  std::uint32_t write_begin() noexcept {
    // Between writes nobody else changes the word (see the table above), so a
    // plain store marks the write: no locked instruction.
    const std::uint32_t s = word_.load(std::memory_order_relaxed);
    word_.store(s | writing, std::memory_order_relaxed);
    // Keeps the value's word stores below the WRITING store, for every reader
    // whose acquire fence sees one of them (Boehm 2012).
    std::atomic_thread_fence(std::memory_order_release);
    return s;
  }

  void write_end(std::uint32_t s) noexcept {
    // An exchange, not a store: a reader may set PARKED at any moment of the
    // write, and a store would erase the flag unseen (a lost wake-up). Release:
    // a reader that reads the new word sees the whole value.
    if ((word_.exchange(s + one_write, std::memory_order_release) & parked) != 0) [[unlikely]]
      futex::wake_all(word_);
  }

  // The word as it is now (tests and statistics).
  std::uint32_t raw() const noexcept { return word_.load(std::memory_order_relaxed); }

 private:
  // Waits until the word is stable (no write in progress) and returns it,
  // read with acquire. `seen` has WRITING set. In src/seqlock.cpp.
  std::uint32_t wait_stable(std::uint32_t seen) const noexcept;

  // mutable: a const load() may set PARKED before it sleeps.
  mutable futex::word word_{0};
};

struct seqlock_test_access;  // defined by the tests only

}  // namespace detail

template <class T>
class seqlock {
  static_assert(std::is_trivially_copyable_v<T>,
                "hwsync::seqlock<T> copies T byte by byte while a writer may be changing it: T "
                "must be trivially copyable (no user-provided copy, move or destructor)");
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>,
                "hwsync::seqlock<T>: T must not be const or volatile");
  static_assert(!std::is_array_v<T>,
                "hwsync::seqlock<T>: load() returns a T, so T cannot be an array; use std::array");

 public:
  using value_type = T;

  // Value-initialized T.
  constexpr seqlock() noexcept(
      std::is_nothrow_default_constructible_v<T>) requires std::is_default_constructible_v<T>
      : seqlock(T{}) {}
  // constexpr when T can be bit_cast in a constant expression (no pointers,
  // unions, references or padding bytes), so that
  // `constinit hwsync::seqlock<config> g{...};` needs no dynamic
  // initialization.
  constexpr explicit seqlock(const T& initial) noexcept
      : seqlock(to_words(initial), std::make_index_sequence<word_count>{}) {}

  seqlock(const seqlock&) = delete;
  seqlock& operator=(const seqlock&) = delete;

  // A copy of the current value. Writes no shared memory unless it has to
  // park behind a writer that stalls mid-write (see the contract).
  T load() const noexcept {
    return build([this](void* dst) noexcept {
      const std::uint32_t s = seq_.read_begin();
      copy_out(dst);
      return seq_.read_validate(s);
    });
  }

  // One attempt, never waits: true and `out` set to the current value, or
  // false (and `out` untouched) when a write was in progress or overlapped.
  bool try_load(T& out) const noexcept {
    std::uint32_t s;
    if (!seq_.try_read_begin(s)) return false;
    bool stable = false;
    const T copy = build([&](void* dst) noexcept {
      copy_out(dst);
      stable = seq_.read_validate(s);
      return true;
    });
    if (stable) out = copy;
    return stable;
  }

  void store(const T& v) noexcept {
    const words_t w = to_words(v);  // outside the lock: the lock covers the publication only
    std::lock_guard<mutex> g(writer_);
    publish(w);
  }

  // Replaces the value with f(current) and returns the new value, as one
  // atomic step with respect to every other load, store and update. f is
  // called as f(const T&) and returns the new T.
  template <class F>
  T update(F f) noexcept(std::is_nothrow_invocable_r_v<T, F&, const T&>) {
    static_assert(std::is_invocable_r_v<T, F&, const T&>,
                  "hwsync::seqlock<T>::update(f): f must be callable as f(const T&) and return "
                  "the new T");
    std::lock_guard<mutex> g(writer_);
    // No write is in progress: this thread is the writer.
    const T current = build([this](void* dst) noexcept {
      copy_out(dst);
      return true;
    });
    const T next = std::invoke(f, current);
    publish(to_words(next));
    return next;
  }

 private:
  friend struct detail::seqlock_test_access;

  static constexpr std::size_t word_count = (sizeof(T) + 7) / 8;
  static constexpr std::size_t last_word_bytes = sizeof(T) - 8 * (word_count - 1);
  using words_t = std::array<std::uint64_t, word_count>;
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
                "hwsync::seqlock needs lock-free 8-byte atomics");

  template <std::size_t... I>
  constexpr seqlock(const words_t& w, std::index_sequence<I...>) noexcept : words_{w[I]...} {}

  // T to words, on local buffers only: the shared words are touched by
  // copy_out and publish, one relaxed atomic access each. The bytes past
  // sizeof(T) in the last word stay zero.
  static constexpr words_t to_words(const T& v) noexcept {
    words_t w{};
    if (std::is_constant_evaluated()) {
      const auto bytes = std::bit_cast<std::array<unsigned char, sizeof(T)>>(v);
      for (std::size_t i = 0; i < sizeof(T); ++i) {
        const std::size_t byte = std::endian::native == std::endian::little ? i % 8 : 7 - i % 8;
        w[i / 8] |= std::uint64_t{bytes[i]} << (8 * byte);
      }
    } else {
      std::memcpy(w.data(), &v, sizeof(T));
    }
    return w;
  }

  // A T whose bytes fill(dst) writes, calling it again until it returns true.
  // The copy lands in the T itself, which (NRVO, and load() returning a
  // prvalue) is the caller's object, not in a buffer copied into a T
  // afterwards: one copy fewer, and no forwarding stall (see copy_out). A T
  // that is not trivially default-constructible takes the buffer path.
  template <class Fill>
  static T build(Fill fill) noexcept {
    if constexpr (std::is_trivially_default_constructible_v<T>) {
      T out;  // every byte, padding included, is written by fill
      while (!fill(static_cast<void*>(&out))) {
      }
      return out;
    } else {
      struct bytes_t {
        unsigned char b[sizeof(T)];
      } bytes;
      static_assert(sizeof(bytes_t) == sizeof(T));
      while (!fill(static_cast<void*>(bytes.b))) {
      }
      return std::bit_cast<T>(bytes);
    }
  }

  // The shared words into sizeof(T) bytes at dst, one relaxed load per word.
  // Shaped for GCC 12, whose copies clang makes well anyway. Words go out in
  // 16-byte pairs because GCC reads a copied T back with 16-byte loads (to
  // copy it again, or vectorized) and a 16-byte load of two 8-byte stores is
  // not forwarded from the store buffer: it waits for both to reach L1. Up
  // to 128 bytes the pairs are unrolled, which lets GCC keep the copy in
  // registers when the caller reads it word by word. bench/seqlock_bench
  // read_uncontended, cycles per load() of 32 / 64 bytes on Zen 3: through a
  // buffer then bit_cast 27.7 / 33.5; 8-byte stores into the T 12.4 / 22.2;
  // pairs 3.1 / 20.7; pairs unrolled 3.1 / 7.6 (8 bytes: 2.3 throughout).
  // How the caller uses the copy moves these numbers; the pattern stands.
  void copy_out(void* dst) const noexcept {
    auto* bytes = static_cast<unsigned char*>(dst);
    constexpr std::size_t pairs = sizeof(T) / 16;
    if constexpr (pairs <= 8) {
      const auto unrolled = [&]<std::size_t... I>(std::index_sequence<I...>) {
        (copy_pair(bytes, 2 * I), ...);
      };
      unrolled(std::make_index_sequence<pairs>{});
    } else {
      for (std::size_t i = 0; i < 2 * pairs; i += 2) copy_pair(bytes, i);
    }
    // The tail: a word or two, the last one maybe partly T's.
    const auto tail = [&]<std::size_t... I>(std::index_sequence<I...>) {
      (copy_word<2 * pairs + I>(bytes), ...);
    };
    tail(std::make_index_sequence<word_count - 2 * pairs>{});
  }
  template <std::size_t I>
  void copy_word(unsigned char* bytes) const noexcept {
    const std::uint64_t w = words_[I].load(std::memory_order_relaxed);
    std::memcpy(bytes + 8 * I, &w, I + 1 < word_count ? 8 : last_word_bytes);
  }
  // Always inlined: GCC 12 otherwise folds identical copies of it from two
  // seqlock<T>s into one (ICF) and then warns that the smaller T's words_
  // is indexed out of bounds.
  [[gnu::always_inline]] void copy_pair(unsigned char* bytes, std::size_t i) const noexcept {
    using pair = std::uint64_t __attribute__((vector_size(16)));
    const pair p = {words_[i].load(std::memory_order_relaxed),
                    words_[i + 1].load(std::memory_order_relaxed)};
    std::memcpy(bytes + 8 * i, &p, sizeof p);
  }

  // Holding writer_.
  void publish(const words_t& w) noexcept {
    const std::uint32_t s = seq_.write_begin();
    for (std::size_t i = 0; i < word_count; ++i) words_[i].store(w[i], std::memory_order_relaxed);
    seq_.write_end(s);
  }

  // The sequence word and the writers' lock share the value's first line:
  // all three change only when a write does.
  detail::seqlock_sequence seq_;
  mutex writer_;
  std::atomic<std::uint64_t> words_[word_count];
};

#if !HWSYNC_DEBUG_CHECKS
static_assert(sizeof(seqlock<std::uint64_t>) == 16 && alignof(seqlock<std::uint64_t>) == 8,
              "hwsync::seqlock<T> is a sequence word, a mutex and the value's 8-byte words");
#endif

}  // namespace hwsync
