// The file:// backend: a lock service for one machine.
//
// Each lock name is the file <dir>/<name>.lock. Holding the lock = holding
// flock(2) LOCK_EX on it through this distributed_lock's own open file
// description. Like OFD locks (F_OFD_SETLK), flock locks belong to the open
// file description, not the process: the kernel releases one when the
// description's last descriptor closes, including when the process dies
// (kill -9), and two descriptions conflict even inside one process, so two
// distributed_lock objects on one name exclude each other like two
// processes. For a whole-file exclusive lock the two are the same lock; flock
// is chosen because it is the cheaper system call (docs/distributed-locks.md
// has the measured pair, bench/net_bench.cpp's flock and ofd peers).
//
// The fencing token counter lives in the first 32 bytes of the same file,
// mapped shared, written only under the lock, as two 16-byte slots
// {token, token ^ check_key}; token t goes to the slot that does not hold
// t - 1 (token first, then the check). A crash in the middle of a write can
// damage only the slot being written (whose token was never handed out); the
// other slot still holds t - 1, and reading takes the highest valid slot.
// Every process sees the same page cache, so the counter never goes back
// while the machine runs, whatever the processes do.
//
// A machine crash loses what the page cache had not written back. On a file
// system with a disk, tokens are therefore handed out from a durable
// reservation, as databases hand out sequence numbers: bytes 32..64 hold a
// bound B in two checked slots of the same kind, and bytes 64..80 the boot
// id (/proc/sys/kernel/random/boot_id) of the boot that last used the
// counter. Before a token above B is handed out, B is raised by
// reservation_block and the file is fdatasync'ed, so B on disk is always at
// least every token handed out. A holder that finds another boot's id in
// the file (the machine restarted since: the counter on disk may be behind)
// continues from B + 1. So one acquisition in reservation_block pays an
// fdatasync instead of every one, and a crash skips at most
// reservation_block numbers; tokens stay strictly increasing. Without a
// readable boot id every acquisition syncs its token, as the safe fallback.
// On tmpfs/ramfs there is no disk and no sync: the page cache outlives any
// process, and a reboot ends every holder along with the counter. The
// file's directory entry is fsynced once, when the file is created, so the
// counter file itself survives a machine crash.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "hwsync/net/lock_backend.hpp"

namespace hwsync::net {
namespace {

constexpr std::uint64_t check_key = 0x6877'7379'6e63'746bULL;  // "hwsynctk"
constexpr std::size_t slot_size = 16;
constexpr std::size_t pair_size = 2 * slot_size;
// counter slots, reservation slots, boot id
constexpr std::size_t record_size = 2 * pair_size + 16;
constexpr std::size_t reservation_offset = pair_size;
constexpr std::size_t boot_offset = 2 * pair_size;
// Tokens reserved by one fdatasync; also the most a machine crash can skip.
constexpr std::uint64_t reservation_block = std::uint64_t{1} << 16;

using boot_id = std::array<std::uint64_t, 2>;

// This boot's id (128 bits from the kernel's boot_id UUID), read once; all
// zero if it cannot be read.
boot_id this_boot() noexcept {
  static const boot_id id = [] {
    boot_id b{};
    const int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return b;
    char text[64] = {};
    const ssize_t n = ::read(fd, text, sizeof text - 1);
    ::close(fd);
    int digits = 0;
    for (ssize_t i = 0; i < n && digits < 32; ++i) {
      const char c = text[i];
      const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (v < 0) continue;
      b[static_cast<std::size_t>(digits / 16)] =
          b[static_cast<std::size_t>(digits / 16)] << 4 | static_cast<std::uint64_t>(v);
      ++digits;
    }
    return digits == 32 ? b : boot_id{};
  }();
  return id;
}

void make_directories(const std::string& path) {
  // mkdir -p, each level 0700: lock files are this user's business.
  for (std::size_t at = 1; at <= path.size(); ++at) {
    if (at != path.size() && path[at] != '/') continue;
    const std::string prefix = path.substr(0, at);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      throw_errno(errno, "create lock directory " + prefix, "a directory (mkdir -p)");
    }
  }
}

// The counter's two slots in the shared mapping. atomic_ref keeps the
// compiler from tearing or reordering the two stores of a slot; the lock's
// system calls order them against other processes.
class token_record {
 public:
  explicit token_record(unsigned char* base) noexcept
      : words_(reinterpret_cast<std::uint64_t*>(base)) {}

