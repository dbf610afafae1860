// Process-wide state of hwsync::stm: the clock, the stripes, the serial
// mutex, the retry waiters, the descriptor registry, tuning, statistics and
// quiesce().
#include "runtime.hpp"

#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "hwsync/spin.hpp"
#include "hwsync/stm/stripe_table.hpp"
#include "hwsync/stm/transaction.hpp"

namespace hwsync::stm {

namespace detail {

runtime_words runtime;
std::atomic<std::uint64_t> stripes[stripe_count];
std::atomic<bool> single_thread_mode_enabled{tuning{}.single_thread_mode};

hwsync::mutex& serial_mutex() noexcept {
  static hwsync::mutex m;
  return m;
}

hwsync::mutex& waiters_mutex() noexcept {
  static hwsync::mutex m;
  return m;
}

std::vector<waiter*>& waiters() noexcept {
  static std::vector<waiter*> list;
  return list;
}

namespace {

struct registry_state {
  hwsync::mutex mutex;
  std::vector<transaction*> live;
  statistics exited;
  bool first_registration = true;
  std::bitset<max_commit_tag + 1> tags_taken{1};  // tag 0 means untagged: never handed out
};
registry_state& registry() {
  static registry_state* r = new registry_state;  // outlives every thread_local descriptor
  return *r;
}

}  // namespace

namespace {

bool register_membarrier() noexcept {
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

}  // namespace

std::uint64_t register_descriptor(transaction* t) {
  std::lock_guard s(serial_mutex());
  std::uint64_t tag = 0;
  {
    std::lock_guard g(registry().mutex);
    if (registry().live.empty() && registry().first_registration) {
      registry().first_registration = false;
      runtime.asymmetric_fence.store(register_membarrier(), std::memory_order_relaxed);
    }
    registry().live.push_back(t);
    auto& taken = registry().tags_taken;
    for (std::uint64_t i = 1; i <= max_commit_tag; ++i) {
      if (!taken[i]) {
        taken[i] = true;
        tag = i;
        break;
      }
    }
  }
  runtime.live_threads.fetch_add(1, std::memory_order_seq_cst);
  // A thread in the single-thread mode either saw the count at 2 before it
  // started (and did not enter the mode), or its SINGLE store is visible
  // after this barrier and we wait for its transaction to end.
  if (runtime.asymmetric_fence.load(std::memory_order_relaxed))
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  unsigned spins = 0;
  while (runtime.single_active.load(std::memory_order_seq_cst) != 0) {
    if (++spins < 64) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  return tag;
}

std::uint64_t advance_clock(std::uint64_t version) noexcept {
  std::uint64_t c = runtime.clock.load(std::memory_order_seq_cst);
  while (c < version) {
    // seq_cst: the clock argument (docs/stm.md) needs every clock access
    // in one total order with the stripe loads that follow it.
    if (runtime.clock.compare_exchange_weak(c, version, std::memory_order_seq_cst,
                                            std::memory_order_seq_cst))
      return version;
  }
  return c;
}

namespace {

unsigned usable_cpus() noexcept {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n != 0 ? n : 1;
}

}  // namespace

bool oversubscribed() noexcept {
  static const unsigned cpus = usable_cpus();
  return runtime.live_threads.load(std::memory_order_relaxed) > cpus;
}

void unregister_descriptor(transaction* t, std::uint64_t tag, const statistics& final_counts) {
  std::lock_guard s(serial_mutex());
  std::lock_guard g(registry().mutex);
  auto& live = registry().live;
  live.erase(std::find(live.begin(), live.end(), t));
  if (tag != 0) registry().tags_taken[tag] = false;
  registry().exited += final_counts;
  runtime.live_threads.fetch_sub(1, std::memory_order_release);
}

}  // namespace detail

// ---- tuning ----

namespace {

struct atomic_tuning {
  std::atomic<unsigned> serial_after{tuning{}.serial_after};
  std::atomic<std::uint64_t> backoff_min_ticks{tuning{}.backoff_min_ticks};
  std::atomic<std::uint64_t> backoff_max_ticks{tuning{}.backoff_max_ticks};
  std::atomic<std::uint64_t> locked_spin_ticks{tuning{}.locked_spin_ticks};
  std::atomic<unsigned> hardware_attempts{tuning{}.hardware_attempts};
  // single_thread_mode is detail::single_thread_mode_enabled (start() reads it).
};
atomic_tuning settings;

}  // namespace

void tuning::validate() const {
  auto fail = [](const char* field, const char* expected, unsigned long long value) {
    throw std::invalid_argument(std::string("hwsync::stm::tuning::") + field + ": expected " +
                                expected + ", got " + std::to_string(value));
  };
  if (serial_after < 1 || serial_after > 1'000'000)
    fail("serial_after", "1 to 1000000 aborts", serial_after);
  if (backoff_max_ticks > (std::uint64_t{1} << 32))
    fail("backoff_max_ticks", "at most 2^32 ticks", backoff_max_ticks);
  if (backoff_min_ticks > backoff_max_ticks)
    fail("backoff_min_ticks", "at most backoff_max_ticks", backoff_min_ticks);
  if (locked_spin_ticks > (std::uint64_t{1} << 32))
    fail("locked_spin_ticks", "at most 2^32 ticks", locked_spin_ticks);
  if (hardware_attempts > 64) fail("hardware_attempts", "0 to 64", hardware_attempts);
}

tuning current_tuning() noexcept {
  tuning t;
  t.serial_after = settings.serial_after.load(std::memory_order_relaxed);
  t.backoff_min_ticks = settings.backoff_min_ticks.load(std::memory_order_relaxed);
  t.backoff_max_ticks = settings.backoff_max_ticks.load(std::memory_order_relaxed);
  t.locked_spin_ticks = settings.locked_spin_ticks.load(std::memory_order_relaxed);
  t.hardware_attempts = settings.hardware_attempts.load(std::memory_order_relaxed);
  t.single_thread_mode = detail::single_thread_mode_enabled.load(std::memory_order_relaxed);
  return t;
}

void set_tuning(const tuning& t) {
  t.validate();
  settings.serial_after.store(t.serial_after, std::memory_order_relaxed);
  settings.backoff_min_ticks.store(t.backoff_min_ticks, std::memory_order_relaxed);
  settings.backoff_max_ticks.store(t.backoff_max_ticks, std::memory_order_relaxed);
  settings.locked_spin_ticks.store(t.locked_spin_ticks, std::memory_order_relaxed);
  settings.hardware_attempts.store(t.hardware_attempts, std::memory_order_relaxed);
  detail::single_thread_mode_enabled.store(t.single_thread_mode, std::memory_order_relaxed);
  detail::runtime.tuning_epoch.fetch_add(1, std::memory_order_release);
}

// ---- statistics ----

namespace {

constexpr std::array<std::uint64_t statistics::*, 20> statistics_fields{
    &statistics::read_only_commits,     &statistics::update_commits,
    &statistics::hardware_commits,      &statistics::serial_commits,
    &statistics::single_thread_commits, &statistics::aborts_validation,
    &statistics::aborts_locked,         &statistics::aborts_serial,
    &statistics::aborts_upgrade,        &statistics::aborts_explicit,
    &statistics::aborts_exception,      &statistics::hw_aborts_conflict,
    &statistics::hw_aborts_capacity,    &statistics::hw_aborts_explicit,
    &statistics::hw_aborts_other,       &statistics::hw_fallbacks,
    &statistics::retries_parked,        &statistics::extensions,
    &statistics::escalations,           &statistics::yields};
static_assert(sizeof(statistics) == statistics_fields.size() * sizeof(std::uint64_t),
              "every statistics field is listed once");

}  // namespace

statistics& statistics::operator+=(const statistics& o) noexcept {
  for (auto f : statistics_fields) this->*f += o.*f;
  return *this;
}

statistics statistics::operator-(const statistics& o) const noexcept {
  statistics r = *this;
  for (auto f : statistics_fields) r.*f -= o.*f;
  return r;
}

std::string statistics::describe() const {
  auto n = [](std::uint64_t v) { return std::to_string(v); };
  return "commits " + n(commits()) + " (read-only " + n(read_only_commits) + ", update " +
         n(update_commits) + ", hardware " + n(hardware_commits) + ", serial " + n(serial_commits) +
         ", single-thread " + n(single_thread_commits) + "), aborts " + n(aborts()) +
         " (validation " + n(aborts_validation) + ", locked " + n(aborts_locked) + ", serial " +
         n(aborts_serial) + ", upgrade " + n(aborts_upgrade) + ", retry " + n(aborts_explicit) +
         ", exception " + n(aborts_exception) + ", hw conflict " + n(hw_aborts_conflict) +
         ", hw capacity " + n(hw_aborts_capacity) + ", hw explicit " + n(hw_aborts_explicit) +
         ", hw other " + n(hw_aborts_other) + "), hw fallbacks " + n(hw_fallbacks) + ", parked " +
         n(retries_parked) + ", extensions " + n(extensions) + ", escalations " + n(escalations) +
         ", yields " + n(yields);
}

statistics process_statistics() {
  auto& r = detail::registry();
  std::lock_guard g(r.mutex);
  statistics sum = r.exited;
  for (transaction* t : r.live) {
    for (auto f : statistics_fields) {
      std::atomic_ref<std::uint64_t> v(t->stats_.*f);
      sum.*f += v.load(std::memory_order_relaxed);
    }
  }
  return sum;
}

void quiesce() {
  // The heavy half of an asymmetric fence: membarrier(2) makes every
  // running thread of the process execute a full barrier. A committer that
  // stored MAX before that point is seen busy below until its write-back
  // ends; one that had not yet stored it validates its read set after the
  // barrier, sees the privatizing commit (made before this call) and
  // aborts. Without membarrier, committers store MAX with a seq_cst
  // exchange, which precedes their seq_cst validation loads; those read the
  // privatized link before the privatizer's seq_cst lock, which precedes the
  // seq_cst loads below. Seeing a descriptor idle once is enough: later
  // commits do not concern data privatized before this call.
  if (detail::runtime.asymmetric_fence.load(std::memory_order_relaxed))
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  auto& r = detail::registry();
  std::lock_guard g(r.mutex);
  for (transaction* t : r.live) {
    unsigned spins = 0;
    while (t->commit_state_.load(std::memory_order_seq_cst) != 0) {
      if (++spins < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
  }
}

}  // namespace hwsync::stm
