// One shared object of the cross-DSO test (biased_shared_mutex_dso_test):
// built four times, twice linking libhwsync_primitives.so and twice with a
// static copy of the primitives hidden inside (-fvisibility=hidden,
// --exclude-libs,ALL: the configuration in which folly's SharedMutex got one
// reader table per shared object, folly#1558). The test dlopens them with
// RTLD_LOCAL and drives one lock from several of them at once.
#include <chrono>
#include <cstdint>
#include <thread>

#include "hwsync/biased_shared_mutex.hpp"

#define HWSYNC_DSO_EXPORT extern "C" __attribute__((visibility("default")))

using hwsync::biased_shared_mutex;
using bias_access = hwsync::detail::biased_shared_mutex_access;

// The visible-readers table this shared object's copy of hwsync uses.
HWSYNC_DSO_EXPORT const void* hwsync_dso_table() {
  return &hwsync::detail::process_visible_readers();
}

HWSYNC_DSO_EXPORT void* hwsync_dso_new_lock() {
  return new biased_shared_mutex;
}
HWSYNC_DSO_EXPORT void hwsync_dso_delete_lock(void* m) {
  delete static_cast<biased_shared_mutex*>(m);
}
// The table the lock records (the one of the shared object that built it).
HWSYNC_DSO_EXPORT const void* hwsync_dso_lock_table(void* m) {
  return bias_access::table(*static_cast<biased_shared_mutex*>(m));
}

// n reads; counts the reads that went through the bias and the reads that
// saw a and b differ (a writer beside the reader). Returns the latter.
HWSYNC_DSO_EXPORT std::uint64_t hwsync_dso_read(void* lock, const std::uint64_t* a,
                                                const std::uint64_t* b, std::uint64_t n,
                                                std::uint64_t* published) {
  auto& m = *static_cast<biased_shared_mutex*>(lock);
  std::uint64_t torn = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    m.lock_shared();
    *published += bias_access::published_by_me(m);
    torn += *a != *b;
    m.unlock_shared();
  }
  return torn;
}

// n writes (a, then b), with a pause between them so that the bias comes
// back and each write has readers to revoke.
HWSYNC_DSO_EXPORT void hwsync_dso_write(void* lock, std::uint64_t* a, std::uint64_t* b,
                                        std::uint64_t n) {
  auto& m = *static_cast<biased_shared_mutex*>(lock);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    m.lock();
    ++*a;
    ++*b;
    m.unlock();
  }
}
