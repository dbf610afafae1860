// Writes a guarded member without its hwsync::mutex: clang -Wthread-safety
// must warn ("requires holding mutex 'm_' exclusively").
#include <hwsync/mutex.hpp>

class account {
 public:
  void deposit(long amount) { balance_ += amount; }

 private:
  hwsync::mutex m_;
  long balance_ HWSYNC_GUARDED_BY(m_) = 0;
};

int main() {
  account a;
  a.deposit(5);
}
