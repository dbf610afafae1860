// Misuse of primitives, one case per argument. With HWSYNC_DEBUG_CHECKS each
// case must abort with a message; the tests (mutex_test) run this program as
// a child and read the message. Prints "survived" if a case did not abort.
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>

#include "hwsync/barrier.hpp"
#include "hwsync/biased_shared_mutex.hpp"
#include "hwsync/latch.hpp"
#include "hwsync/lock_order.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/numa_mutex.hpp"
#include "hwsync/semaphore.hpp"
#include "hwsync/shared_mutex.hpp"
#include "hwsync/stm.hpp"

namespace {

int unlock_by_non_owner() {
  static hwsync::mutex m;
  m.lock();
  std::thread([] { m.unlock(); }).join();
  return 0;
}

int unlock_unlocked() {
  static hwsync::mutex m;
  m.unlock();
  return 0;
}

int relock_by_holder() {
  static hwsync::mutex m;
  m.lock();
  m.lock();
  return 0;
}

int destroy_held() {
  alignas(hwsync::mutex) unsigned char storage[sizeof(hwsync::mutex)];
  auto* m = new (storage) hwsync::mutex;
  m->lock();
  m->~mutex();
  return 0;
}

int timed_unlock_by_non_owner() {
  static hwsync::timed_mutex m;
  m.lock();
  std::thread([] { m.unlock(); }).join();
  return 0;
}

int recursive_unlock_by_non_owner() {
  static hwsync::recursive_mutex m;
  m.lock();
  std::thread([] { m.unlock(); }).join();
  return 0;
}

// hwsync::shared_mutex (shared_mutex_test)

int shared_unlock_shared_not_held() {
  static hwsync::shared_mutex<> m;
  m.lock_shared();
  std::thread([] { m.unlock_shared(); }).join();
  return 0;
}

int shared_writer_locks_shared() {
  static hwsync::shared_mutex<> m;
  m.lock();
  m.lock_shared();
  return 0;
}

int shared_writer_try_locks_shared() {
  static hwsync::shared_mutex<hwsync::rw_policy::reader_preferred> m;
  m.lock();
  return m.try_lock_shared() ? 1 : 0;
}

int shared_reader_locks_shared_again() {
  static hwsync::shared_mutex<hwsync::rw_policy::writer_preferred> m;
  m.lock_shared();
  m.lock_shared();
  return 0;
}

int shared_reader_locks_exclusive() {
  static hwsync::shared_mutex<> m;
  m.lock_shared();
  m.lock();
  return 0;
}

int shared_upgrader_locks_shared() {
  static hwsync::shared_mutex<> m;
  m.lock_upgrade();
  m.lock_shared();
  return 0;
}

int shared_writer_relocks() {
  static hwsync::shared_mutex<> m;
  m.lock();
  m.lock();
  return 0;
}

int shared_unlock_by_non_owner() {
  static hwsync::shared_mutex<> m;
  m.lock();
  std::thread([] { m.unlock(); }).join();
  return 0;
}

int shared_unlock_unlocked() {
  static hwsync::shared_mutex<> m;
  m.unlock();
  return 0;
}

int shared_writer_unlocks_shared() {
  static hwsync::shared_mutex<> m;
  m.lock();
  m.unlock_shared();
  return 0;
}

int shared_unlock_upgrade_not_held() {
  static hwsync::shared_mutex<> m;
  m.lock_shared();
  m.unlock_upgrade();
  return 0;
}

int shared_upgrade_not_held() {
  static hwsync::shared_mutex<> m;
  m.lock_upgrade();
  std::thread([] { m.unlock_upgrade_and_lock(); }).join();
  return 0;
}

int shared_downgrade_not_held() {
  static hwsync::shared_mutex<> m;
  m.lock_shared();
  m.unlock_and_lock_shared();
  return 0;
}

int shared_destroy_held_shared() {
  using M = hwsync::shared_mutex<>;
  alignas(M) unsigned char storage[sizeof(M)];
  auto* m = new (storage) M;
  std::thread([m] { m->lock_shared(); }).join();
  m->~M();
  return 0;
}

int shared_destroy_held_exclusive() {
  using M = hwsync::shared_mutex<hwsync::rw_policy::writer_preferred>;
  alignas(M) unsigned char storage[sizeof(M)];
  auto* m = new (storage) M;
  m->lock();
  m->~M();
  return 0;
}

// hwsync::biased_shared_mutex (biased_shared_mutex_test). A fresh lock's
// first reader turns the bias on, so the second lock_shared() publishes.

void bias(hwsync::biased_shared_mutex& m) {
  m.lock_shared();
  m.unlock_shared();
}

int biased_published_reader_locks_exclusive() {
  static hwsync::biased_shared_mutex m;
  bias(m);
  m.lock_shared();
  m.lock();
  return 0;
}

int biased_published_reader_locks_shared_again() {
  static hwsync::biased_shared_mutex m;
  bias(m);
  m.lock_shared();
  m.lock_shared();
  return 0;
}

int biased_writer_locks_shared() {
  static hwsync::biased_shared_mutex m;
  bias(m);
  m.lock();
  m.lock_shared();
  return 0;
}

int biased_unlock_shared_not_held() {
  static hwsync::biased_shared_mutex m;
  bias(m);
  m.lock_shared();
  std::thread([] { m.unlock_shared(); }).join();
  return 0;
}

int biased_unlock_by_non_owner() {
  static hwsync::biased_shared_mutex m;
  m.lock();
  std::thread([] { m.unlock(); }).join();
  return 0;
}

int biased_destroy_published() {
  using M = hwsync::biased_shared_mutex;
  alignas(M) unsigned char storage[sizeof(M)];
  auto* m = new (storage) M;
  bias(*m);
  std::thread([m] { m->lock_shared(); }).join();
  m->~M();
  return 0;
}

}  // namespace

