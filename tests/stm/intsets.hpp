// Integer sets over an access policy, shared by the STM tests and
// bench/stm_bench.cpp: a sorted linked list, a chained hash set and a
// red-black tree. One implementation serves the STM (cells are tvars, every
// access goes through the transaction) and the lock-based and libitm peers
// (cells are plain fields, accessed inside the peer's critical section), so
// every peer runs the same algorithm.
//
// Policy A provides:
//   template <class T> using cell = ...;        storage of a mutable field
//   T get(const cell<T>&), void set(cell<T>&, T)
//   N* make<N>(args...)       a new node (the STM deletes it if the attempt aborts)
//   void retire(N*)           an unlinked node (the STM frees it after commit,
//                             at the set's destruction: readers may still hold it)
//   static T raw(const cell<T>&)  a read outside any transaction (checks)
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>
#include <memory>
#include <vector>

#include "hwsync/stm.hpp"

namespace hwsync::stm_sets {

// Nodes unlinked by committed transactions: freed when the set goes away
// (a concurrent transaction may still be reading one; no reclamation scheme
// is needed for a bounded test or benchmark run).
template <class N>
class retired_stack {
 public:
  void push(N* n) noexcept {
    N* h = head_.load(std::memory_order_relaxed);
    do n->retired_next = h;
    while (
        !head_.compare_exchange_weak(h, n, std::memory_order_release, std::memory_order_relaxed));
  }
  ~retired_stack() {
    for (N* n = head_.load(std::memory_order_acquire); n != nullptr;) {
      N* next = n->retired_next;
      delete n;
      n = next;
    }
  }

 private:
  std::atomic<N*> head_{nullptr};
};

// Accesses through an STM transaction.
struct stm_access {
  template <class T>
  using cell = stm::tvar<T>;
  stm::transaction& tx;
  template <class T>
  T get(const cell<T>& c) {
    return tx.read(c);
  }
  template <class T>
  void set(cell<T>& c, const T& v) {
    tx.write(c, v);
  }
  template <class N, class... Args>
  N* make(Args... args) {
    N* n = new N(args...);
    tx.on_abort([n] { delete n; });
    return n;
  }
  template <class N>
  void retire(N* n, retired_stack<N>& r) {
    tx.on_commit([n, &r] { r.push(n); });
  }
  template <class T>
  static T raw(const cell<T>& c) {
    return c.unsafe_load();
  }
};

// Plain fields, for peers that run the algorithm under a lock or inside a
// libitm transaction. Nodes are allocated before the critical section and
// freed after it (spare/unlinked), so no allocator call happens inside.
struct plain_access {
  template <class T>
  struct cell {
    T v;
    cell() : v() {}
    explicit cell(T x) : v(x) {}
  };
  void* spare = nullptr;     // a node allocated in advance (make takes it)
  void* unlinked = nullptr;  // the node a removal unlinked (freed by the caller)
  template <class T>
  T get(const cell<T>& c) {
    return c.v;
  }
  template <class T>
  void set(cell<T>& c, const T& v) {
    c.v = v;
  }
  template <class N, class... Args>
  N* make(Args... args) {
    N* n = static_cast<N*>(spare);
    spare = nullptr;
    n->reset(args...);
    return n;
  }
  template <class N>
  void retire(N* n, retired_stack<N>&) {
    unlinked = n;
  }
  template <class T>
  static T raw(const cell<T>& c) {
    return c.v;
  }
};

template <class A>
class list_set {
 public:
  struct node {
    long key;
    typename A::template cell<node*> next;
    node* retired_next = nullptr;
    node(long k, node* n) : key(k), next(n) {}
    void reset(long k, node* n) {
      key = k;
      next.v = n;
    }
  };

  list_set() : tail_(LONG_MAX, nullptr), head_(LONG_MIN, &tail_) {}
  ~list_set() {
    for (node* n = A::raw(head_.next); n != &tail_;) {
      node* next = A::raw(n->next);
      delete n;
      n = next;
    }
  }

