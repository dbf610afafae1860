// The test hook hwsync/seqlock.hpp befriends, shared by the seqlock tests.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "hwsync/seqlock.hpp"

// The test hook hwsync/seqlock.hpp declares: opens and closes a write by
// hand, so a test can hold one open (a writer "preempted" mid-write).
namespace hwsync::detail {
struct seqlock_test_access {
  template <class T>
  static std::uint32_t begin_write(seqlock<T>& s) {
    s.writer_.lock();
    return s.seq_.write_begin();
  }
  // Stores the first `words` words of v (all of them by default): a torn
  // value while the write is open.
  template <class T>
  static void write_words(seqlock<T>& s, const T& v, std::size_t words = ~std::size_t{0}) {
    const auto w = seqlock<T>::to_words(v);
    for (std::size_t i = 0; i < std::min(words, w.size()); ++i)
      s.words_[i].store(w[i], std::memory_order_relaxed);
  }
  template <class T>
  static void end_write(seqlock<T>& s, std::uint32_t begun) {
    s.seq_.write_end(begun);
    s.writer_.unlock();
  }
  template <class T>
  static std::uint32_t sequence(const seqlock<T>& s) {
    return s.seq_.raw();
  }
};
}  // namespace hwsync::detail
