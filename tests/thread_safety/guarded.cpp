// hwsync::mutex as a capability under clang -Wthread-safety. Compiled twice
// by check.cmake: as it is, it must compile clean; with
// -DHWSYNC_PLANT_UNGUARDED_WRITE, the unguarded write must be an error
// ("requires holding mutex 'm_' exclusively").
#include <hwsync/mutex.hpp>
#include <hwsync/shared_mutex.hpp>

class account {
 public:
  // Explicit lock()/unlock(): libstdc++'s std::lock_guard carries no
  // capability attributes (libc++'s does), so the analysis cannot see it.
  void deposit(long amount) {
#ifndef HWSYNC_PLANT_UNGUARDED_WRITE
    m_.lock();
#endif
    balance_ += amount;
#ifndef HWSYNC_PLANT_UNGUARDED_WRITE
    m_.unlock();
#endif
  }
  bool try_withdraw(long amount) {
    if (!m_.try_lock()) return false;
    const bool ok = balance_ >= amount;
    if (ok) balance_ -= amount;
    m_.unlock();
    return ok;
  }

 private:
  hwsync::mutex m_;
  long balance_ HWSYNC_GUARDED_BY(m_) = 0;
};

// hwsync::shared_mutex is a capability with a shared mode: reads need it
// shared, writes exclusive, and the upgrade and downgrade change the mode
// the analysis sees.
class price_table {
 public:
  long get() {
    m_.lock_shared();
    const long v = price_;
    m_.unlock_shared();
    return v;
  }
  void raise_if_even() {
    m_.lock_upgrade();
    if (price_ % 2 != 0) {
      m_.unlock_upgrade();
      return;
    }
    m_.unlock_upgrade_and_lock();
    ++price_;
    m_.unlock_and_lock_shared();
    const long seen = price_;
    m_.unlock_shared();
    (void)seen;
  }

 private:
  hwsync::shared_mutex<> m_;
  long price_ HWSYNC_GUARDED_BY(m_) = 0;
};

int main() {
  account a;
  a.deposit(5);
  return a.try_withdraw(3) ? 0 : 1;
}
