// hwsync-lock: runs a command while holding a distributed lock.
//
//   hwsync-lock [--service URI] [--ttl 10s] [--timeout 30s] NAME -- COMMAND...
//
// Like flock(1) with a lease, or `etcdctl lock NAME COMMAND`: the command
// runs with HWSYNC_FENCING_TOKEN in its environment; the lease is renewed in
// the background; if it is lost, the command gets SIGTERM (SIGKILL after
// --kill-after) and hwsync-lock exits with its own code, so a script can
// tell "the command failed" from "the command ran without the lock".
//
// Signals: every thread blocks SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGUSR1 and
// SIGUSR2 from the start; the main thread waits for them (sigwaitinfo,
// sigtimedwait). The lease keeper's on_lost handler raises SIGUSR1 and the
// thread that waits for the lock raises SIGUSR2 at this process, so the
// loss, the acquisition, the command's exit and forwarded signals are all
// handled in one place.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/net/lock_service.hpp"

extern char** environ;

namespace {

constexpr int exit_usage = 64;        // EX_USAGE
constexpr int exit_unavailable = 69;  // EX_UNAVAILABLE
constexpr int exit_timeout = 75;      // EX_TEMPFAIL
constexpr int exit_lease_lost = 76;
constexpr int exit_cannot_run = 126;
constexpr int exit_not_found = 127;

constexpr const char* exit_codes_help = R"(Exit status:
  COMMAND's own status when it ran and the lease held to its end
  128+N  COMMAND was killed by signal N (the lease held)
  64     usage error: bad option, duration, URI or lock name
  69     the lock service failed (unreachable, I/O error, bad reply)
  75     the lock was not acquired within --timeout (flock -w exits 1 here)
  76     the lease was lost while COMMAND ran: COMMAND got SIGTERM (and SIGKILL
         after --kill-after); its own status is discarded
  126    COMMAND was found but could not be run
  127    COMMAND was not found
A COMMAND that itself exits with 64, 69, 75 or 76 is indistinguishable from these
(as with timeout(1)'s 124).

The lock service: --service, else $HWSYNC_LOCK_SERVICE, else
file://$XDG_RUNTIME_DIR/hwsync-locks, else file:///tmp/hwsync-locks.
COMMAND sees HWSYNC_FENCING_TOKEN (a decimal number that grows with every
acquisition of NAME): pass it to the storage COMMAND writes, so a holder whose
lease has gone can be refused.
SIGINT, SIGTERM and SIGHUP sent to hwsync-lock are forwarded to COMMAND; while it
still waits for the lock they end hwsync-lock with 128+N.)";

// "10s", "250ms", "2m", "1h", "5" (seconds), and for --timeout "inf".
std::chrono::milliseconds parse_duration(const std::string& text, const char* option,
                                         bool allow_infinite, bool* infinite) {
  if (allow_infinite && (text == "inf" || text == "forever")) {
    *infinite = true;
    return {};
  }
  double value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [unit_at, ec] = std::from_chars(begin, end, value);
  const std::string unit(unit_at, end);
  double scale = -1;
  if (unit.empty() || unit == "s") scale = 1000;
  if (unit == "ms") scale = 1;
  if (unit == "m") scale = 60'000;
  if (unit == "h") scale = 3'600'000;
  if (ec != std::errc{} || unit_at == begin || scale < 0 || value < 0) {
    throw CLI::ValidationError(option, "expected a duration such as 10s, 250ms, 2m or 1h" +
                                           std::string(allow_infinite ? " (or inf)" : "") +
                                           ", got '" + text + "'");
  }
  return std::chrono::milliseconds(static_cast<long long>(value * scale + 0.5));
}

std::string describe(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

}  // namespace

int main(int argc, char** argv) {
  // Split at the first "--": what follows is COMMAND, untouched by CLI11.
  int split = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      split = i;
      break;
    }
  }

  CLI::App app{
      "hwsync-lock [OPTIONS] NAME -- COMMAND [ARGS...]\n"
      "Runs COMMAND while holding the distributed lock NAME (hwsync::net::distributed_lock).",
      "hwsync-lock"};
  app.footer(exit_codes_help);
  std::string service_uri;
  std::string ttl_text = "10s";
  std::string timeout_text = "30s";
  std::string kill_after_text = "10s";
  std::string name;
  app.add_option("--service", service_uri, "lock service URI: file:///dir or redis://host:port");
  app.add_option("--ttl", ttl_text, "lease time to live; renewed every ttl/3 (default 10s)");
  app.add_option("--timeout", timeout_text,
                 "how long to wait for the lock: a duration, 0 to try once, or inf (default 30s)");
  app.add_option("--kill-after", kill_after_text,
                 "after a lost lease, SIGKILL COMMAND if it has not exited this long after SIGTERM "
                 "(default 10s)");
  app.add_option("NAME", name, "the lock's name (printable ASCII, no '/')")->required();

  std::chrono::milliseconds ttl{}, timeout{}, kill_after{};
  bool wait_forever = false;
  try {
    app.parse(split, argv);
    ttl = parse_duration(ttl_text, "--ttl", false, nullptr);
    timeout = parse_duration(timeout_text, "--timeout", true, &wait_forever);
    kill_after = parse_duration(kill_after_text, "--kill-after", false, nullptr);
    if (split + 1 >= argc) {
      throw CLI::ValidationError("COMMAND",
                                 "expected NAME -- COMMAND [ARGS...], got no COMMAND after " +
                                     std::string(split == argc ? "NAME (no '--')" : "'--'"));
    }
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }

  // Before any thread exists, so every thread inherits the mask.
  sigset_t handled;
  sigemptyset(&handled);
  for (const int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) {
    sigaddset(&handled, sig);
  }
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);

  using hwsync::net::errc;
  std::atomic<bool> lease_lost{false};
  std::string loss_message;
  std::optional<hwsync::net::lock_service> service;
  std::optional<hwsync::net::distributed_lock> lock;
  try {
    service.emplace(service_uri.empty() ? hwsync::net::lock_service::default_uri() : service_uri);
    lock.emplace(*service, name, hwsync::net::lock_options{ttl});
    lock->on_lost([&](const hwsync::net::error&) {
      lease_lost.store(true);
      ::kill(::getpid(), SIGUSR1);
    });
    // Waiting for the lock happens on a helper thread, so that SIGINT,
    // SIGTERM and SIGHUP (blocked everywhere, taken by sigtimedwait here)
    // still end a wait: the process then exits, and the kernel or the
    // lease's expiry frees whatever the helper may have acquired.
    bool acquired = false;
    std::exception_ptr failure;
    std::thread acquirer([&] {
      try {
        acquired = wait_forever ? (lock->lock(), true) : lock->try_lock_for(timeout);
      } catch (...) {
        failure = std::current_exception();
      }
      ::kill(::getpid(), SIGUSR2);
    });
    for (;;) {
      const int sig = ::sigwaitinfo(&handled, nullptr);
      if (sig == SIGUSR2) break;
      if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
        std::fprintf(stderr, "hwsync-lock: %s while waiting for lock '%s': giving up\n",
                     strsignal(sig), name.c_str());
        std::fflush(stderr);
        ::_exit(128 + sig);
      }
    }
    acquirer.join();
    if (failure) std::rethrow_exception(failure);
    if (!acquired) {
      std::fprintf(
          stderr,
          "hwsync-lock: lock '%s' at %s: expected to acquire it within %s, it stayed held\n",
          name.c_str(), service->uri().text.c_str(), describe(timeout).c_str());
      return exit_timeout;
    }
  } catch (const hwsync::net::error& e) {
    std::fprintf(stderr, "hwsync-lock: %s\n", e.what());
    return e.code() == errc::bad_uri || e.code() == errc::bad_name || e.code() == errc::not_built
               ? exit_usage
               : exit_unavailable;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "hwsync-lock: %s\n", e.what());
    return exit_usage;
  }

  // COMMAND's environment: ours plus the token.
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "HWSYNC_FENCING_TOKEN=", 21) != 0) env_storage.emplace_back(*e);
  }
  env_storage.push_back("HWSYNC_FENCING_TOKEN=" + lock->token().to_string());
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &handled);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t child = -1;
  const int spawn_error =
      posix_spawnp(&child, argv[split + 1], nullptr, &attr, argv + split + 1, envp.data());
  posix_spawnattr_destroy(&attr);
  int exit_code = 0;
  if (spawn_error != 0) {
    std::fprintf(stderr, "hwsync-lock: run '%s': expected an executable COMMAND, got %s\n",
                 argv[split + 1], std::strerror(spawn_error));
    exit_code = spawn_error == ENOENT ? exit_not_found : exit_cannot_run;
  } else {
    bool term_sent = false;
    std::chrono::steady_clock::time_point kill_at{};
    for (;;) {
      if (lease_lost.load() && !term_sent) {
        ::kill(child, SIGTERM);
        term_sent = true;
        kill_at = std::chrono::steady_clock::now() + kill_after;
      }
      int status = 0;
      const pid_t done = ::waitpid(child, &status, WNOHANG);
      if (done == child) {
        exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      timespec wait_for{1, 0};
      if (term_sent) {
        const auto left = kill_at - std::chrono::steady_clock::now();
        if (left <= decltype(left)::zero()) {
          ::kill(child, SIGKILL);
          kill_at = std::chrono::steady_clock::time_point::max();
        } else {
          const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
          wait_for = timespec{static_cast<time_t>(ns / 1'000'000'000),
                              static_cast<long>(ns % 1'000'000'000)};
        }
      }
      siginfo_t info;
      const int sig = ::sigtimedwait(&handled, &info, &wait_for);
      if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) ::kill(child, sig);
    }
  }

  try {
    lock->unlock();
  } catch (const hwsync::net::error& e) {
    if (e.code() != errc::lease_lost) {
      std::fprintf(stderr, "hwsync-lock: %s\n", e.what());
      return exit_unavailable;
    }
    loss_message = e.what();
  }
  if (lease_lost.load() || !loss_message.empty()) {
    std::fprintf(
        stderr, "hwsync-lock: %s\n",
        loss_message.empty() ? "the lease was lost while COMMAND ran" : loss_message.c_str());
    return exit_lease_lost;
  }
  return exit_code;
}
