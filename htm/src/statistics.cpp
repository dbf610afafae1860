// Statistics: abort classification, per-lock snapshots, and the per-thread
// blocks that make up process_statistics() (hwsync/htm/statistics.hpp).
#include "hwsync/htm/statistics.hpp"

#include <array>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "hwsync/htm/elision_policy.hpp"
#include "internal.hpp"

namespace hwsync::htm {

namespace {

using detail::counter_count;

// One thread's process-wide counters, on a line of its own. Only the owner
// writes them (load + store: no locked instruction); readers sum them.
struct alignas(64) thread_block {
  std::array<std::atomic<std::uint64_t>, counter_count> v{};
};

class registry {
 public:
  thread_block* add() {
    auto* b = new thread_block;
    std::lock_guard g(m_);
    live_.push_back(b);
    return b;
  }

  // A thread exits: its counts move to the retired total.
  void retire(thread_block* b) {
    std::lock_guard g(m_);
    for (std::size_t k = 0; k < counter_count; ++k)
      retired_[k] += b->v[k].load(std::memory_order_relaxed);
    std::erase(live_, b);
    delete b;
  }

  std::array<std::uint64_t, counter_count> sum() {
    std::lock_guard g(m_);
    auto total = retired_;
    for (const thread_block* b : live_)
      for (std::size_t k = 0; k < counter_count; ++k)
        total[k] += b->v[k].load(std::memory_order_relaxed);
    return total;
  }

 private:
  std::mutex m_;
  std::vector<thread_block*> live_;
  std::array<std::uint64_t, counter_count> retired_{};
};

// Never destroyed: threads may exit after static destructors have run.
registry& the_registry() {
  static registry* r = new registry;
  return *r;
}

struct thread_slot {
  thread_block* block = nullptr;
  ~thread_slot() {
    if (block != nullptr) the_registry().retire(block);
  }
};
thread_local thread_slot slot;

thread_block& this_thread_block() {
  if (slot.block == nullptr) [[unlikely]]
    slot.block = the_registry().add();
  return *slot.block;
}

statistics from_counters(const std::array<std::uint64_t, counter_count>& c) {
  statistics s;
  s.commits = c[detail::commits];
  s.aborts = c[detail::aborts];
  s.attempts = s.commits + s.aborts;
  for (std::size_t i = 0; i < abort_cause_count; ++i)
    s.aborts_by_cause[i] = c[detail::first_cause + i];
  s.fallbacks = c[detail::fallbacks];
  s.skipped = c[detail::skipped];
  s.switched_off = c[detail::switched_off];
  return s;
}

}  // namespace

abort_cause classify(status s) noexcept {
  if (s.is_explicit()) {
    return s.explicit_code() == lock_busy_code ? abort_cause::lock_busy
                                               : abort_cause::explicit_abort;
  }
  if (s.capacity()) return abort_cause::capacity;
  if (s.conflict()) return abort_cause::conflict;
  if (s.retry()) return abort_cause::retry;
  if (s.debug()) return abort_cause::debug;
  return abort_cause::unreported;
}

std::string_view to_string(abort_cause c) noexcept {
  switch (c) {
    case abort_cause::lock_busy:
      return "lock_busy";
    case abort_cause::explicit_abort:
      return "explicit";
    case abort_cause::capacity:
      return "capacity";
    case abort_cause::conflict:
      return "conflict";
    case abort_cause::retry:
      return "retry";
    case abort_cause::debug:
      return "debug";
    case abort_cause::unreported:
      return "unreported";
  }
  return "invalid";
}

std::string statistics::describe() const {
  std::string out = "attempts " + std::to_string(attempts) + " commits " + std::to_string(commits) +
                    " aborts " + std::to_string(aborts);
  std::string causes;
  for (std::size_t i = 0; i < abort_cause_count; ++i) {
    if (aborts_by_cause[i] == 0) continue;
    if (!causes.empty()) causes += ", ";
    causes += std::string(to_string(static_cast<abort_cause>(i))) + " " +
              std::to_string(aborts_by_cause[i]);
  }
  if (!causes.empty()) out += " (" + causes + ")";
  out += " fallbacks " + std::to_string(fallbacks) + " skipped " + std::to_string(skipped) +
         " switched_off " + std::to_string(switched_off) + " skip_interval " +
         std::to_string(skip_interval) + " skip_remaining " + std::to_string(skip_remaining);
  return out;
}

statistics process_statistics() {
  return from_counters(the_registry().sum());
}

statistics detail::elision_site::snapshot() const noexcept {
  std::array<std::uint64_t, counter_count> c{};
  for (std::size_t k = 0; k < counter_count; ++k)
    c[k] = counters[k].load(std::memory_order_relaxed);
  statistics s = from_counters(c);
  s.skip_interval = skip_interval.load(std::memory_order_relaxed);
  s.skip_remaining = skip_remaining.load(std::memory_order_relaxed);
  return s;
}

void detail::count(elision_site& site, std::size_t k, std::uint64_t n) noexcept {
  site.counters[k].fetch_add(n, std::memory_order_relaxed);
  std::atomic<std::uint64_t>& mine = this_thread_block().v[k];
  mine.store(mine.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace hwsync::htm
