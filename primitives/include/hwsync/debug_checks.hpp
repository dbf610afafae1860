// hwsync/debug_checks.hpp — misuse detection shared by every primitive.
//
// HWSYNC_DEBUG_CHECKS (CMake option, fixed in hwsync/config.hpp) turns misuse
// that std leaves undefined — unlock by a thread that does not hold the lock,
// relocking a non-recursive lock by its holder, destroying a held lock,
// releasing a semaphore past its maximum — into an abort whose message names
// the primitive, its address and the thread. With the switch off, nothing
// here is called and the primitives carry no owner field.
#pragma once

#include <sys/types.h>

#include "hwsync/config.hpp"

namespace hwsync::debug {

inline constexpr bool checks_enabled = HWSYNC_DEBUG_CHECKS != 0;

// The kernel thread id of the calling thread (gettid), cached per thread.
pid_t this_thread_id() noexcept;

// Prints "hwsync: misuse of <primitive> at <address> by thread <tid>
// (<name>): <what>" to stderr and aborts.
[[noreturn]] void misuse(const char* primitive, const void* address, const char* what) noexcept;

// As misuse(), naming a second thread involved (the holder, say).
[[noreturn]] void misuse(const char* primitive, const void* address, const char* what,
                         pid_t other_thread) noexcept;

}  // namespace hwsync::debug
