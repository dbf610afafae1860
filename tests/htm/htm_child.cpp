// A program the htm tests run as a child process, with HWSYNC_HTM set or
// unset, because the backend is decided once per process and because some
// cases are meant to die (SIGILL, a fatal misuse message). One action per
// argument:
//   report            prints the capability report and the chosen backend
//   elide             2 threads x 20000 elided lock/unlock on hwsync::mutex
//                     and hwsync::shared_mutex<>, try_lock, and the bare
//                     transaction calls; prints "ok ..." when the counts are
//                     exact. On a machine without RTM it dies of SIGILL if
//                     anything executes XBEGIN/XTEST/XEND.
//   raw_xbegin        executes XBEGIN directly: the positive control that
//                     shows such a child does die of SIGILL here
//   unlock_not_held   elided<hwsync::mutex>::unlock() without lock() under
//                     the policy emulation: must abort with a message
//   abort_in_emulated transaction::abort(1) inside an emulated transaction:
//                     must abort with a message
#include <cstdio>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/htm.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/shared_mutex.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace {

namespace htm = hwsync::htm;

int report() {
  const auto& r = htm::capabilities();
  std::printf("report: %s\n", r.describe().c_str());
  std::printf("backend=%s probe_ran=%d rtm_usable=%d\n",
              std::string(htm::to_string(htm::active_backend())).c_str(), r.probe.ran ? 1 : 0,
              r.rtm_usable ? 1 : 0);
  return 0;
}

template <class Lock>
long count_with_two_threads(Lock& m, long per_thread) {
  long counter = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t) {
    ts.emplace_back([&] {
      for (long i = 0; i < per_thread; ++i) {
        if (i % 16 == 0) {
          std::unique_lock g(m, std::try_to_lock);
          if (!g.owns_lock()) g.lock();
          ++counter;
        } else {
          std::lock_guard g(m);
          ++counter;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  return counter;
}

int elide() {
  constexpr long per_thread = 20000;
  htm::elided<hwsync::mutex> m;
  htm::elided<hwsync::shared_mutex<>> sm;
  const long a = count_with_two_threads(m, per_thread);
  const long b = count_with_two_threads(sm, per_thread);
  {
    std::shared_lock g(sm);  // the shared side passes through
  }
  const htm::status s = htm::transaction::begin();
  if (s.is_started()) htm::transaction::commit();
  const bool in_tx = htm::transaction::in_transaction();
  htm::transaction::abort(7);  // outside a transaction: does nothing, as XABORT
  const bool ok = a == 2 * per_thread && b == 2 * per_thread && !in_tx;
  std::printf("%s backend=%s counters=%ld,%ld begin=%s probe_ran=%d\n", ok ? "ok" : "WRONG",
              std::string(htm::to_string(htm::active_backend())).c_str(), a, b,
              s.describe().c_str(), htm::capabilities().probe.ran ? 1 : 0);
  return ok ? 0 : 1;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("rtm"))) int raw_xbegin() {
  std::printf("executing XBEGIN\n");
  std::fflush(stdout);
  const unsigned s = _xbegin();
  if (s == _XBEGIN_STARTED) _xend();
  std::printf("survived: status %#x\n", s);
  return 0;
}
#else
int raw_xbegin() {
  std::printf("not x86: no XBEGIN to execute\n");
  return 2;
}
#endif

int unlock_not_held() {
  htm::policy_emulation_scope scope(htm::emulation_config::never_abort());
  htm::elided<hwsync::mutex> m;
  m.unlock();
  std::printf("survived\n");
  return 0;
}

int abort_in_emulated() {
  htm::policy_emulation_scope scope(htm::emulation_config::never_abort());
  const htm::status s = htm::transaction::begin();
  if (!s.is_started()) {
    std::printf("begin did not start: %s\n", s.describe().c_str());
    return 1;
  }
  htm::transaction::abort(1);
  std::printf("survived\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s report|elide|raw_xbegin|unlock_not_held|abort_in_emulated\n",
                 argv[0]);
    return 2;
  }
  const std::string action = argv[1];
  if (action == "report") return report();
  if (action == "elide") return elide();
  if (action == "raw_xbegin") return raw_xbegin();
  if (action == "unlock_not_held") return unlock_not_held();
  if (action == "abort_in_emulated") return abort_in_emulated();
  std::fprintf(stderr,
               "htm_child: unknown action '%s'; expected report, elide, raw_xbegin, "
               "unlock_not_held or abort_in_emulated\n",
               argv[1]);
  return 2;
}
