// The policy emulation backend (hwsync/htm/emulation.hpp): injected aborts,
// emulated bare transactions, and the test scope that selects it.
#include "hwsync/htm/emulation.hpp"

#include <atomic>
#include <cmath>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>

#include "internal.hpp"

namespace hwsync::htm {

namespace {

// A configuration as the draws use it: cumulative thresholds on a 32-bit
// uniform value. Blocks are immutable once published and never freed, so a
// draw racing with a reconfigure reads one whole configuration.
struct config_block {
  emulation_config config;
  std::uint64_t stream;  // splitmix64(seed): where this seed's sequence starts
  std::uint64_t conflict_below, capacity_below, retry_below, explicit_below;
};

std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::uint64_t threshold(double p) {
  return static_cast<std::uint64_t>(std::ldexp(p, 32));
}

class config_store {
 public:
  config_store() { publish(emulation_config{}); }

  void publish(const emulation_config& c) {
    std::lock_guard g(m_);
    config_block b{c, splitmix64(c.seed), 0, 0, 0, 0};
    b.conflict_below = threshold(c.conflict);
    b.capacity_below = threshold(c.conflict + c.capacity);
    b.retry_below = threshold(c.conflict + c.capacity + c.retry);
    b.explicit_below = threshold(c.conflict + c.capacity + c.retry + c.explicit_abort);
    blocks_.push_back(b);
    draws_.store(0, std::memory_order_relaxed);
    current_.store(&blocks_.back(), std::memory_order_release);
  }

  const config_block& current() const noexcept { return *current_.load(std::memory_order_acquire); }
  std::uint64_t next_draw() noexcept { return draws_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::mutex m_;
  std::deque<config_block> blocks_;  // a deque never moves its elements
  std::atomic<const config_block*> current_{nullptr};
  std::atomic<std::uint64_t> draws_{0};
};

config_store& store() {
  static config_store* s = new config_store;  // outlives every thread that draws
  return *s;
}

// This thread's emulated critical sections and bare transactions. Plain
// thread_locals: only their own thread reads them.
thread_local unsigned elided_depth = 0;
thread_local unsigned bare_depth = 0;

// What serializes emulated bare transactions: nothing else is atomic about them.
std::mutex& bare_lock() {
  static std::mutex* m = new std::mutex;
  return *m;
}

}  // namespace

void emulation_config::validate() const {
  const auto check = [](const char* name, double p) {
    if (!(p >= 0.0 && p <= 1.0))
      throw std::invalid_argument(std::string("hwsync::htm::emulation_config: ") + name +
                                  " must be a probability in [0, 1], got " + std::to_string(p));
  };
  check("conflict", conflict);
  check("capacity", capacity);
  check("retry", retry);
  check("explicit_abort", explicit_abort);
  const double sum = conflict + capacity + retry + explicit_abort;
  if (sum > 1.0 + 1e-9)
    throw std::invalid_argument(
        "hwsync::htm::emulation_config: the abort probabilities must sum to at most 1, got " +
        std::to_string(sum));
  if (explicit_code == lock_busy_code)
    throw std::invalid_argument(
        "hwsync::htm::emulation_config: explicit_code 0xff is lock_busy_code, reserved for the "
        "subscription; expected another code");
}

emulation_config current_emulation_config() noexcept {
  return store().current().config;
}

policy_emulation_scope::policy_emulation_scope(const emulation_config& config)
    : previous_backend_(detail::current_backend.load(std::memory_order_relaxed)),
      previous_config_(current_emulation_config()) {
  config.validate();
  store().publish(config);
  detail::current_backend.store(backend::policy_emulation, std::memory_order_relaxed);
}

policy_emulation_scope::~policy_emulation_scope() {
  store().publish(previous_config_);
  detail::current_backend.store(previous_backend_, std::memory_order_relaxed);
}

void policy_emulation_scope::reconfigure(const emulation_config& config) {
  config.validate();
  store().publish(config);
}

namespace detail::emulation {

status draw() noexcept {
  config_store& s = store();
  const config_block& b = s.current();
  const std::uint64_t u = splitmix64(b.stream + s.next_draw()) >> 32;
  if (u < b.conflict_below)
    return status(status::conflict_bit | status::retry_bit | status::emulated_bit);
  if (u < b.capacity_below) return status(status::capacity_bit | status::emulated_bit);
  if (u < b.retry_below) return status(status::retry_bit | status::emulated_bit);
  if (u < b.explicit_below)
    return status::explicit_abort(b.config.explicit_code, status::emulated_bit);
  return status::started();
}

void enter_elided() noexcept {
  ++elided_depth;
}

void leave_elided() noexcept {
  --elided_depth;
}

status bare_begin() noexcept {
  if (bare_depth > 0) {  // flat nesting: the outer one already holds the lock
    ++bare_depth;
    return status::started();
  }
  const status s = draw();
  if (!s.is_started()) return s;
  bare_lock().lock();
  ++bare_depth;
  return s;
}

void bare_commit() noexcept {
  if (bare_depth == 0)
    fatal("transaction::commit() outside a transaction (backend policy_emulation)");
  if (--bare_depth == 0) bare_lock().unlock();
}

void bare_abort(std::uint8_t code) noexcept {
  if (bare_depth > 0 || elided_depth > 0) {
    std::string msg = "transaction::abort(" + std::to_string(code) +
                      ") inside an emulated transaction: the policy emulation cannot roll back "
                      "writes already made; it injects aborts at begin() only";
    fatal(msg.c_str());
  }
  // Outside a transaction XABORT does nothing; neither does this.
}

bool in_transaction() noexcept {
  return bare_depth > 0 || elided_depth > 0;
}

}  // namespace detail::emulation

}  // namespace hwsync::htm
