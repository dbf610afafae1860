// The system's wall clock and its kernel error estimate.
#include "hwsync/clocks/physical_source.hpp"

#include <sys/timex.h>
#include <time.h>

#include <cerrno>

namespace hwsync {

namespace {
// The kernel's cap on maxerror (NTP_PHASE_LIMIT, in µs), used when it will
// not say.
constexpr long ntp_phase_limit_us = 16'000'000;
}  // namespace

std::int64_t realtime_source::now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

clock_error_estimate realtime_source::error_estimate() noexcept {
  timex tx{};  // modes 0: read only, no privilege needed
  const int state = ntp_adjtime(&tx);
  if (state == -1) {
    return {std::chrono::microseconds(ntp_phase_limit_us),
            std::chrono::microseconds(ntp_phase_limit_us), false};
  }
  const bool synchronized = state != TIME_ERROR && (tx.status & STA_UNSYNC) == 0;
  return {std::chrono::microseconds(tx.maxerror), std::chrono::microseconds(tx.esterror),
          synchronized};
}

void realtime_source::sleep_for(std::chrono::nanoseconds d) noexcept {
  if (d.count() <= 0) return;
  timespec rel{static_cast<time_t>(d.count() / 1'000'000'000),
               static_cast<long>(d.count() % 1'000'000'000)};
  // Relative sleeps on CLOCK_MONOTONIC: a wall-clock step neither cuts the
  // sleep short nor stretches it; the caller re-reads the wall clock after.
  while (clock_nanosleep(CLOCK_MONOTONIC, 0, &rel, &rel) == EINTR) {
  }
}

physical_source& system_realtime() noexcept {
  static realtime_source source;
  return source;
}

}  // namespace hwsync
