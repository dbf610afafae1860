// The futex(2) and futex_waitv(2) calls, their errno handling, and nothing else.
#include "hwsync/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// Debian 12's kernel headers predate the FUTEX2 flag names (Linux 6.7); the
// values are the kernel ABI and cannot change.
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE FUTEX_PRIVATE_FLAG
#endif
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

namespace hwsync::futex {
namespace {

std::uint32_t* addr(const word& w) noexcept {
  // The kernel reads the word as a u32; std::atomic<u32> is exactly that
  // (static_assert in the header), and futex wait never writes it.
  return reinterpret_cast<std::uint32_t*>(const_cast<word*>(&w));
}

[[noreturn]] void fail(const char* call, const void* w, int err) noexcept {
  std::fprintf(stderr,
               "hwsync::futex: %s on word %p failed: %s (errno %d); expected success, "
               "EAGAIN, EINTR or ETIMEDOUT\n",
               call, w, std::strerror(err), err);
  std::abort();
}

long sys_futex(const word& w, int op, std::uint32_t val, const timespec* ts, const word* w2,
               std::uint32_t val3) noexcept {
  return syscall(SYS_futex, addr(w), op, val, ts, w2 ? addr(*w2) : nullptr, val3);
}

wait_result classify_wait(long rc, const char* call, const word& w) noexcept {
  if (rc == 0) return wait_result::woken;
  switch (errno) {
    case EAGAIN:
      return wait_result::value_changed;
    case ETIMEDOUT:
      return wait_result::timed_out;
    case EINTR:
      return wait_result::woken;  // a signal: the caller re-checks
    default:
      fail(call, &w, errno);
  }
}

timespec to_timespec(std::int64_t ns) noexcept {
  if (ns < 0) ns = 0;
  return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

std::int64_t clock_ns(clockid_t id) noexcept {
  timespec ts;
  clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

deadline deadline::at(std::chrono::steady_clock::time_point tp) noexcept {
  // libstdc++'s steady_clock is CLOCK_MONOTONIC, the futex's default clock.
  return deadline{
      kind::monotonic,
      std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count()};
}

deadline deadline::at(std::chrono::system_clock::time_point tp) noexcept {
  return deadline{
      kind::realtime,
      std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count()};
}

deadline deadline::after(std::chrono::nanoseconds d) noexcept {
  return deadline{kind::monotonic, clock_ns(CLOCK_MONOTONIC) + d.count()};
}

bool deadline::passed() const noexcept {
  switch (kind_) {
    case kind::never:
      return false;
    case kind::monotonic:
      return clock_ns(CLOCK_MONOTONIC) >= ns_;
    case kind::realtime:
      return clock_ns(CLOCK_REALTIME) >= ns_;
  }
  return false;
}

wait_result wait(const word& w, std::uint32_t expected) noexcept {
  long rc = sys_futex(w, FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
  return classify_wait(rc, "FUTEX_WAIT", w);
}

wait_result wait_for(const word& w, std::uint32_t expected,
                     std::chrono::nanoseconds timeout) noexcept {
  const timespec ts = to_timespec(timeout.count());
  long rc = sys_futex(w, FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
  return classify_wait(rc, "FUTEX_WAIT (relative)", w);
}

wait_result wait_until(const word& w, std::uint32_t expected, const deadline& d) noexcept {
  if (d.is_never()) return wait(w, expected);
  const timespec ts = to_timespec(d.nanoseconds_since_epoch());
  const int op = FUTEX_WAIT_BITSET_PRIVATE | (d.is_realtime() ? FUTEX_CLOCK_REALTIME : 0);
  long rc = sys_futex(w, op, expected, &ts, nullptr, FUTEX_BITSET_MATCH_ANY);
  return classify_wait(rc, "FUTEX_WAIT_BITSET", w);
}

int wake(const word& w, int count) noexcept {
  long rc =
      sys_futex(w, FUTEX_WAKE_PRIVATE, static_cast<std::uint32_t>(count), nullptr, nullptr, 0);
  if (rc < 0) fail("FUTEX_WAKE", &w, errno);
  return static_cast<int>(rc);
}

int wake_all(const word& w) noexcept {
  return wake(w, INT32_MAX);
}

int cmp_requeue(const word& from, const word& to, std::uint32_t expected, int wake_count,
                int requeue_count) noexcept {
  // The requeue count travels in the timeout argument's slot (futex(2)).
  long rc = syscall(SYS_futex, addr(from), FUTEX_CMP_REQUEUE_PRIVATE, wake_count,
                    static_cast<unsigned long>(requeue_count), addr(to), expected);
  if (rc >= 0) return static_cast<int>(rc);
  if (errno == EAGAIN) return -1;
  fail("FUTEX_CMP_REQUEUE", &from, errno);
}

waitv_result waitv(std::span<const waitv_entry> entries, const deadline& d) noexcept {
  constexpr std::size_t max_entries = 128;
  if (entries.empty() || entries.size() > max_entries) {
    std::fprintf(stderr, "hwsync::futex::waitv: expected 1 to %zu words, got %zu\n", max_entries,
                 entries.size());
    std::abort();
  }
  futex_waitv v[max_entries];
  for (std::size_t i = 0; i < entries.size(); ++i) {
    std::memset(&v[i], 0, sizeof v[i]);
    v[i].val = entries[i].expected;
    v[i].uaddr = reinterpret_cast<std::uintptr_t>(addr(*entries[i].w));
    v[i].flags = FUTEX2_SIZE_U32 | FUTEX2_PRIVATE;
  }
  timespec ts{};
  const timespec* tsp = nullptr;
  clockid_t clock = CLOCK_MONOTONIC;
  if (!d.is_never()) {
    ts = to_timespec(d.nanoseconds_since_epoch());
    tsp = &ts;
    if (d.is_realtime()) clock = CLOCK_REALTIME;
  }
  long rc = syscall(SYS_futex_waitv, v, static_cast<unsigned>(entries.size()), 0u, tsp, clock);
  if (rc >= 0) return {static_cast<int>(rc), wait_result::woken};
  return {-1, classify_wait(rc, "futex_waitv", *entries[0].w)};
}

bool has_waitv() noexcept {
  static const bool present = [] {
    // An empty vector is rejected with EINVAL where the call exists and with
    // ENOSYS where it does not; nothing sleeps.
    long rc = syscall(SYS_futex_waitv, nullptr, 0u, 0u, nullptr, CLOCK_MONOTONIC);
    return !(rc < 0 && errno == ENOSYS);
  }();
  return present;
}

}  // namespace hwsync::futex