  bool contains(A& a, long k) {
    node* cur = a.get(head_.next);
    while (cur->key < k) cur = a.get(cur->next);
    return cur->key == k;
  }
  bool insert(A& a, long k) {
    node* prev = &head_;
    node* cur = a.get(prev->next);
    while (cur->key < k) {
      prev = cur;
      cur = a.get(cur->next);
    }
    if (cur->key == k) return false;
    a.set(prev->next, a.template make<node>(k, cur));
    return true;
  }
  bool erase(A& a, long k) {
    node* prev = &head_;
    node* cur = a.get(prev->next);
    while (cur->key < k) {
      prev = cur;
      cur = a.get(cur->next);
    }
    if (cur->key != k) return false;
    a.set(prev->next, a.get(cur->next));
    a.retire(cur, retired_);
    return true;
  }
  // Outside transactions: the keys in order, and whether they are sorted.
  std::vector<long> keys() const {
    std::vector<long> out;
    for (node* n = A::raw(head_.next); n != &tail_; n = A::raw(n->next)) out.push_back(n->key);
    return out;
  }
  bool check() const {
    long last = LONG_MIN;
    for (long k : keys()) {
      if (k <= last) return false;
      last = k;
    }
    return true;
  }

 private:
  node tail_;
  node head_;
  retired_stack<node> retired_;
};

template <class A>
class hash_set {
 public:
  struct node {
    long key;
    typename A::template cell<node*> next;
    node* retired_next = nullptr;
    node(long k, node* n) : key(k), next(n) {}
    void reset(long k, node* n) {
      key = k;
      next.v = n;
    }
  };

  explicit hash_set(std::size_t buckets)
      : count_(buckets), buckets_(new typename A::template cell<node*>[buckets]) {}
  ~hash_set() {
    for (std::size_t b = 0; b < count_; ++b) {
      for (node* n = A::raw(buckets_[b]); n != nullptr;) {
        node* next = A::raw(n->next);
        delete n;
        n = next;
      }
    }
  }

  bool contains(A& a, long k) {
    for (node* n = a.get(bucket(k)); n != nullptr && n->key <= k; n = a.get(n->next))
      if (n->key == k) return true;
    return false;
  }
  bool insert(A& a, long k) {
    typename A::template cell<node*>* link = &bucket(k);
    node* cur = a.get(*link);
    while (cur != nullptr && cur->key < k) {
      link = &cur->next;
      cur = a.get(*link);
    }
    if (cur != nullptr && cur->key == k) return false;
    a.set(*link, a.template make<node>(k, cur));
    return true;
  }
  bool erase(A& a, long k) {
    typename A::template cell<node*>* link = &bucket(k);
    node* cur = a.get(*link);
    while (cur != nullptr && cur->key < k) {
      link = &cur->next;
      cur = a.get(*link);
    }
    if (cur == nullptr || cur->key != k) return false;
    a.set(*link, a.get(cur->next));
    a.retire(cur, retired_);
    return true;
  }
  std::vector<long> keys() const {
    std::vector<long> out;
    for (std::size_t b = 0; b < count_; ++b)
      for (node* n = A::raw(buckets_[b]); n != nullptr; n = A::raw(n->next)) out.push_back(n->key);
    std::sort(out.begin(), out.end());
    return out;
  }
  bool check() const {
    for (std::size_t b = 0; b < count_; ++b) {
      long last = LONG_MIN;
      for (node* n = A::raw(buckets_[b]); n != nullptr; n = A::raw(n->next)) {
        if (n->key <= last || index(n->key) != b) return false;
        last = n->key;
      }
    }
    return true;
  }

 private:
  std::size_t index(long k) const { return static_cast<unsigned long>(k) % count_; }
  typename A::template cell<node*>& bucket(long k) { return buckets_[index(k)]; }

  std::size_t count_;
  std::unique_ptr<typename A::template cell<node*>[]> buckets_;
  retired_stack<node> retired_;
};

template <class A>
class rb_tree_set {
 public:
  struct node {
    long key;
    typename A::template cell<node*> left, right, parent;
    typename A::template cell<bool> red;
    node* retired_next = nullptr;
    explicit node(long k) : key(k), left(nullptr), right(nullptr), parent(nullptr), red(true) {}
    void reset(long k) {
      key = k;
      left.v = nullptr;
      right.v = nullptr;
      parent.v = nullptr;
      red.v = true;
    }
  };

