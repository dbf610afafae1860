// hwsync/sanitizer.hpp — the one bridge to ThreadSanitizer's annotation API.
//
// Under -fsanitize=thread every function here forwards to
// <sanitizer/tsan_interface.h>; otherwise each is an empty inline function and
// compiles to nothing. Primitives call them around their lock words so that
// TSan sees a mutex (lock-order inversions, double locks, races reported with
// the mutex that should have protected the data) rather than a handful of
// atomics, and so that the atomics inside lock()/unlock() are not themselves
// reported or used as synchronization.
//
// The calling pattern (the TSan contract):
//   lock:     pre_lock(m, f) ... take the word ... post_lock(m, f, 0)
//   try_lock: pre_lock(m, try_lock) ... post_lock(m, try_lock | try_lock_failed on failure, 0)
//   unlock:   pre_unlock(m, f) ... release the word ... post_unlock(m, f)
//   wake/wait handshakes that are not mutexes: release(addr) / acquire(addr).
#pragma once

#if defined(__SANITIZE_THREAD__)
#define HWSYNC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HWSYNC_TSAN 1
#endif
#endif
#ifndef HWSYNC_TSAN
#define HWSYNC_TSAN 0
#endif

#if HWSYNC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace hwsync::tsan {

#if HWSYNC_TSAN
inline constexpr bool enabled = true;
namespace flag {
inline constexpr unsigned linker_init = __tsan_mutex_linker_init;
inline constexpr unsigned write_reentrant = __tsan_mutex_write_reentrant;
inline constexpr unsigned read_reentrant = __tsan_mutex_read_reentrant;
inline constexpr unsigned not_static = __tsan_mutex_not_static;
inline constexpr unsigned read_lock = __tsan_mutex_read_lock;
inline constexpr unsigned try_lock = __tsan_mutex_try_lock;
inline constexpr unsigned try_lock_failed = __tsan_mutex_try_lock_failed;
}  // namespace flag
inline void mutex_create(void* m, unsigned f) noexcept {
  __tsan_mutex_create(m, f);
}
inline void mutex_destroy(void* m, unsigned f) noexcept {
  __tsan_mutex_destroy(m, f);
}
inline void pre_lock(void* m, unsigned f) noexcept {
  __tsan_mutex_pre_lock(m, f);
}
inline void post_lock(void* m, unsigned f, int recursion) noexcept {
  __tsan_mutex_post_lock(m, f, recursion);
}
inline int pre_unlock(void* m, unsigned f) noexcept {
  return __tsan_mutex_pre_unlock(m, f);
}
inline void post_unlock(void* m, unsigned f) noexcept {
  __tsan_mutex_post_unlock(m, f);
}
inline void pre_signal(void* m) noexcept {
  __tsan_mutex_pre_signal(m, 0);
}
inline void post_signal(void* m) noexcept {
  __tsan_mutex_post_signal(m, 0);
}
inline void pre_divert(void* m) noexcept {
  __tsan_mutex_pre_divert(m, 0);
}
inline void post_divert(void* m) noexcept {
  __tsan_mutex_post_divert(m, 0);
}
inline void acquire(void* addr) noexcept {
  __tsan_acquire(addr);
}
inline void release(void* addr) noexcept {
  __tsan_release(addr);
}
#else
inline constexpr bool enabled = false;
namespace flag {
inline constexpr unsigned linker_init = 0, write_reentrant = 0, read_reentrant = 0, not_static = 0,
                          read_lock = 0, try_lock = 0, try_lock_failed = 0;
}  // namespace flag
inline void mutex_create(void*, unsigned) noexcept {}
inline void mutex_destroy(void*, unsigned) noexcept {}
inline void pre_lock(void*, unsigned) noexcept {}
inline void post_lock(void*, unsigned, int) noexcept {}
inline int pre_unlock(void*, unsigned) noexcept {
  return 0;
}
inline void post_unlock(void*, unsigned) noexcept {}
inline void pre_signal(void*) noexcept {}
inline void post_signal(void*) noexcept {}
inline void pre_divert(void*) noexcept {}
inline void post_divert(void*) noexcept {}
inline void acquire(void*) noexcept {}
inline void release(void*) noexcept {}
#endif

}  // namespace hwsync::tsan
