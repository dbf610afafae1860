// What numa_mutex tests share: installing a topology for a test, and a log
// of acquisitions (each holder's node and the heads the lock showed waiting
// while it held it) with the two checks the fairness bound implies.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/numa.hpp"

namespace hwsync::test {

// "system" (this machine) or a synthetic description, for the scope.
class numa_topology_scope {
 public:
  explicit numa_topology_scope(const std::string& which) {
    if (which == "system")
      numa::use_system_topology();
    else
      numa::use_synthetic_topology(which);
  }
  ~numa_topology_scope() { numa::use_system_topology(); }
  numa_topology_scope(const numa_topology_scope&) = delete;
  numa_topology_scope& operator=(const numa_topology_scope&) = delete;
};

// Gives the calling thread a node: a virtual one on a synthetic topology;
// on this machine the thread stays where it is (its real node is used).
inline void join_node(unsigned node) {
  const std::error_code ec = numa::assign_current_thread_to_node(node % numa::node_count());
  if (ec) {
    ASSERT_EQ(ec, std::errc::operation_not_supported) << ec.message();
  }
}

// Holds threads back until all of them arrived, so they contend instead of
// running one after another while the next is still being created.
class start_gate {
 public:
  explicit start_gate(unsigned threads) : threads_(threads) {}
  void arrive_and_wait() {
    arrived_.fetch_add(1);
    while (arrived_.load() < threads_) std::this_thread::yield();
  }

 private:
  const unsigned threads_;
  std::atomic<unsigned> arrived_{0};
};

struct acquisition {
  unsigned node;
  std::uint64_t heads_waiting;  // the lock's heads mask read inside the critical section
};

// Written only inside the critical section: its order is the lock's order.
class acquisition_log {
 public:
  explicit acquisition_log(std::size_t capacity) { entries_.reserve(capacity); }

  void record(const numa_mutex& m, unsigned node) {
    if (entries_.size() < entries_.capacity()) entries_.push_back({node, m.stats().heads_waiting});
  }
  const std::vector<acquisition>& entries() const { return entries_; }

  // Once another node's head is seen waiting, the holder's node makes at
  // most bound + 1 more acquisitions in a row (the rest of one cohort).
  // Returns the longest such stretch.
  std::size_t longest_run_past_a_waiting_node() const {
    std::size_t longest = 0;
    std::size_t i = 0;
    while (i < entries_.size()) {
      std::size_t j = i;
      std::size_t since_seen = 0;
      bool seen = false;
      while (j < entries_.size() && entries_[j].node == entries_[i].node) {
        const std::uint64_t others =
            entries_[j].heads_waiting & ~(std::uint64_t{1} << entries_[j].node);
        if (!seen && others != 0) seen = true;
        if (seen) ++since_seen;
        ++j;
      }
      longest = std::max(longest, since_seen);
      i = j;
    }
    return longest;
  }

  // For each node m: the longest stretch of acquisitions by other nodes that
  // all saw m's head waiting. At most (nodes - 1) * (bound + 1).
  std::size_t longest_wait_of_a_head(unsigned nodes) const {
    std::size_t longest = 0;
    for (unsigned m = 0; m < nodes && m < 64; ++m) {
      std::size_t run = 0;
      for (const acquisition& a : entries_) {
        const bool waiting = a.node != m && (a.heads_waiting >> m & 1u) != 0;
        run = waiting ? run + 1 : 0;
        longest = std::max(longest, run);
      }
    }
    return longest;
  }

 private:
  std::vector<acquisition> entries_;
};

}  // namespace hwsync::test