  rb_tree_set() : root_(nullptr) {}
  ~rb_tree_set() { destroy(A::raw(root_)); }

  bool contains(A& a, long k) {
    node* x = a.get(root_);
    while (x != nullptr) {
      if (k < x->key) {
        x = a.get(x->left);
      } else if (k > x->key) {
        x = a.get(x->right);
      } else {
        return true;
      }
    }
    return false;
  }

  bool insert(A& a, long k) {
    node* y = nullptr;
    node* x = a.get(root_);
    while (x != nullptr) {
      y = x;
      if (k < x->key) {
        x = a.get(x->left);
      } else if (k > x->key) {
        x = a.get(x->right);
      } else {
        return false;
      }
    }
    node* z = a.template make<node>(k);
    a.set(z->parent, y);
    if (y == nullptr) {
      a.set(root_, z);
    } else if (k < y->key) {
      a.set(y->left, z);
    } else {
      a.set(y->right, z);
    }
    for (;;) {
      node* p = a.get(z->parent);
      if (p == nullptr || !a.get(p->red)) break;
      node* g = a.get(p->parent);  // p is red, so not the root
      if (p == a.get(g->left)) {
        node* u = a.get(g->right);
        if (u != nullptr && a.get(u->red)) {
          a.set(p->red, false);
          a.set(u->red, false);
          a.set(g->red, true);
          z = g;
        } else {
          if (z == a.get(p->right)) {
            z = p;
            rotate_left(a, z);
            p = a.get(z->parent);
          }
          a.set(p->red, false);
          a.set(g->red, true);
          rotate_right(a, g);
        }
      } else {
        node* u = a.get(g->left);
        if (u != nullptr && a.get(u->red)) {
          a.set(p->red, false);
          a.set(u->red, false);
          a.set(g->red, true);
          z = g;
        } else {
          if (z == a.get(p->left)) {
            z = p;
            rotate_right(a, z);
            p = a.get(z->parent);
          }
          a.set(p->red, false);
          a.set(g->red, true);
          rotate_left(a, g);
        }
      }
    }
    node* r = a.get(root_);
    if (a.get(r->red)) a.set(r->red, false);
    return true;
  }

  bool erase(A& a, long k) {
    node* z = a.get(root_);
    while (z != nullptr && z->key != k) z = k < z->key ? a.get(z->left) : a.get(z->right);
    if (z == nullptr) return false;
    node* y = z;
    node* x = nullptr;
    node* xp = nullptr;
    node* zl = a.get(z->left);
    node* zr = a.get(z->right);
    if (zl == nullptr) {
      x = zr;
    } else if (zr == nullptr) {
      x = zl;
    } else {
      y = zr;
      for (node* l = a.get(y->left); l != nullptr; l = a.get(y->left)) y = l;
      x = a.get(y->right);
    }
    bool removed_red;
    if (y != z) {  // y, z's successor, takes z's place and colour
      a.set(zl->parent, y);
      a.set(y->left, zl);
      if (y != zr) {
        xp = a.get(y->parent);
        if (x != nullptr) a.set(x->parent, xp);
        a.set(xp->left, x);
        a.set(y->right, zr);
        a.set(zr->parent, y);
      } else {
        xp = y;
      }
      replace_child(a, z, y);
      a.set(y->parent, a.get(z->parent));
      removed_red = a.get(y->red);
      a.set(y->red, a.get(z->red));
    } else {
      xp = a.get(z->parent);
      if (x != nullptr) a.set(x->parent, xp);
      replace_child(a, z, x);
      removed_red = a.get(z->red);
    }
    if (!removed_red) {
      while (x != a.get(root_) && (x == nullptr || !a.get(x->red))) {
        if (x == a.get(xp->left)) {
          node* w = a.get(xp->right);
          if (a.get(w->red)) {
            a.set(w->red, false);
            a.set(xp->red, true);
            rotate_left(a, xp);
            w = a.get(xp->right);
          }
          node* wl = a.get(w->left);
          node* wr = a.get(w->right);
          if ((wl == nullptr || !a.get(wl->red)) && (wr == nullptr || !a.get(wr->red))) {
            a.set(w->red, true);
            x = xp;
            xp = a.get(xp->parent);
          } else {
            if (wr == nullptr || !a.get(wr->red)) {
              a.set(wl->red, false);
              a.set(w->red, true);
              rotate_right(a, w);
              w = a.get(xp->right);
            }
            a.set(w->red, a.get(xp->red));
            a.set(xp->red, false);
            if (node* r = a.get(w->right); r != nullptr) a.set(r->red, false);
            rotate_left(a, xp);
            break;
          }
        } else {
          node* w = a.get(xp->left);
          if (a.get(w->red)) {
            a.set(w->red, false);
            a.set(xp->red, true);
            rotate_right(a, xp);
            w = a.get(xp->left);
          }
          node* wl = a.get(w->left);
          node* wr = a.get(w->right);
          if ((wl == nullptr || !a.get(wl->red)) && (wr == nullptr || !a.get(wr->red))) {
            a.set(w->red, true);
            x = xp;
            xp = a.get(xp->parent);
          } else {
            if (wl == nullptr || !a.get(wl->red)) {
              a.set(wr->red, false);
              a.set(w->red, true);
              rotate_left(a, w);
              w = a.get(xp->left);
            }
            a.set(w->red, a.get(xp->red));
            a.set(xp->red, false);
            if (node* l = a.get(w->left); l != nullptr) a.set(l->red, false);
            rotate_right(a, xp);
            break;
          }
        }
      }
      if (x != nullptr && a.get(x->red)) a.set(x->red, false);
    }
    a.retire(z, retired_);
    return true;
  }

