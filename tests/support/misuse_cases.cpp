// Misuse of primitives, one case per argument. With HWSYNC_DEBUG_CHECKS each
// case must abort with a message; the tests (mutex_test) run this program as
// a child and read the message. Prints "survived" if a case did not abort.
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>

#include "hwsync/mutex.hpp"

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
  const entry cases[] = {{"unlock_by_non_owner", unlock_by_non_owner},
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
