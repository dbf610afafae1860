// hwsync/waiter_list.hpp — the intrusive FIFO of waiter nodes that
// hwsync::condition_variable and hwsync::fair_counting_semaphore keep under
// their internal locks. Not part of the API.
//
// Contract
//   Node has `Node* prev` and `Node* next`. The list owns nothing: nodes
//   live on their waiters' stacks, and a waiter unlinks its own node (under
//   the owner's lock) before it returns. Not thread-safe: the owner's lock
//   guards every call. Two pointers.
#pragma once

namespace hwsync::detail {

template <class Node>
class waiter_list {
 public:
  Node* front() const noexcept { return head_; }

  void push_back(Node* w) noexcept {
    w->prev = tail_;
    w->next = nullptr;
    (tail_ ? tail_->next : head_) = w;
    tail_ = w;
  }

  void erase(Node* w) noexcept {
    (w->prev ? w->prev->next : head_) = w->next;
    (w->next ? w->next->prev : tail_) = w->prev;
    w->next = w->prev = nullptr;
  }

  // Empties the list and returns its first node; the nodes stay chained
  // through `next`.
  Node* take_all() noexcept {
    Node* first = head_;
    head_ = tail_ = nullptr;
    return first;
  }

 private:
  Node* head_ = nullptr;  // the oldest waiter
  Node* tail_ = nullptr;
};

}  // namespace hwsync::detail