  std::vector<long> keys() const {
    std::vector<long> out;
    collect(A::raw(root_), out);
    return out;
  }
  // BST order, parent links, no red node with a red child, a black root and
  // equal black height on every path.
  bool check() const {
    node* r = A::raw(root_);
    if (r != nullptr && (A::raw(r->red) || A::raw(r->parent) != nullptr)) return false;
    return black_height(r, LONG_MIN, LONG_MAX) >= 0;
  }

 private:
  void replace_child(A& a, node* old_child, node* new_child) {
    node* p = a.get(old_child->parent);
    if (p == nullptr) {
      a.set(root_, new_child);
    } else if (a.get(p->left) == old_child) {
      a.set(p->left, new_child);
    } else {
      a.set(p->right, new_child);
    }
  }
  void rotate_left(A& a, node* x) {
    node* y = a.get(x->right);
    node* yl = a.get(y->left);
    a.set(x->right, yl);
    if (yl != nullptr) a.set(yl->parent, x);
    a.set(y->parent, a.get(x->parent));
    replace_child(a, x, y);
    a.set(y->left, x);
    a.set(x->parent, y);
  }
  void rotate_right(A& a, node* x) {
    node* y = a.get(x->left);
    node* yr = a.get(y->right);
    a.set(x->left, yr);
    if (yr != nullptr) a.set(yr->parent, x);
    a.set(y->parent, a.get(x->parent));
    replace_child(a, x, y);
    a.set(y->right, x);
    a.set(x->parent, y);
  }
  static void destroy(node* n) {
    if (n == nullptr) return;
    destroy(A::raw(n->left));
    destroy(A::raw(n->right));
    delete n;
  }
  static void collect(node* n, std::vector<long>& out) {
    if (n == nullptr) return;
    collect(A::raw(n->left), out);
    out.push_back(n->key);
    collect(A::raw(n->right), out);
  }
  static int black_height(node* n, long lo, long hi) {
    if (n == nullptr) return 1;
    if (n->key <= lo || n->key >= hi) return -1;
    node* l = A::raw(n->left);
    node* r = A::raw(n->right);
    if (l != nullptr && A::raw(l->parent) != n) return -1;
    if (r != nullptr && A::raw(r->parent) != n) return -1;
    const bool red = A::raw(n->red);
    if (red && ((l != nullptr && A::raw(l->red)) || (r != nullptr && A::raw(r->red)))) return -1;
    const int hl = black_height(l, lo, n->key);
    const int hr = black_height(r, n->key, hi);
    if (hl < 0 || hr < 0 || hl != hr) return -1;
    return hl + (red ? 0 : 1);
  }

  typename A::template cell<node*> root_;
  retired_stack<node> retired_;
};

}  // namespace hwsync::stm_sets
