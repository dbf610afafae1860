// htm/src/internal.hpp — what the htm sources share and users do not see.
#pragma once

#include <cstdint>

#include "hwsync/htm/capabilities.hpp"
#include "hwsync/htm/elision_policy.hpp"
#include "hwsync/htm/transaction.hpp"

namespace hwsync::htm::detail {

// The RTM instructions (rtm.cpp), each in a function compiled with
// target("rtm"). Call them only when the backend is rtm: elsewhere they
// raise SIGILL (and off x86 they abort).
namespace rtm {
std::uint32_t begin() noexcept;               // XBEGIN; status::started_value when started
void end() noexcept;                          // XEND
void abort_with(std::uint8_t code) noexcept;  // XABORT imm8
bool test() noexcept;                         // XTEST
}  // namespace rtm

// The policy emulation (emulation.cpp).
namespace emulation {
// One injected outcome: status::started() or an abort with emulated_bit.
status draw() noexcept;
// This thread entered / left an emulated elided critical section.
void enter_elided() noexcept;
void leave_elided() noexcept;
// Bare emulated transactions (transaction::begin and friends).
status bare_begin() noexcept;
void bare_commit() noexcept;
void bare_abort(std::uint8_t code) noexcept;
bool in_transaction() noexcept;
}  // namespace emulation

// capabilities().chosen installed as the active backend unless a test's
// scope installed one first; returns the active backend.
backend resolve_backend();

// Adds n to counter k of a site (k < counter_count) and of this thread's
// process-wide block (statistics.cpp).
void count(elision_site& site, std::size_t k, std::uint64_t n = 1) noexcept;

// Prints "hwsync::htm: <message>" on stderr and aborts.
[[noreturn]] void fatal(const char* message) noexcept;

}  // namespace hwsync::htm::detail
