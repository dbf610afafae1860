// hwsync::mutex as a capability under clang -Wthread-safety. Compiled twice
// by check.cmake: as it is, it must compile clean; with
// -DHWSYNC_PLANT_UNGUARDED_WRITE, the unguarded write must be an error
// ("requires holding mutex 'm_' exclusively").
#include <hwsync/mutex.hpp>

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

int main() {
  account a;
  a.deposit(5);
  return a.try_withdraw(3) ? 0 : 1;
}
