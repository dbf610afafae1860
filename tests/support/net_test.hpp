// What the net tests share: a scratch directory, deadlines, and catching a
// net::error to look at it.
#pragma once

#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "hwsync/net/error.hpp"
#include "hwsync/net/ring.hpp"

namespace hwsync::test {

// A fresh directory under /tmp (a disk here, not tmpfs), removed with
// everything in it when the object goes.
class temp_dir {
 public:
  explicit temp_dir(std::string_view tag = "net") {
    std::string pattern = "/tmp/hwsync-";
    pattern += tag;
    pattern += "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << pattern;
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const noexcept { return path_; }
  // file://<path>[/<sub>]: a lock service in this directory.
  std::string file_uri(std::string_view sub = {}) const {
    // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, wrongly) on
    // the same thing written as one chain of operator+.
    std::string uri = "file://";
    uri += path_;
    if (!sub.empty()) {
      uri += '/';
      uri += sub;
    }
    return uri;
  }

 private:
  std::string path_;
};

// Polls `done` every 5 ms until it holds (true) or `limit` has passed
// (false): for state another process or the server changes.
template <class Done>
bool eventually(Done&& done, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// One line (without its newline) read from `fd`, a child's stdout pipe;
// what arrived so far after `limit`, or at the end of the stream.
inline std::string read_line(int fd, std::chrono::milliseconds limit) {
  std::string line;
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < give_up) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char c;
    if (::read(fd, &c, 1) != 1) break;
    if (c == '\n') return line;
    line += c;
  }
  return line;
}

inline net::steady_time deadline_in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

// The net::error `f` threw; a test failure (and an io_error) if none.
template <class F>
net::error expect_net_error(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const net::error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a hwsync::net::error, got none";
  return net::error(net::errc::io_error, "none thrown");
}

// The same as a code and its message.
template <class F>
std::pair<net::errc, std::string> net_error_of(F&& f) {
  const net::error e = expect_net_error(std::forward<F>(f));
  return {e.code(), e.what()};
}

}  // namespace hwsync::test