  // The highest valid slot; nullopt if a slot was written but none is valid.
  std::optional<std::uint64_t> highest() const noexcept {
    std::uint64_t best = 0;
    bool any_written = false;
    bool any_valid = false;
    for (std::size_t slot = 0; slot < 2; ++slot) {
      const std::uint64_t token = load(2 * slot);
      const std::uint64_t check = load(2 * slot + 1);
      if (token == 0 && check == 0) continue;  // never written
      any_written = true;
      if ((token ^ check_key) != check) continue;  // torn by a crash mid-write
      any_valid = true;
      best = std::max(best, token);
    }
    if (any_written && !any_valid) return std::nullopt;
    return best;
  }

  // Into the slot that does not hold the highest valid value, so a crash
  // during this write leaves that value readable.
  void store(std::uint64_t token) noexcept {
    const std::size_t slot = valid(0) && (!valid(1) || load(0) > load(2)) ? 1 : 0;
    std::atomic_ref<std::uint64_t>(words_[2 * slot]).store(token, std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(words_[2 * slot + 1])
        .store(token ^ check_key, std::memory_order_release);
  }

 private:
  bool valid(std::size_t slot) const noexcept {
    return (load(2 * slot) ^ check_key) == load(2 * slot + 1);
  }
  std::uint64_t load(std::size_t i) const noexcept {
    return std::atomic_ref<std::uint64_t>(words_[i]).load(std::memory_order_acquire);
  }
  std::uint64_t* words_;
};

class file_lock final : public backend_lock {
 public:
  file_lock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {
    try {
      struct stat st {};
      if (::fstat(fd_, &st) != 0) throw_errno(errno, "stat lock file " + path_, "its size");
      // Extending only (never shrinking): two openers racing here both
      // set the same size, and neither can cut off the other's counter.
      if (st.st_size < static_cast<off_t>(record_size) &&
          ::ftruncate(fd_, static_cast<off_t>(record_size)) != 0) {
        throw_errno(errno, "size lock file " + path_,
                    "room for the token counter (" + std::to_string(record_size) + " bytes)");
      }
      void* map = ::mmap(nullptr, record_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
      if (map == MAP_FAILED) throw_errno(errno, "map lock file " + path_, "a shared mapping");
      map_ = static_cast<unsigned char*>(map);
      struct statfs fs {};
      needs_sync_ =
          !(::fstatfs(fd_, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC));
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }
  ~file_lock() override {
    ::munmap(map_, record_size);
    ::close(fd_);
  }

  std::optional<fencing_token> try_acquire(std::chrono::milliseconds) override {
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) return std::nullopt;
      throw_errno(errno, "lock " + path_ + " (flock LOCK_EX|LOCK_NB)", "the lock or EWOULDBLOCK");
    }
    return next_token();
  }

  std::optional<fencing_token> acquire_until(std::chrono::milliseconds ttl,
                                             steady_time deadline) override {
    if (deadline == no_deadline) {
      // The kernel queues us: no polling, woken when the holder unlocks.
      while (::flock(fd_, LOCK_EX) != 0) {
        if (errno != EINTR) throw_errno(errno, "lock " + path_ + " (flock LOCK_EX)", "the lock");
      }
      return next_token();
    }
    // flock takes no timeout (only a signal would interrupt it), so a
    // bounded wait polls with a capped exponential backoff.
    auto pause = std::chrono::microseconds(50);
    for (;;) {
      if (auto token = try_acquire(ttl)) return token;
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return std::nullopt;
      std::this_thread::sleep_for(
          std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
      pause = std::min(pause * 2, std::chrono::microseconds(20'000));
    }
  }

  void wait_for_release(steady_time deadline) override {
    const auto now = std::chrono::steady_clock::now();
    if (now < deadline) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          std::chrono::milliseconds(5), deadline - now));
    }
  }

  // The kernel holds the lock for as long as the description is open:
  // there is no lease to renew and none to lose.
  bool renew(std::chrono::milliseconds, steady_time) override { return true; }

  bool release() override {
    if (::flock(fd_, LOCK_UN) != 0) {
      throw_errno(errno, "unlock " + path_ + " (flock LOCK_UN)", "the lock released");
    }
    return true;
  }

  bool lease_expires() const noexcept override { return false; }

