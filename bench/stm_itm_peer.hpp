// bench/stm_itm_peer.hpp — the libitm peer's entry points (defined in
// bench/stm_itm_peer.cpp, the one translation unit compiled with -fgnu-tm).
#pragma once

#include "../tests/stm/intsets.hpp"

namespace hwsync::bench::itm {

using list = stm_sets::list_set<stm_sets::plain_access>;
using hash = stm_sets::hash_set<stm_sets::plain_access>;
using rbtree = stm_sets::rb_tree_set<stm_sets::plain_access>;

void bank_transfer(long* accounts, int from, int to, long amount);
long bank_total(const long* accounts, int n);
// op: 0 contains, 1 insert, 2 erase.
bool list_apply(list& s, stm_sets::plain_access& a, int op, long key);
bool hash_apply(hash& s, stm_sets::plain_access& a, int op, long key);
bool rbtree_apply(rbtree& s, stm_sets::plain_access& a, int op, long key);

}  // namespace hwsync::bench::itm
