// hwsync/stm/statistics.hpp — what the STM did: commits by path, aborts by
// cause, blocking retries.
//
// Contract
//   Counters are per thread (a relaxed load and store of the thread's own
//   block, never a shared read-modify-write) and summed on read, including
//   threads that have exited. process_statistics() is a snapshot that
//   threads may be updating: exact once they are quiescent (joined, or
//   between transactions with a happens-before to the caller).
//   Every attempt ends in exactly one commit or one abort counter, so
//   attempts() = commits() + aborts().
#pragma once

#include <cstdint>
#include <string>

namespace hwsync::stm {

struct statistics {
  // Commits, by the path that committed.
  std::uint64_t read_only_commits = 0;  // software, no write: logged nothing or validated per read
  std::uint64_t update_commits = 0;     // software with writes (TL2 commit)
  std::uint64_t hardware_commits = 0;   // the HTM fast path (or its policy emulation)
  std::uint64_t serial_commits = 0;     // the irrevocable serial mode
  std::uint64_t single_thread_commits = 0;  // the uninstrumented single-thread mode

  // Software aborts, by cause.
  std::uint64_t aborts_validation = 0;  // a value read changed (read, extension or commit)
  std::uint64_t aborts_locked = 0;      // a stripe stayed locked by another committer
  std::uint64_t aborts_serial = 0;      // a serial transaction was running at commit
  std::uint64_t aborts_upgrade = 0;     // a read-only attempt wrote: rerun with a read log
  std::uint64_t aborts_explicit = 0;    // tx.retry() ended the attempt (it then blocks)
  std::uint64_t aborts_exception = 0;   // a user exception discarded the attempt

  // Hardware aborts, by RTM's cause (or the emulation's injected cause).
  std::uint64_t hw_aborts_conflict = 0;
  std::uint64_t hw_aborts_capacity = 0;
  std::uint64_t hw_aborts_explicit = 0;  // a locked stripe, the serial gate, retry, an exception
  std::uint64_t hw_aborts_other = 0;     // RETRY only, debug, unreported
  std::uint64_t hw_fallbacks = 0;        // gave up on hardware and ran in software

  std::uint64_t retries_parked = 0;  // times a retry parked the thread on its futex
  std::uint64_t extensions = 0;      // successful timestamp extensions (LSA)
  std::uint64_t escalations = 0;     // attempts run serially after too many aborts
  std::uint64_t yields = 0;          // CPU given away waiting: on a locked stripe or in backoff

  std::uint64_t commits() const noexcept {
    return read_only_commits + update_commits + hardware_commits + serial_commits +
           single_thread_commits;
  }
  std::uint64_t software_aborts() const noexcept {
    return aborts_validation + aborts_locked + aborts_serial + aborts_upgrade + aborts_explicit +
           aborts_exception;
  }
  std::uint64_t hardware_aborts() const noexcept {
    return hw_aborts_conflict + hw_aborts_capacity + hw_aborts_explicit + hw_aborts_other;
  }
  std::uint64_t aborts() const noexcept { return software_aborts() + hardware_aborts(); }
  std::uint64_t attempts() const noexcept { return commits() + aborts(); }

  statistics& operator+=(const statistics& o) noexcept;
  statistics operator-(const statistics& o) const noexcept;
  // "commits 10 (ro 2, update 8, hw 0, serial 0, single 0), aborts 3 (...)".
  std::string describe() const;
};

// Every thread's counters, live and exited, summed.
statistics process_statistics();

}  // namespace hwsync::stm
