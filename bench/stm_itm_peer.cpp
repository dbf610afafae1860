// bench/stm_itm_peer.cpp — the GCC libitm peer of bench/stm_bench.cpp: the
// same workloads (tests/stm/intsets.hpp with plain fields) inside
// __transaction_atomic, compiled with -fgnu-tm and linked with -litm
// (bench/CMakeLists.txt). libitm picks its default method (ml_wt, a
// multiple-lock write-through STM, unless GTM env settings say otherwise).
#include "stm_itm_peer.hpp"

namespace hwsync::bench::itm {

void bank_transfer(long* accounts, int from, int to, long amount) {
  __transaction_atomic {
    accounts[from] -= amount;
    accounts[to] += amount;
  }
}

long bank_total(const long* accounts, int n) {
  long s = 0;
  __transaction_atomic {
    for (int i = 0; i < n; ++i) s += accounts[i];
  }
  return s;
}

template <class Set>
static bool apply(Set& s, stm_sets::plain_access& a, int op, long key) {
  bool r = false;
  __transaction_atomic {
    if (op == 0) {
      r = s.contains(a, key);
    } else if (op == 1) {
      r = s.insert(a, key);
    } else {
      r = s.erase(a, key);
    }
  }
  return r;
}

bool list_apply(list& s, stm_sets::plain_access& a, int op, long key) {
  return apply(s, a, op, key);
}
bool hash_apply(hash& s, stm_sets::plain_access& a, int op, long key) {
  return apply(s, a, op, key);
}
bool rbtree_apply(rbtree& s, stm_sets::plain_access& a, int op, long key) {
  return apply(s, a, op, key);
}

}  // namespace hwsync::bench::itm