 private:
  // Under the lock: read the counter, make counter + 1 durable (see the top
  // of this file), hand it out. On failure the lock is released before the
  // error propagates.
  fencing_token next_token() {
    try {
      token_record counter(map_);
      const auto last = counter.highest();
      if (!last) throw damaged("token counter");
      std::uint64_t next = *last + 1;
      const bool known_boot = this_boot() != boot_id{};
      if (needs_sync_ && known_boot) next = reserve(next);
      counter.store(next);
      // No boot id: nothing tells a reboot apart, so every token is synced.
      if (needs_sync_ && !known_boot) sync("the token counter");
      return fencing_token(next);
    } catch (...) {
      ::flock(fd_, LOCK_UN);
      throw;
    }
  }

  // On a disk, with a boot id: returns the token to hand out (next, or past
  // the reservation after a reboot), covered by the reservation on disk.
  std::uint64_t reserve(std::uint64_t next) {
    const boot_id boot = this_boot();
    token_record reservation(map_ + reservation_offset);
    const auto bound = reservation.highest();
    if (!bound) throw damaged("token reservation");
    auto* recorded = reinterpret_cast<std::uint64_t*>(map_ + boot_offset);
    const bool same_boot =
        std::atomic_ref<std::uint64_t>(recorded[0]).load(std::memory_order_relaxed) == boot[0] &&
        std::atomic_ref<std::uint64_t>(recorded[1]).load(std::memory_order_relaxed) == boot[1];
    if (!same_boot) next = std::max(next, *bound + 1);
    if (next > *bound) {
      reservation.store(next + reservation_block - 1);
      sync("the token reservation");
    }
    if (!same_boot) {
      std::atomic_ref<std::uint64_t>(recorded[0]).store(boot[0], std::memory_order_relaxed);
      std::atomic_ref<std::uint64_t>(recorded[1]).store(boot[1], std::memory_order_relaxed);
    }
    return next;
  }

  void sync(const char* what) {
    if (::fdatasync(fd_) != 0) {
      throw_errno(errno, std::string("fdatasync ") + what + " of " + path_, "it on disk");
    }
  }

  error damaged(const char* what) const {
    return error(errc::io_error, std::string("read the ") + what + " of " + path_ +
                                     ": expected a hwsync token record (two checked 16-byte "
                                     "slots), got bytes that are not one: not a hwsync lock "
                                     "file, or damaged");
  }

  int fd_;
  std::string path_;
  unsigned char* map_ = nullptr;
  bool needs_sync_ = true;
};

class file_backend final : public lock_backend {
 public:
  explicit file_backend(std::string dir) : dir_(std::move(dir)) {
    make_directories(dir_);
    dir_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd_ < 0) throw_errno(errno, "open lock directory " + dir_, "a directory");
  }
  ~file_backend() override { ::close(dir_fd_); }

  std::unique_ptr<backend_lock> open(std::string_view name, std::string_view) override {
    const std::string file = std::string(name) + ".lock";
    const std::string path = dir_ + "/" + file;
    int fd = ::openat(dir_fd_, file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      // A new counter file: make its directory entry durable before any
      // token from it is handed out.
      if (::fsync(dir_fd_) != 0) {
        const int err = errno;
        ::close(fd);
        throw_errno(err, "fsync lock directory " + dir_, "the new lock file on disk");
      }
    } else if (errno == EEXIST) {
      fd = ::openat(dir_fd_, file.c_str(), O_RDWR | O_CLOEXEC);
    }
    if (fd < 0) throw_errno(errno, "open lock file " + path, "a readable, writable file");
    return std::make_unique<file_lock>(fd, path);
  }

 private:
  std::string dir_;
  int dir_fd_ = -1;
};

std::shared_ptr<lock_backend> make_file_backend(const service_uri& uri) {
  if (!uri.host.empty() || uri.port) {
    throw error(errc::bad_uri, "lock service URI '" + uri.text +
                                   "': expected file:///absolute/dir (three slashes: no host), "
                                   "got host '" +
                                   uri.host + "'");
  }
  if (uri.path.empty() || uri.path.front() != '/') {
    throw error(errc::bad_uri, "lock service URI '" + uri.text +
                                   "': expected file:///absolute/dir, got no directory");
  }
  if (!uri.query.empty()) {
    throw error(errc::bad_uri, "lock service URI '" + uri.text +
                                   "': expected no query parameters for file://, got '" +
                                   uri.query.begin()->first + "'");
  }
  std::string dir = uri.path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return std::make_shared<file_backend>(std::move(dir));
}

const backend_registration file_registered{"file", &make_file_backend};

}  // namespace
}  // namespace hwsync::net
