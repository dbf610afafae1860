// The lock-service API without child processes: URI parsing and lock-name
// validation, the scheme registry, fenced_resource, the file:// backend
// between threads of one process, and the lease keeper's renewal and loss
// machinery through a backend the test controls.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hwsync/net/lock_service.hpp"
#include "support/net_test.hpp"
#include "support/watchdog.hpp"

using hwsync::test::deadline_in;
using hwsync::test::expect_net_error;
using hwsync::test::net_error_of;

namespace {

using namespace std::chrono_literals;
using hwsync::net::distributed_lock;
using hwsync::net::errc;
using hwsync::net::fenced_resource;
using hwsync::net::fencing_token;
using hwsync::net::lock_service;
using hwsync::net::service_uri;

TEST(ServiceUri, SplitsSchemeHostPortPathAndQuery) {
  const auto a = service_uri::parse("redis://127.0.0.1:6379");
  EXPECT_EQ(a.scheme, "redis");
  EXPECT_EQ(a.host, "127.0.0.1");
  ASSERT_TRUE(a.port.has_value());
  EXPECT_EQ(*a.port, 6379);
  EXPECT_EQ(a.path, "");
  const auto b = service_uri::parse("file:///run/user/1000/locks");
  EXPECT_EQ(b.scheme, "file");
  EXPECT_EQ(b.host, "");
  EXPECT_FALSE(b.port.has_value());
  EXPECT_EQ(b.path, "/run/user/1000/locks");
  const auto c = service_uri::parse("redis://[::1]:7000/2?timeout=5s&x=1");
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(*c.port, 7000);
  EXPECT_EQ(c.path, "/2");
  EXPECT_EQ(c.query.at("timeout"), "5s");
  EXPECT_EQ(c.query.at("x"), "1");
}

TEST(ServiceUri, MalformedUrisSayWhatWasExpected) {
  for (const char* bad : {"nothing-here", "://x", "Redis://h:1", "redis://h:0", "redis://h:65536",
                          "redis://h:12ab", "redis://h:", "redis://[::1", "file:///x?novalue"}) {
    const auto e = expect_net_error([&] { service_uri::parse(bad); });
    EXPECT_EQ(e.code(), errc::bad_uri) << bad;
    EXPECT_NE(std::string(e.what()).find("expected"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}

TEST(LockName, BadNamesAreRejectedWithTheReason) {
  for (const std::string& bad :
       {std::string(""), std::string("a/b"), std::string("."), std::string(".."),
        std::string("with space"), std::string("nul\0byte", 8), std::string(201, 'x')}) {
    const auto e = expect_net_error([&] { hwsync::net::validate_lock_name(bad); });
    EXPECT_EQ(e.code(), errc::bad_name) << bad;
    EXPECT_NE(std::string(e.what()).find("expected 1 to 200 printable ASCII"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(hwsync::net::validate_lock_name("orders.db-writer_2"));
  EXPECT_NO_THROW(hwsync::net::validate_lock_name(std::string(200, 'x')));
}

TEST(LockService, UnknownSchemesListTheRegisteredOnes) {
  const auto unknown = expect_net_error([] { lock_service("gopher://x"); });
  EXPECT_EQ(unknown.code(), errc::bad_uri);
  EXPECT_NE(std::string(unknown.what()).find("file://"), std::string::npos) << unknown.what();
}

TEST(LockService, FileUrisMustNameAnAbsoluteDirectory) {
  for (const char* bad : {"file://host/dir", "file://", "file:///tmp/x?sync=no"}) {
    const auto e = expect_net_error([&] { lock_service{bad}; });
    EXPECT_EQ(e.code(), errc::bad_uri) << bad << ": " << e.what();
  }
}

TEST(LockService, ADirectoryThatCannotBeCreatedIsAnIoErrorNamingIt) {
  // /proc accepts no new directories, whoever runs the test (root included).
  const auto e = expect_net_error([] { lock_service("file:///proc/hwsync-locks-here"); });
  EXPECT_EQ(e.code(), errc::io_error) << e.what();
  EXPECT_NE(std::string(e.what()).find("create lock directory /proc/hwsync-locks-here"),
            std::string::npos)
      << e.what();
}

TEST(LockService, TheDefaultIsFileInTheRuntimeDirectoryOrTmp) {
  const char* saved_service = std::getenv("HWSYNC_LOCK_SERVICE");
  const char* saved_runtime = std::getenv("XDG_RUNTIME_DIR");
  const std::string service = saved_service ? saved_service : "";
  const std::string runtime = saved_runtime ? saved_runtime : "";
  ::unsetenv("HWSYNC_LOCK_SERVICE");
  ::setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
  EXPECT_EQ(lock_service::default_uri(), "file:///run/user/4242/hwsync-locks");
  ::unsetenv("XDG_RUNTIME_DIR");
  EXPECT_EQ(lock_service::default_uri(), "file:///tmp/hwsync-locks");
  ::setenv("HWSYNC_LOCK_SERVICE", "redis://10.0.0.1:6379", 1);
  EXPECT_EQ(lock_service::default_uri(), "redis://10.0.0.1:6379");
  if (saved_service)
    ::setenv("HWSYNC_LOCK_SERVICE", service.c_str(), 1);
  else
    ::unsetenv("HWSYNC_LOCK_SERVICE");
  if (saved_runtime) ::setenv("XDG_RUNTIME_DIR", runtime.c_str(), 1);
}

TEST(FencedResource, AcceptsEqualOrHigherTokensAndRejectsLowerOnes) {
  fenced_resource<int> r(0);
  EXPECT_TRUE(r.write(fencing_token(5), [](int& v) { v = 5; }));
  EXPECT_TRUE(r.write(fencing_token(5), [](int& v) { v += 1; }));   // same holder again
  EXPECT_FALSE(r.write(fencing_token(4), [](int& v) { v = -1; }));  // stale holder
  EXPECT_FALSE(r.write(fencing_token(), [](int& v) { v = -2; }));   // no token at all
  EXPECT_TRUE(r.write(fencing_token(9), [](int& v) { v += 10; }));
  EXPECT_FALSE(r.write(fencing_token(8), [](int& v) { v = -3; }));
  EXPECT_EQ(r.read([](const int& v) { return v; }), 16);
  EXPECT_EQ(r.highest_token(), fencing_token(9));
  EXPECT_EQ(r.rejected_writes(), 3u);
}

TEST(FileBackend, TwoLockObjectsOnOneNameExcludeEachOtherInOneProcess) {
  hwsync::test::watchdog dog("file exclusion", 60s);
  hwsync::test::temp_dir dir;
  lock_service service(dir.file_uri());
  distributed_lock a(service, "job");
  distributed_lock b(service, "job");
  distributed_lock other(service, "other-job");
  ASSERT_TRUE(a.try_lock());
  EXPECT_TRUE(a.owns_lock());
  EXPECT_FALSE(b.try_lock());
  EXPECT_FALSE(b.try_lock_for(20ms));
  EXPECT_TRUE(other.try_lock());  // names are independent
  const auto first = a.token();
  a.unlock();
  EXPECT_FALSE(a.owns_lock());
  ASSERT_TRUE(b.try_lock_for(5s));
  EXPECT_GT(b.token(), first);
  EXPECT_FALSE(b.lost());
  EXPECT_FALSE(b.lost_token().stop_requested());
  b.unlock();
  other.unlock();
}

TEST(FileBackend, ThreadsIncrementAFencedCounterExactlyWithIncreasingTokens) {
  hwsync::test::watchdog dog("file threads", 120s);
  hwsync::test::temp_dir dir;
  lock_service service(dir.file_uri());
  constexpr int threads = 4;
  constexpr int rounds = 200;
  struct counter {
    long value = 0;
    long plain = 0;  // incremented without atomics: only exclusion keeps it exact
  };
  fenced_resource<counter> shared;
  std::vector<std::vector<std::uint64_t>> tokens(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      distributed_lock lock(service, "counter");
      for (int i = 0; i < rounds; ++i) {
        lock.lock();
        const auto token = lock.token();
        tokens[t].push_back(token.value());
        EXPECT_TRUE(shared.write(token, [](counter& c) { ++c.value; }));
        lock.unlock();
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(shared.read([](const counter& c) { return c.value; }), threads * rounds);
  EXPECT_EQ(shared.rejected_writes(), 0u);
  std::vector<std::uint64_t> all;
  for (const auto& v : tokens) {
    for (std::size_t i = 1; i < v.size(); ++i) EXPECT_LT(v[i - 1], v[i]);
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "a token was granted twice";
  EXPECT_EQ(all.back() - all.front() + 1, all.size()) << "tokens skipped numbers";
}

TEST(FileBackend, TheTokenCounterSurvivesANewServiceObject) {
  hwsync::test::temp_dir dir;
  fencing_token before;
  {
    lock_service service(dir.file_uri());
    distributed_lock lock(service, "persist");
    for (int i = 0; i < 3; ++i) {
      lock.lock();
      before = lock.token();
      lock.unlock();
    }
  }
  lock_service again(dir.file_uri());
  distributed_lock lock(again, "persist");
  lock.lock();
  EXPECT_EQ(lock.token().value(), before.value() + 1);
  lock.unlock();
}

// The lock file's layout on a disk (net/src/file_backend.cpp): the counter's
// two checked slots, the reservation's two, then the boot id.
constexpr off_t reservation_offset = 32;
constexpr off_t boot_offset = 64;

std::uint64_t highest_checked_slot(int fd, off_t offset) {
  std::uint64_t words[4] = {};
  EXPECT_EQ(::pread(fd, words, sizeof words, offset), static_cast<ssize_t>(sizeof words));
  constexpr std::uint64_t check_key = 0x6877'7379'6e63'746bULL;
  std::uint64_t best = 0;
  for (int slot = 0; slot < 2; ++slot) {
    if ((words[2 * slot] ^ check_key) == words[2 * slot + 1])
      best = std::max(best, words[2 * slot]);
  }
  return best;
}

// A machine crash loses the counter's pages the kernel had not written back:
// tokens come from a reservation synced ahead of them, and a lock file last
// used by another boot continues past it instead of from the stale counter.
TEST(FileBackend, AfterARebootTokensContinuePastTheDurableReservation) {
  hwsync::test::temp_dir dir;  // under /tmp: a disk here, where the reservation is used
  lock_service service(dir.file_uri());
  fencing_token first;
  {
    distributed_lock lock(service, "reboot");
    lock.lock();
    first = lock.token();
    lock.unlock();
  }
  const std::string path = dir.path() + "/reboot.lock";
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const std::uint64_t bound = highest_checked_slot(fd, reservation_offset);
  struct statfs fs {};
  ASSERT_EQ(::fstatfs(fd, &fs), 0);
  if (fs.f_type == TMPFS_MAGIC) {
    ::close(fd);
    GTEST_SKIP() << "/tmp is tmpfs here: no disk, no reservation";
  }
  EXPECT_GE(bound, first.value()) << "a token was handed out above the durable reservation";
  // What the disk holds after the crash: the counter as it was long ago
  // (never written back) and the previous boot's id.
  const std::uint64_t stale_counter[4] = {};
  ASSERT_EQ(::pwrite(fd, stale_counter, sizeof stale_counter, 0), 32);
  std::uint64_t boot[2] = {};
  ASSERT_EQ(::pread(fd, boot, sizeof boot, boot_offset), 16);
  boot[0] = ~boot[0];
  ASSERT_EQ(::pwrite(fd, boot, sizeof boot, boot_offset), 16);
  ::close(fd);

  distributed_lock lock(service, "reboot");
  lock.lock();
  EXPECT_GT(lock.token().value(), bound);
  lock.unlock();
  lock.lock();  // and dense again within the new boot
  const std::uint64_t after = lock.token().value();
  lock.unlock();
  lock.lock();
  EXPECT_EQ(lock.token().value(), after + 1);
  lock.unlock();
}

TEST(FileBackend, ADamagedCounterIsAnErrorNotASilentRestart) {
  hwsync::test::temp_dir dir;
  lock_service service(dir.file_uri());
  {
    const int fd = ::open((dir.path() + "/garbage.lock").c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    const char junk[32] = "this is not a hwsync token rec";
    ASSERT_EQ(::write(fd, junk, sizeof junk), 32);
    ::close(fd);
  }
  distributed_lock lock(service, "garbage");
  const auto e = expect_net_error([&] { lock.lock(); });
  EXPECT_EQ(e.code(), errc::io_error);
  EXPECT_NE(std::string(e.what()).find("expected a hwsync token record"), std::string::npos)
      << e.what();
  EXPECT_FALSE(lock.owns_lock());
  // The failed acquisition released the file lock again.
  distributed_lock probe(service, "garbage");
  EXPECT_THROW(probe.try_lock(), hwsync::net::error);
}

TEST(FileBackend, BadNamesAndTtlsAreRejectedAtConstruction) {
  hwsync::test::temp_dir dir;
  lock_service service(dir.file_uri());
  const auto e = expect_net_error([&] { distributed_lock(service, "a/b"); });
  EXPECT_EQ(e.code(), errc::bad_name);
  EXPECT_THROW(distributed_lock(service, "ok", hwsync::net::lock_options{1ms}),
               std::invalid_argument);
}

// ---------------------------------------------------------------------------
// The lease keeper, through a backend whose lease the test controls.
// ---------------------------------------------------------------------------

struct scripted_state {
  std::mutex m;
  bool held = false;
  std::uint64_t counter = 0;
  std::vector<std::chrono::steady_clock::time_point> renewals;
  enum class renew_answer { yes, not_yours, fail } answer = renew_answer::yes;
};

class scripted_lock final : public hwsync::net::backend_lock {
 public:
  explicit scripted_lock(std::shared_ptr<scripted_state> s) : s_(std::move(s)) {}
  std::optional<fencing_token> try_acquire(std::chrono::milliseconds) override {
    std::lock_guard g(s_->m);
    if (s_->held) return std::nullopt;
    s_->held = true;
    return fencing_token(++s_->counter);
  }
  void wait_for_release(hwsync::net::steady_time deadline) override {
    std::this_thread::sleep_until(std::min(deadline, std::chrono::steady_clock::now() + 1ms));
  }
  bool renew(std::chrono::milliseconds, hwsync::net::steady_time deadline) override {
    std::lock_guard g(s_->m);
    s_->renewals.push_back(std::chrono::steady_clock::now());
    switch (s_->answer) {
      case scripted_state::renew_answer::yes:
        return true;
      case scripted_state::renew_answer::not_yours:
        s_->held = false;
        return false;
      case scripted_state::renew_answer::fail:
        break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw hwsync::net::error(errc::timed_out,
                               "scripted renew: expected a reply, got none by the deadline");
    }
    throw hwsync::net::error(errc::connection_refused,
                             "scripted renew: expected a server, got none");
  }
  bool release() override {
    std::lock_guard g(s_->m);
    const bool was = s_->held;
    s_->held = false;
    return was && s_->answer == scripted_state::renew_answer::yes;
  }
  bool lease_expires() const noexcept override { return true; }

 private:
  std::shared_ptr<scripted_state> s_;
};

std::shared_ptr<scripted_state> the_scripted_state = std::make_shared<scripted_state>();

class scripted_backend final : public hwsync::net::lock_backend {
 public:
  std::unique_ptr<hwsync::net::backend_lock> open(std::string_view,
                                                  std::string_view owner) override {
    EXPECT_EQ(owner.size(), 32u);
    return std::make_unique<scripted_lock>(the_scripted_state);
  }
};

const hwsync::net::backend_registration scripted_registered{
    "scripted", [](const service_uri&) { return std::make_shared<scripted_backend>(); }};

class LeaseKeeper : public ::testing::Test {
 protected:
  void SetUp() override {
    std::lock_guard g(the_scripted_state->m);
    the_scripted_state->held = false;
    the_scripted_state->counter = 0;
    the_scripted_state->renewals.clear();
    the_scripted_state->answer = scripted_state::renew_answer::yes;
  }
  void answer(scripted_state::renew_answer a) {
    std::lock_guard g(the_scripted_state->m);
    the_scripted_state->answer = a;
  }
  std::size_t renewals() {
    std::lock_guard g(the_scripted_state->m);
    return the_scripted_state->renewals.size();
  }
};

TEST_F(LeaseKeeper, RenewsNoMoreOftenThanATtlThird) {
  hwsync::test::watchdog dog("renewal cadence", 60s);
  lock_service service("scripted://");
  // A ttl long enough that a keeper thread delayed by a loaded machine does
  // not let the lease run out. With 60 ms it could: the lock is then lost,
  // renewals stop, and the loop below used to wait for the watchdog (one
  // unexplained abort of this binary after about 61 s under load fits that).
  distributed_lock lock(service, "cadence", hwsync::net::lock_options{300ms});
  const auto acquired_at = std::chrono::steady_clock::now();
  lock.lock();
  while (renewals() < 5 && !lock.lost()) std::this_thread::sleep_for(5ms);
  ASSERT_FALSE(lock.lost()) << "the lease ran out: the keeper ran more than 200 ms late";
  lock.unlock();
  std::lock_guard g(the_scripted_state->m);
  const auto& r = the_scripted_state->renewals;
  EXPECT_GE(r.front() - acquired_at, 100ms);
  for (std::size_t i = 1; i < r.size(); ++i) EXPECT_GE(r[i] - r[i - 1], 99ms) << "renewal " << i;
}

TEST_F(LeaseKeeper, NotYoursRaisesEveryLossSignalAndUnlockReportsIt) {
  hwsync::test::watchdog dog("loss by answer", 60s);
  lock_service service("scripted://");
  distributed_lock lock(service, "taken", hwsync::net::lock_options{30ms});
  std::atomic<int> handler_calls{0};
  std::string handler_message;
  lock.on_lost([&](const hwsync::net::error& e) {
    handler_message = e.what();
    EXPECT_EQ(e.code(), errc::lease_lost);
    handler_calls.fetch_add(1);
  });
  lock.lock();
  const auto token = lock.lost_token();
  std::atomic<bool> callback_ran{false};
  std::stop_callback on_stop(token, [&] { callback_ran.store(true); });
  answer(scripted_state::renew_answer::not_yours);
  while (!lock.lost()) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(token.stop_requested());
  EXPECT_TRUE(callback_ran.load());
  while (handler_calls.load() == 0) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);  // a second loss signal would come by now
  EXPECT_EQ(handler_calls.load(), 1);
  EXPECT_NE(handler_message.find("no longer held by this owner"), std::string::npos)
      << handler_message;
  const auto e = expect_net_error([&] { lock.unlock(); });
  EXPECT_EQ(e.code(), errc::lease_lost);
  EXPECT_NE(std::string(e.what()).find("fencing token 1"), std::string::npos) << e.what();
  EXPECT_FALSE(lock.owns_lock());
}

TEST_F(LeaseKeeper, FailingRenewalsLoseTheLeaseOnlyWhenItExpires) {
  hwsync::test::watchdog dog("loss by failures", 60s);
  lock_service service("scripted://");
  distributed_lock lock(service, "flaky", hwsync::net::lock_options{90ms});
  lock.lock();
  const auto acquired_at = std::chrono::steady_clock::now();
  answer(scripted_state::renew_answer::fail);
  while (!lock.lost()) std::this_thread::sleep_for(1ms);
  // Not before the lease (acquisition + ttl) could have expired.
  EXPECT_GE(std::chrono::steady_clock::now() - acquired_at, 90ms);
  EXPECT_GE(renewals(), 2u);  // it retried in between
  const auto e = expect_net_error([&] { lock.unlock(); });
  EXPECT_EQ(e.code(), errc::lease_lost);
  EXPECT_NE(std::string(e.what()).find("renewals failed until the lease expired"),
            std::string::npos)
      << e.what();
}

TEST_F(LeaseKeeper, AFreshAcquisitionHasFreshSignals) {
  hwsync::test::watchdog dog("fresh signals", 60s);
  lock_service service("scripted://");
  distributed_lock lock(service, "again", hwsync::net::lock_options{30ms});
  lock.lock();
  answer(scripted_state::renew_answer::not_yours);
  while (!lock.lost()) std::this_thread::sleep_for(1ms);
  EXPECT_THROW(lock.unlock(), hwsync::net::error);
  answer(scripted_state::renew_answer::yes);
  lock.lock();
  EXPECT_FALSE(lock.lost());
  EXPECT_FALSE(lock.lost_token().stop_requested());
  EXPECT_EQ(lock.token().value(), 2u);
  lock.unlock();
}

}  // namespace