// hwsync semaphores (semaphore_test). The test hook that hwsync/semaphore.hpp
// declares lets a case wait until a thread is registered to park.
namespace hwsync::detail {
struct semaphore_test_access {
  template <class S>
  static std::uint32_t waiters(const S& s) {
    return s.word_.waiters();
  }
};
}  // namespace hwsync::detail

namespace {

template <class S>
void await_waiters(const S& s, std::uint32_t n) {
  while (hwsync::detail::semaphore_test_access::waiters(s) != n) std::this_thread::yield();
}

int semaphore_binary_released_twice() {
  static hwsync::binary_semaphore s(0);
  s.release();
  s.release();
  return 0;
}

int semaphore_release_n_past_max() {
  static hwsync::counting_semaphore<4> s(2);
  s.release(3);
  return 0;
}

int semaphore_release_more_than_max() {
  static hwsync::counting_semaphore<4> s(0);
  s.release(5);
  return 0;
}

int semaphore_release_negative() {
  static hwsync::counting_semaphore<> s(0);
  s.release(-1);
  return 0;
}

int semaphore_desired_past_max() {
  hwsync::counting_semaphore<4> s(5);
  return s.try_acquire() ? 0 : 1;
}

int semaphore_desired_negative() {
  hwsync::counting_semaphore<4> s(-1);
  return s.try_acquire() ? 0 : 1;
}

int semaphore_destroyed_with_waiter() {
  using S = hwsync::counting_semaphore<>;
  alignas(S) static unsigned char storage[sizeof(S)];
  auto* s = new (storage) S(0);
  std::thread([s] { s->acquire(); }).detach();
  await_waiters(*s, 1);
  s->~S();
  return 0;
}

int fair_semaphore_released_past_max() {
  static hwsync::fair_counting_semaphore<3> s(2);
  s.release(2);
  return 0;
}

int fair_semaphore_destroyed_with_waiters() {
  using S = hwsync::fair_counting_semaphore<>;
  alignas(S) static unsigned char storage[sizeof(S)];
  auto* s = new (storage) S(0);
  std::thread([s] { s->acquire(); }).detach();
  await_waiters(*s, 1);
  std::thread([s] { s->acquire(); }).detach();
  await_waiters(*s, 2);
  s->~S();
  return 0;
}

// hwsync::latch (latch_test) and hwsync::barrier (barrier_test)

int latch_count_down_past_zero() {
  static hwsync::latch l(2);
  l.count_down(3);
  return 0;
}

int latch_negative_count_down() {
  static hwsync::latch l(2);
  l.count_down(-1);
  return 0;
}

int latch_expected_above_max() {
  hwsync::latch l(hwsync::latch::max() + 1);
  return l.try_wait() ? 1 : 0;
}

int barrier_wait_stale_token() {
  static hwsync::barrier<> b(1);
  auto t0 = b.arrive();
  (void)b.arrive();
  (void)b.arrive();
  b.wait(std::move(t0));
  return 0;
}

int barrier_wait_foreign_token() {
  static hwsync::barrier<> a(2), b(2);
  b.wait(a.arrive());
  return 0;
}

int barrier_arrive_too_many() {
  static hwsync::barrier<> b(2);
  (void)b.arrive(3);
  return 0;
}

int barrier_tree_arrive_too_many() {
  static hwsync::barrier<> b(4, hwsync::barrier_algorithm::combining_tree);
  (void)b.arrive(1);
  (void)b.arrive(5);
  return 0;
}

int barrier_arrive_zero() {
  static hwsync::barrier<> b(2);
  (void)b.arrive(0);
  return 0;
}

int barrier_drop_with_no_parties() {
  static hwsync::barrier<> b(0);
  b.arrive_and_drop();
  return 0;
}

int barrier_negative_expected() {
  hwsync::barrier<> b(-1);
  return b.algorithm() == hwsync::barrier_algorithm::central ? 0 : 1;
}

// hwsync::numa_mutex (numa_mutex_test)

int numa_unlock_by_non_owner() {
  static hwsync::numa_mutex m;
  m.lock();
  std::thread([] { m.unlock(); }).join();
  return 0;
}

int numa_unlock_unlocked() {
  static hwsync::numa_mutex m;
  m.unlock();
  return 0;
}

int numa_relock_by_holder() {
  static hwsync::numa_mutex m;
  m.lock();
  m.lock();
  return 0;
}

int numa_destroy_held() {
  alignas(hwsync::numa_mutex) unsigned char storage[sizeof(hwsync::numa_mutex)];
  auto* m = new (storage) hwsync::numa_mutex;
  m->lock();
  m->~numa_mutex();
  return 0;
}

// hwsync::stm (stm_test): a transaction reference kept past its block.
int stm_transaction_escaped() {
  static hwsync::stm::tvar<int> v{0};
  hwsync::stm::transaction* escaped = nullptr;
  hwsync::stm::atomically([&](hwsync::stm::transaction& tx) { escaped = &tx; });
  (void)escaped->read(v);
  return 0;
}

// The lock-order checker's actions (lock_order_test): the seed's transfers,
// A -> B and later B -> A on another thread, never overlapping in time.
void lock_order_transfers(hwsync::lock_order_action action) {
  static hwsync::mutex a;
  static hwsync::mutex b;
  hwsync::set_lock_name(&a, "account A");
  hwsync::set_lock_name(&b, "account B");
  hwsync::enable_lock_order_checking();
  hwsync::set_lock_order_action(action);
  std::thread([] {
    a.lock();
    b.lock();
    b.unlock();
    a.unlock();
  }).join();
  std::thread([] {
    b.lock();
    a.lock();
    a.unlock();
    b.unlock();
  }).join();
  std::printf("transfers done\n");
}

int lock_order_log() {
  lock_order_transfers(hwsync::lock_order_action::log);
  return 0;
}

int lock_order_abort() {
  lock_order_transfers(hwsync::lock_order_action::abort);
  return 0;
}

// The profiler's environment switch (lock_profile_test): named locks taken
// in one order, so that nothing but the profile is printed.
int lock_profile_named_locks() {
  static hwsync::mutex a;
  static hwsync::mutex b;
  hwsync::set_lock_name(&a, "account A");
  hwsync::set_lock_name(&b, "account B");
  for (int i = 0; i < 2; ++i) {
    std::thread([] {
      a.lock();
      b.lock();
      b.unlock();
      a.unlock();
    }).join();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CASE\n", argv[0]);
    return 2;
  }
  struct entry {
    const char* name;
    int (*run)();
  };
  const entry cases[] = {
      {"latch_count_down_past_zero", latch_count_down_past_zero},
      {"latch_negative_count_down", latch_negative_count_down},
      {"latch_expected_above_max", latch_expected_above_max},
      {"stm_transaction_escaped", stm_transaction_escaped},
      {"barrier_wait_stale_token", barrier_wait_stale_token},
      {"barrier_wait_foreign_token", barrier_wait_foreign_token},
      {"barrier_arrive_too_many", barrier_arrive_too_many},
      {"barrier_tree_arrive_too_many", barrier_tree_arrive_too_many},
      {"barrier_arrive_zero", barrier_arrive_zero},
      {"barrier_drop_with_no_parties", barrier_drop_with_no_parties},
      {"barrier_negative_expected", barrier_negative_expected},
      {"biased_published_reader_locks_exclusive", biased_published_reader_locks_exclusive},
      {"biased_published_reader_locks_shared_again", biased_published_reader_locks_shared_again},
      {"biased_writer_locks_shared", biased_writer_locks_shared},
      {"biased_unlock_shared_not_held", biased_unlock_shared_not_held},
      {"biased_unlock_by_non_owner", biased_unlock_by_non_owner},
      {"biased_destroy_published", biased_destroy_published},
      {"shared_unlock_shared_not_held", shared_unlock_shared_not_held},
      {"shared_writer_locks_shared", shared_writer_locks_shared},
      {"shared_writer_try_locks_shared", shared_writer_try_locks_shared},
      {"shared_reader_locks_shared_again", shared_reader_locks_shared_again},
      {"shared_reader_locks_exclusive", shared_reader_locks_exclusive},
      {"shared_upgrader_locks_shared", shared_upgrader_locks_shared},
      {"shared_writer_relocks", shared_writer_relocks},
      {"shared_unlock_by_non_owner", shared_unlock_by_non_owner},
      {"shared_unlock_unlocked", shared_unlock_unlocked},
      {"shared_writer_unlocks_shared", shared_writer_unlocks_shared},
      {"shared_unlock_upgrade_not_held", shared_unlock_upgrade_not_held},
      {"shared_upgrade_not_held", shared_upgrade_not_held},
      {"shared_downgrade_not_held", shared_downgrade_not_held},
      {"shared_destroy_held_shared", shared_destroy_held_shared},
      {"shared_destroy_held_exclusive", shared_destroy_held_exclusive},
      {"numa_unlock_by_non_owner", numa_unlock_by_non_owner},
      {"numa_unlock_unlocked", numa_unlock_unlocked},
      {"numa_relock_by_holder", numa_relock_by_holder},
      {"numa_destroy_held", numa_destroy_held},
      {"lock_order_log", lock_order_log},
      {"lock_order_abort", lock_order_abort},
      {"lock_profile_named_locks", lock_profile_named_locks},
      {"unlock_by_non_owner", unlock_by_non_owner},
      {"unlock_unlocked", unlock_unlocked},
      {"relock_by_holder", relock_by_holder},
      {"destroy_held", destroy_held},
      {"timed_unlock_by_non_owner", timed_unlock_by_non_owner},
      {"recursive_unlock_by_non_owner", recursive_unlock_by_non_owner},
      {"semaphore_binary_released_twice", semaphore_binary_released_twice},
      {"semaphore_release_n_past_max", semaphore_release_n_past_max},
      {"semaphore_release_more_than_max", semaphore_release_more_than_max},
      {"semaphore_release_negative", semaphore_release_negative},
      {"semaphore_desired_past_max", semaphore_desired_past_max},
      {"semaphore_desired_negative", semaphore_desired_negative},
      {"semaphore_destroyed_with_waiter", semaphore_destroyed_with_waiter},
      {"fair_semaphore_released_past_max", fair_semaphore_released_past_max},
      {"fair_semaphore_destroyed_with_waiters", fair_semaphore_destroyed_with_waiters}};
  for (const entry& c : cases) {
    if (std::strcmp(argv[1], c.name) == 0) {
      c.run();
      std::printf("survived\n");
      return 0;
    }
  }
  std::fprintf(stderr, "unknown case '%s'\n", argv[1]);
  return 2;
}
