// Correct use of a hwsync::mutex capability: compiles clean under
// clang -Wthread-safety -Werror.
#include <hwsync/mutex.hpp>

class account {
 public:
  // Explicit lock()/unlock(): libstdc++'s std::lock_guard carries no
  // capability attributes (libc++'s does), so the analysis cannot see it.
  void deposit(long amount) {
    m_.lock();
    balance_ += amount;
    m_.unlock();
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
