// hwsync/clocks/physical_source.hpp — where the clocks read physical time, so
// tests can replace it (skew, drift, steps) without sleeping.
//
// Contract
//   physical_source     the interface: now_ns() is wall-clock time in
//                       nanoseconds since the Unix epoch, with
//                       CLOCK_REALTIME's behaviour: it may step back or
//                       forward at any time (settimeofday, NTP steps).
//                       error_estimate() is the kernel's view of how far
//                       now_ns() may be from true time (adjtimex(2)).
//                       sleep_for() blocks the caller for at least the given
//                       time as this source counts it (interval_clock's
//                       commit wait).
//   realtime_source     the system: clock_gettime(CLOCK_REALTIME) (the vDSO:
//                       no system call), ntp_adjtime(3) with modes 0 (one
//                       system call; read-only, needs no privilege), and
//                       clock_nanosleep on CLOCK_MONOTONIC. system_realtime()
//                       is the process-wide instance every clock uses by
//                       default.
//   manual_source       a settable clock for tests: time moves only when set()
//                       or advance() is called, or when sleep_for() is
//                       called (the sleeper's time passes at once, so a
//                       commit wait finishes without sleeping). Its error
//                       estimate is whatever set_error_estimate() stored
//                       (synchronized with zero error at first).
//   Thread safety       Every member of both sources may be called from any
//                       thread; manual_source's time is an atomic (relaxed:
//                       it stands alone) and its estimate changes as a whole
//                       under a std::mutex.
//   Cost                One virtual call on top of the read itself: the
//                       clocks hold a physical_source&.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace hwsync {

// What the kernel (or a test) says about the wall clock's error.
struct clock_error_estimate {
  // Upper bound on |wall clock - true time| when sampled (adjtimex maxerror).
  std::chrono::nanoseconds max_error{0};
  // The estimated error (adjtimex esterror): informational.
  std::chrono::nanoseconds estimated_error{0};
  // False when the kernel says STA_UNSYNC or returns TIME_ERROR: max_error
  // is then not a bound on anything.
  bool synchronized = false;
};

class physical_source {
 public:
  virtual ~physical_source() = default;
  virtual std::int64_t now_ns() noexcept = 0;
  virtual clock_error_estimate error_estimate() noexcept = 0;
  virtual void sleep_for(std::chrono::nanoseconds d) noexcept = 0;
};

class realtime_source final : public physical_source {
 public:
  std::int64_t now_ns() noexcept override;
  // ntp_adjtime failing (a seccomp filter, say) reads as unsynchronized with
  // the kernel's cap on maxerror, NTP_PHASE_LIMIT (16 s).
  clock_error_estimate error_estimate() noexcept override;
  void sleep_for(std::chrono::nanoseconds d) noexcept override;
};

// The process-wide realtime_source.
physical_source& system_realtime() noexcept;

class manual_source final : public physical_source {
 public:
  explicit manual_source(std::int64_t start_ns = 0) noexcept : now_(start_ns) {}

  std::int64_t now_ns() noexcept override { return now_.load(std::memory_order_relaxed); }
  clock_error_estimate error_estimate() noexcept override {
    std::lock_guard<std::mutex> hold(estimate_lock_);
    return estimate_;
  }
  void sleep_for(std::chrono::nanoseconds d) noexcept override {
    if (d.count() > 0) advance(d);
    sleeps_.fetch_add(1, std::memory_order_relaxed);
  }

  // A step to any time, backwards included.
  void set(std::int64_t ns) noexcept { now_.store(ns, std::memory_order_relaxed); }
  void advance(std::chrono::nanoseconds d) noexcept {
    now_.fetch_add(d.count(), std::memory_order_relaxed);
  }
  void set_error_estimate(const clock_error_estimate& e) noexcept {
    std::lock_guard<std::mutex> hold(estimate_lock_);
    estimate_ = e;
  }
  // How many times sleep_for() was called (tests check that a wait slept).
  std::uint64_t sleeps() const noexcept { return sleeps_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> now_;
  std::mutex estimate_lock_;  // the estimate changes as a whole
  clock_error_estimate estimate_{std::chrono::nanoseconds(0), std::chrono::nanoseconds(0), true};
  std::atomic<std::uint64_t> sleeps_{0};
};

}  // namespace hwsync
