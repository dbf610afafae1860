// bench/net_bench.cpp — the file:// lock service (hwsync/net/lock_service.hpp)
// beside the kernel's file locks, in one binary and one run. The Redis
// scenarios are in bench/redis_bench.cpp.
//
// Scenario "net/file_lock_unlock/<id>/fs:<tmpfs|disk>": one thread locks and
// unlocks one name in batches of 16; cycles_per_op is the median batch (less
// the timer's own cost) over 16. ids: hwsync_file (distributed_lock on
// file://<dir>), flock (flock(2) LOCK_EX / LOCK_UN on one file) and ofd
// (fcntl F_OFD_SETLKW / F_UNLCK on one file), all in one fresh directory per
// file system: tmpfs is /dev/shm (where $XDG_RUNTIME_DIR lives, the default
// service's directory), disk is $TMPDIR or /tmp. The target:
// hwsync_file <= 1.5x flock. hwsync_file checks that every token it got was
// greater than the one before, so a broken counter is an error, not a fast
// result.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "harness.hpp"
#include "hwsync/net/lock_service.hpp"

namespace hwsync::bench {
namespace {

constexpr int batch = 16;

// A fresh directory under `base`, removed when the benchmark ends.
class scratch_dir {
 public:
  explicit scratch_dir(const std::string& base) {
    std::string templ = base + "/hwsync-net-bench-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp " + templ);
    path_ = templ;
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

std::string fs_base(const std::string& fs) {
  if (fs == "tmpfs") return "/dev/shm";
  const char* t = std::getenv("TMPDIR");
  return t != nullptr && *t != '\0' ? t : "/tmp";
}

// Runs `pair` (one lock+unlock; false = failed, the scenario said why)
// in batches of `batch`.
template <class Pair>
void pairs_in_batches(benchmark::State& state, Pair&& pair) {
  batch_timer timer;
  for (auto _ : state) {
    timer.begin_once();
    timer.start();
    for (int i = 0; i < batch; ++i) {
      if (!pair()) return;
    }
    timer.stop();
  }
  report_batches(state, timer, batch);
}

void bm_hwsync_file(benchmark::State& state, const std::string& fs) {
  const scratch_dir dir(fs_base(fs));
  const net::lock_service service("file://" + dir.path());
  net::distributed_lock lock(service, "bench");
  net::fencing_token last{};
  pairs_in_batches(state, [&] {
    lock.lock();
    const net::fencing_token t = lock.token();
    lock.unlock();
    if (!(last < t)) {
      state.SkipWithError("file:// handed out a token that did not increase");
      return false;
    }
    last = t;
    return true;
  });
}

class lock_file {
 public:
  explicit lock_file(const std::string& dir) : path_(dir + "/bench.lock") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error("open " + path_);
  }
  ~lock_file() { ::close(fd_); }
  lock_file(const lock_file&) = delete;
  lock_file& operator=(const lock_file&) = delete;
  int fd() const noexcept { return fd_; }

 private:
  std::string path_;
  int fd_ = -1;
};

void bm_flock(benchmark::State& state, const std::string& fs) {
  const scratch_dir dir(fs_base(fs));
  const lock_file f(dir.path());
  pairs_in_batches(state, [&] {
    if (::flock(f.fd(), LOCK_EX) == 0 && ::flock(f.fd(), LOCK_UN) == 0) return true;
    state.SkipWithError("flock failed");
    return false;
  });
}

void bm_ofd(benchmark::State& state, const std::string& fs) {
  const scratch_dir dir(fs_base(fs));
  const lock_file f(dir.path());
  struct flock lk = {};
  lk.l_whence = SEEK_SET;
  pairs_in_batches(state, [&] {
    lk.l_type = F_WRLCK;
    const bool locked = ::fcntl(f.fd(), F_OFD_SETLKW, &lk) == 0;
    lk.l_type = F_UNLCK;
    if (locked && ::fcntl(f.fd(), F_OFD_SETLK, &lk) == 0) return true;
    state.SkipWithError("fcntl OFD lock failed");
    return false;
  });
}

void register_all() {
  for (const std::string fs : {"tmpfs", "disk"}) {
    benchmark::RegisterBenchmark(("net/file_lock_unlock/hwsync_file/fs:" + fs).c_str(),
                                 [fs](benchmark::State& s) { bm_hwsync_file(s, fs); });
    benchmark::RegisterBenchmark(("net/file_lock_unlock/flock/fs:" + fs).c_str(),
                                 [fs](benchmark::State& s) { bm_flock(s, fs); });
    benchmark::RegisterBenchmark(("net/file_lock_unlock/ofd/fs:" + fs).c_str(),
                                 [fs](benchmark::State& s) { bm_ofd(s, fs); });
  }
}

}  // namespace
}  // namespace hwsync::bench

int main(int argc, char** argv) {
  return hwsync::bench::bench_main(argc, argv, [] { hwsync::bench::register_all(); });
}
