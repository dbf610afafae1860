// hwsync/stm/tvar.hpp — hwsync::stm::tvar<T>, a transactional variable.
//
// Contract
//   tvar<T> for any trivially copyable T: the value lives in
//   ceil(sizeof(T) / 8) 64-bit atomic words and is versioned as one unit
//   (one stripe of hwsync/stm/stripe_table.hpp). A word-sized T is one word:
//   a read is a stripe load, one value load and a stripe re-load.
//   tvar<std::shared_ptr<const T>> holds an immutable node by shared
//   pointer (std::atomic<std::shared_ptr>): the idiom for node-based
//   structures is copy-on-write — read the node, build a new one, write
//   the new pointer; nodes are never modified after publication, and the
//   last reader frees an unlinked node (docs/stm.md, "Node-based
//   structures").
//   Access inside a transaction: tx.read(v), tx.write(v, x). Outside one:
//   unsafe_load()/unsafe_store(), which are atomic per word but not
//   transactional (a multi-word value may be torn against a concurrent
//   commit); use them only on data no transaction can touch at the same time
//   (before threads start, after they join, or after stm::quiesce() on
//   privatized data).
//   Size: 8 * ceil(sizeof(T) / 8) bytes; 16 for the shared_ptr form.
//   Not copyable or movable: transactions identify a tvar by its address.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>

namespace hwsync::stm {

class transaction;

template <class T>
class tvar {
  static_assert(std::is_trivially_copyable_v<T>,
                "tvar<T> needs a trivially copyable T (or std::shared_ptr<const T>)");

 public:
  using value_type = T;
  static constexpr std::uint32_t word_count =
      static_cast<std::uint32_t>((sizeof(T) + sizeof(std::uint64_t) - 1) / sizeof(std::uint64_t));

  tvar() noexcept(std::is_nothrow_default_constructible_v<T>) : tvar(T{}) {}
  explicit tvar(const T& initial) noexcept { unsafe_store(initial); }
  tvar(const tvar&) = delete;
  tvar& operator=(const tvar&) = delete;

  T unsafe_load() const noexcept {
    std::uint64_t buf[word_count];
    for (std::uint32_t i = 0; i < word_count; ++i)
      buf[i] = words_[i].load(std::memory_order_acquire);
    return from_words(buf);
  }
  void unsafe_store(const T& v) noexcept {
    std::uint64_t buf[word_count];
    to_words(v, buf);
    for (std::uint32_t i = 0; i < word_count; ++i)
      words_[i].store(buf[i], std::memory_order_release);
  }

 private:
  friend class transaction;

  static T from_words(const std::uint64_t* buf) noexcept {
    T v;
    std::memcpy(static_cast<void*>(&v), buf, sizeof(T));
    return v;
  }
  static void to_words(const T& v, std::uint64_t* buf) noexcept {
    buf[word_count - 1] = 0;  // the padding bytes of the last word compare equal
    std::memcpy(buf, static_cast<const void*>(&v), sizeof(T));
  }

  std::atomic<std::uint64_t> words_[word_count];
};

template <class T>
class tvar<std::shared_ptr<const T>> {
 public:
  using value_type = std::shared_ptr<const T>;

  tvar() noexcept = default;
  explicit tvar(value_type initial) noexcept : value_(std::move(initial)) {}
  tvar(const tvar&) = delete;
  tvar& operator=(const tvar&) = delete;

  value_type unsafe_load() const noexcept { return value_.load(std::memory_order_acquire); }
  void unsafe_store(value_type v) noexcept {
    value_.store(std::move(v), std::memory_order_release);
  }

 private:
  friend class transaction;

  static void load_erased(const void* self, void* out) {
    *static_cast<std::shared_ptr<const void>*>(out) =
        static_cast<const tvar*>(self)->value_.load(std::memory_order_acquire);
  }
  static void store_erased(const void* self, const std::shared_ptr<const void>& p) {
    const_cast<tvar*>(static_cast<const tvar*>(self))
        ->value_.store(std::static_pointer_cast<const T>(p), std::memory_order_release);
  }

  std::atomic<value_type> value_;
};

}  // namespace hwsync::stm
