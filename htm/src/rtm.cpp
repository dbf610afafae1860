// The RTM instructions. Each lives in a function compiled with
// __attribute__((target("rtm"))), so the library builds with the default
// -march and runs on any x86-64: the instructions exist in the binary but
// execute only when capabilities() chose the rtm backend.
//
// A transaction begun here continues after begin() returns into the caller.
// That is sound: an abort restores the registers to their values at XBEGIN
// and discards every transactional write, the stack included, so the
// frame of begin() is intact when execution resumes at its abort handler and
// it returns a second time, now with the abort status.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "internal.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HWSYNC_HTM_X86 1
#define HWSYNC_RTM_TARGET __attribute__((target("rtm")))
#else
#define HWSYNC_HTM_X86 0
#endif

namespace hwsync::htm::detail::rtm {

#if HWSYNC_HTM_X86

HWSYNC_RTM_TARGET std::uint32_t begin() noexcept {
  return _xbegin();
}

HWSYNC_RTM_TARGET void end() noexcept {
  _xend();
}

HWSYNC_RTM_TARGET bool test() noexcept {
  return _xtest() != 0;
}

namespace {

// XABORT takes its code as an immediate: one function per code, and a table.
template <std::uint8_t Code>
HWSYNC_RTM_TARGET void abort_code() noexcept {
  _xabort(Code);
}

template <std::size_t... I>
constexpr auto abort_table(std::index_sequence<I...>) noexcept {
  using fn = void (*)() noexcept;
  return std::array<fn, sizeof...(I)>{&abort_code<static_cast<std::uint8_t>(I)>...};
}

constexpr auto abort_codes = abort_table(std::make_index_sequence<256>{});

}  // namespace

void abort_with(std::uint8_t code) noexcept {
  abort_codes[code]();
}

#else  // no RTM off x86: the backend is never rtm, so these are never called.

std::uint32_t begin() noexcept {
  std::abort();
}
void end() noexcept {
  std::abort();
}
bool test() noexcept {
  return false;
}
void abort_with(std::uint8_t) noexcept {
  std::abort();
}

#endif

}  // namespace hwsync::htm::detail::rtm
