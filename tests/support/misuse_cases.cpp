// Misuse of primitives, one case per argument. With HWSYNC_DEBUG_CHECKS each
// case must abort with a message; the tests (mutex_test) run this program as
// a child and read the message. Prints "survived" if a case did not abort.
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>

#include "hwsync/mutex.hpp"
#include "hwsync/shared_mutex.hpp"

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
  const entry cases[] = {{"shared_unlock_shared_not_held", shared_unlock_shared_not_held},
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
                         {"unlock_by_non_owner", unlock_by_non_owner},
                         {"unlock_unlocked", unlock_unlocked},
                         {"relock_by_holder", relock_by_holder},
                         {"destroy_held", destroy_held},
                         {"timed_unlock_by_non_owner", timed_unlock_by_non_owner},
                         {"recursive_unlock_by_non_owner", recursive_unlock_by_non_owner}};
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
