// hwsync/stm/log_buffer.hpp — the growable array behind a transaction's
// logs (read set, redo log, value arena, held locks, undo log). Internal to
// hwsync::stm (namespace detail).
//
// Contract
//   A log_buffer<T> holds trivially copyable entries in one heap block.
//   push_back is a capacity check and a store (growth, which doubles the
//   block, is out of line); clear() forgets the entries and keeps the
//   block, so a descriptor that is reused by every transaction of its
//   thread stops allocating once its logs have reached their working size.
//   std::vector would do the same work, but its push_back is a call in the
//   read path of GCC's optimized code, and clearing six of them costs six
//   loads and stores of end pointers on every commit.
//   Not thread-safe: one descriptor, one thread. Not copyable.
//   Size: 16 bytes plus the block. Growth throws std::bad_alloc.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>

namespace hwsync::stm::detail {

template <class T>
class log_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "log entries are copied with memcpy");

 public:
  log_buffer() = default;
  log_buffer(const log_buffer&) = delete;
  log_buffer& operator=(const log_buffer&) = delete;
  ~log_buffer() { std::free(data_); }

  void push_back(const T& v) {
    if (size_ == capacity_) [[unlikely]]
      grow(size_ + 1);
    data_[size_++] = v;
  }
  // For a caller that checked has_room() or room(): no growth path, so no
  // call (the logs' hot paths are inlined into user code).
  bool has_room() const noexcept { return size_ != capacity_; }
  std::uint32_t room() const noexcept { return capacity_ - size_; }
  void push_back_unchecked(const T& v) noexcept { data_[size_++] = v; }
  // The same, for a caller that fills the new last entry itself: it stores
  // only the fields that kind of entry reads (the redo log's word entries).
  T& append_unchecked_unfilled() noexcept { return data_[size_++]; }
  void append_unchecked(const T* v, std::uint32_t n) noexcept {
    for (std::uint32_t i = 0; i < n; ++i) data_[size_ + i] = v[i];
    size_ += n;
  }
  void append(const T* v, std::uint32_t n) {
    if (capacity_ - size_ < n) [[unlikely]]
      grow(size_ + n);
    // A loop, not memcpy: n is 1 for a word-sized tvar, and a call to
    // memcpy would cost more than the copy.
    for (std::uint32_t i = 0; i < n; ++i) data_[size_ + i] = v[i];
    size_ += n;
  }
  void reserve(std::uint32_t n) {
    if (n > capacity_) grow(n);
  }
  // Shrinks only: the entries past n are forgotten.
  void resize(std::uint32_t n) noexcept { size_ = n < size_ ? n : size_; }
  void clear() noexcept { size_ = 0; }
  void erase_from(T* first) noexcept { size_ = static_cast<std::uint32_t>(first - data_); }

  std::uint32_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }
  T& operator[](std::uint32_t i) noexcept { return data_[i]; }
  const T& operator[](std::uint32_t i) const noexcept { return data_[i]; }

 private:
  [[gnu::noinline]] void grow(std::uint32_t needed) {
    std::uint32_t c = capacity_ != 0 ? capacity_ : 16;
    while (c < needed) c *= 2;
    void* p = std::realloc(static_cast<void*>(data_), std::size_t{c} * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    data_ = static_cast<T*>(p);
    capacity_ = c;
  }

  T* data_ = nullptr;
  std::uint32_t size_ = 0;
  std::uint32_t capacity_ = 0;
};

}  // namespace hwsync::stm::detail
