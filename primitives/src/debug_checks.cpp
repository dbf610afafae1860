#include "hwsync/debug_checks.hpp"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace hwsync::debug {
namespace {

void print_prefix(const char* primitive, const void* address) noexcept {
  char name[32] = "?";
  pthread_getname_np(pthread_self(), name, sizeof name);
  std::fprintf(stderr, "hwsync: misuse of %s at %p by thread %d (\"%s\"): ", primitive, address,
               static_cast<int>(this_thread_id()), name);
}

}  // namespace

pid_t this_thread_id() noexcept {
  thread_local const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  return tid;
}

void misuse(const char* primitive, const void* address, const char* what) noexcept {
  print_prefix(primitive, address);
  std::fprintf(stderr, "%s\n", what);
  std::fflush(stderr);
  std::abort();
}

void misuse(const char* primitive, const void* address, const char* what,
            pid_t other_thread) noexcept {
  print_prefix(primitive, address);
  std::fprintf(stderr, "%s (thread %d)\n", what, static_cast<int>(other_thread));
  std::fflush(stderr);
  std::abort();
}

}  // namespace hwsync::debug
