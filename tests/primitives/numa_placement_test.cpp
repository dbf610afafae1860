// hwsync::numa placement: the calling thread's node, virtual nodes on
// synthetic topologies, and honest results from memory placement, placed<T>,
// node_local<T> and thread binding — on this machine and on synthetic
// topologies, where nothing may claim to be bound.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/numa.hpp"
#include "numa_acquisition_log.hpp"

namespace {

using hwsync::topology;
using hwsync::test::numa_topology_scope;
namespace numa = hwsync::numa;

cpu_set_t affinity() {
  cpu_set_t s;
  CPU_ZERO(&s);
  EXPECT_EQ(sched_getaffinity(0, sizeof s, &s), 0);
  return s;
}

void expect_out_of_range_naming(auto call, const std::string& node, const std::string& range) {
  try {
    call();
    ADD_FAILURE() << "node " << node << " accepted";
  } catch (const std::out_of_range& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("node " + node + " "), std::string::npos) << what;
    EXPECT_NE(what.find(range), std::string::npos) << what;
  }
}

// ------------------------------------------------------------ the thread's node

TEST(NumaNode, CurrentNodeIsTheTopologysNodeOfThisCpu) {
  numa_topology_scope scope("system");
  const topology& t = numa::current_topology();
  EXPECT_EQ(&t, &topology::system());
  EXPECT_EQ(numa::node_count(), t.numa_nodes());
  for (int i = 0; i < 100; ++i) {
    const unsigned n = numa::current_node();
    ASSERT_LT(n, numa::node_count());
    const int direct = t.current_node();
    // The thread may move between the two reads; on one node it cannot differ.
    if (t.numa_nodes() == 1) {
      EXPECT_EQ(n, static_cast<unsigned>(direct));
    }
  }
}

TEST(NumaNode, VirtualNodesOnlyOnASyntheticTopology) {
  {
    numa_topology_scope scope("system");
    if (!topology::system().is_synthetic()) {
      std::thread([] {
        EXPECT_EQ(numa::assign_current_thread_to_node(0), std::errc::operation_not_supported);
      }).join();
    }
  }
  numa_topology_scope scope("pack:2 numa:2 core:4 pu:1");
  EXPECT_EQ(numa::node_count(), 4u);
  std::vector<unsigned> seen(4, 99);
  std::vector<std::thread> ts;
  for (unsigned n = 0; n < 4; ++n) {
    ts.emplace_back([&seen, n] {
      ASSERT_FALSE(numa::assign_current_thread_to_node(n));
      for (int i = 0; i < 10; ++i) ASSERT_EQ(numa::current_node(), n);
      seen[n] = numa::current_node();
      numa::clear_current_thread_node();
      EXPECT_LT(numa::current_node(), 4u);
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(seen, (std::vector<unsigned>{0, 1, 2, 3}));
  expect_out_of_range_naming([] { (void)numa::assign_current_thread_to_node(4); }, "4", "0..3");
}

TEST(NumaNode, AnAssignmentLapsesWhenTheTopologyChanges) {
  numa_topology_scope scope("pack:2 numa:2 core:4 pu:1");
  std::thread([] {
    ASSERT_FALSE(numa::assign_current_thread_to_node(3));
    EXPECT_EQ(numa::current_node(), 3u);
    numa::use_synthetic_topology("numa:2 pu:2");
    EXPECT_LT(numa::current_node(), 2u);  // no stale node 3 of a 2-node topology
  }).join();
}

TEST(NumaNode, AMalformedDescriptionThrowsAndKeepsTheTopology) {
  numa_topology_scope scope("numa:2 pu:2");
  EXPECT_THROW(numa::use_synthetic_topology("pack:2 bogus:3 pu:1"), std::invalid_argument);
  EXPECT_EQ(numa::node_count(), 2u);
}

// ------------------------------------------------------------------- memory

TEST(NumaMemory, OnThisMachinePlacementSaysWhatHappened) {
  numa_topology_scope scope("system");
  const topology& t = topology::system();
  if (t.is_synthetic()) GTEST_SKIP() << "HWLOC_SYNTHETIC replaces the machine";
  for (unsigned node = 0; node < t.numa_nodes(); ++node) {
    numa::node_memory m = numa::node_memory::on_node(100, node);
    ASSERT_NE(m.data(), nullptr);
    EXPECT_GE(m.size(), 100u);
    std::memset(m.data(), 0xab, m.size());
    const auto& p = m.placement();
    if (t.numa_nodes() == 1) {
      EXPECT_EQ(p.what, numa::outcome::not_bound);
      EXPECT_FALSE(p.bound());
      EXPECT_NE(p.reason.find("one NUMA node"), std::string::npos) << p.reason;
    } else if (p.bound()) {
      EXPECT_EQ(p.node, static_cast<int>(node));  // read back from the kernel
      EXPECT_TRUE(p.reason.empty());
    } else {
      EXPECT_FALSE(p.reason.empty()) << "not bound, and no reason given";
    }
  }
  numa::node_memory f = numa::node_memory::first_touch(1);
  ASSERT_NE(f.data(), nullptr);
  if (t.numa_nodes() == 1) {
    EXPECT_EQ(f.placement().what, numa::outcome::not_bound);
    EXPECT_NE(f.placement().reason.find("one NUMA node"), std::string::npos);
  } else {
    EXPECT_EQ(f.placement().what, numa::outcome::first_touch);
  }
  expect_out_of_range_naming([&] { (void)numa::node_memory::on_node(1, t.numa_nodes()); },
                             std::to_string(t.numa_nodes()),
                             "0.." + std::to_string(t.numa_nodes() - 1));
}

TEST(NumaMemory, OnASyntheticTopologyNothingIsBound) {
  numa_topology_scope scope("pack:2 numa:2 core:4 pu:1");
  for (unsigned node = 0; node < 4; ++node) {
    numa::node_memory m = numa::node_memory::on_node(5000, node);
    ASSERT_NE(m.data(), nullptr);
    EXPECT_EQ(m.size() % 4096, 0u);
    EXPECT_GE(m.size(), 5000u);
    std::memset(m.data(), 1, m.size());  // usable memory
    EXPECT_EQ(m.placement().what, numa::outcome::not_bound);
    EXPECT_EQ(m.placement().node, -1);
    EXPECT_NE(m.placement().reason.find("synthetic"), std::string::npos) << m.placement().reason;
  }
  numa::node_memory f = numa::node_memory::first_touch(10);
  EXPECT_EQ(f.placement().what, numa::outcome::not_bound);
  EXPECT_NE(f.placement().reason.find("synthetic"), std::string::npos);
}

TEST(NumaMemory, IsZeroedAndMovesWithoutCopying) {
  numa_topology_scope scope("numa:2 pu:2");
  numa::node_memory a = numa::node_memory::on_node(8192, 1);
  const auto* bytes = static_cast<const unsigned char*>(a.data());
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(bytes[i], 0u) << i;
  void* where = a.data();
  numa::node_memory b = std::move(a);
  EXPECT_EQ(b.data(), where);
  EXPECT_EQ(a.data(), nullptr);
  a = std::move(b);
  EXPECT_EQ(a.data(), where);
}

struct counted {
  static inline std::atomic<int> alive{0};
  explicit counted(int v) : value(v) { alive.fetch_add(1); }
  ~counted() { alive.fetch_sub(1); }
  int value;
};

TEST(NumaPlaced, ConstructsOnceAndDestroysOnce) {
  numa_topology_scope scope("numa:2 pu:2");
  {
    auto p = numa::make_on_node<counted>(1, 42);
    EXPECT_EQ(p->value, 42);
    EXPECT_EQ(counted::alive.load(), 1);
    EXPECT_FALSE(p.placement().bound());
    auto q = std::move(p);
    EXPECT_FALSE(p);
    EXPECT_EQ(q->value, 42);
    EXPECT_EQ(counted::alive.load(), 1);
    auto r = numa::make_first_touch<counted>(7);
    q = std::move(r);
    EXPECT_EQ(q->value, 7);
    EXPECT_EQ(counted::alive.load(), 1);
  }
  EXPECT_EQ(counted::alive.load(), 0);
}

TEST(NumaPlaced, ALockOnANodeWorks) {
  numa_topology_scope scope("system");
  auto m = numa::make_on_node<hwsync::numa_mutex>(0);
  m->lock();
  std::thread([&m] { EXPECT_FALSE(m->try_lock()); }).join();
  m->unlock();
  if (topology::system().numa_nodes() == 1) {
    EXPECT_FALSE(m.placement().bound());
  }
}

TEST(NumaNodeLocal, OneReplicaPerNodeAndLocalIsTheThreadsNode) {
  numa_topology_scope scope("pack:2 numa:2 core:4 pu:1");
  numa::node_local<std::atomic<int>> counters(0);
  ASSERT_EQ(counters.size(), 4u);
  std::vector<std::thread> ts;
  for (unsigned n = 0; n < 4; ++n) {
    ts.emplace_back([&counters, n] {
      ASSERT_FALSE(numa::assign_current_thread_to_node(n));
      for (unsigned i = 0; i <= n; ++i) counters.local().fetch_add(1);
    });
  }
  for (auto& t : ts) t.join();
  for (unsigned n = 0; n < 4; ++n) {
    EXPECT_EQ(counters[n].load(), static_cast<int>(n + 1)) << "node " << n;
    EXPECT_FALSE(counters.placement(n).bound());
    EXPECT_NE(counters.placement(n).reason.find("synthetic"), std::string::npos);
  }
  // Replicas never share a page, so never a cache line.
  for (unsigned a = 0; a < 4; ++a)
    for (unsigned b = a + 1; b < 4; ++b) {
      const auto pa = reinterpret_cast<std::uintptr_t>(&counters[a]) / 4096;
      const auto pb = reinterpret_cast<std::uintptr_t>(&counters[b]) / 4096;
      EXPECT_NE(pa, pb);
    }
  int sum = 0;
  counters.for_each([&](std::atomic<int>& c) { sum += c.load(); });
  EXPECT_EQ(sum, 10);
  EXPECT_THROW((void)counters[4], std::out_of_range);
}

// ------------------------------------------------------------------ threads

TEST(NumaBinding, OnASyntheticTopologyNotBoundAndAffinityUntouched) {
  numa_topology_scope scope("pack:2 numa:2 core:4 pu:1");
  std::thread([] {
    const cpu_set_t before = affinity();
    const numa::binding b = numa::bind_current_thread_to_node(2);
    EXPECT_FALSE(b.bound());
    EXPECT_EQ(b.error, std::errc::operation_not_supported);
    EXPECT_NE(b.reason.find("synthetic"), std::string::npos) << b.reason;
    const cpu_set_t after = affinity();
    EXPECT_TRUE(CPU_EQUAL(&before, &after));
  }).join();
  expect_out_of_range_naming([] { (void)numa::bind_current_thread_to_node(9); }, "9", "0..3");
}

TEST(NumaBinding, OnThisMachineTheResultIsWhatTheKernelHolds) {
  numa_topology_scope scope("system");
  const topology& t = topology::system();
  if (t.is_synthetic()) GTEST_SKIP() << "HWLOC_SYNTHETIC replaces the machine";
  std::thread([&t] {
    const cpu_set_t before = affinity();
    const numa::binding b = numa::bind_current_thread_to_node(0);
    if (t.numa_nodes() == 1) {
      EXPECT_FALSE(b.bound());
      EXPECT_FALSE(b.error);
      EXPECT_NE(b.reason.find("one NUMA node"), std::string::npos) << b.reason;
      const cpu_set_t after = affinity();
      EXPECT_TRUE(CPU_EQUAL(&before, &after));
    } else if (b.bound()) {
      const cpu_set_t now = affinity();
      for (unsigned pu : t.pus_of_node(0)) EXPECT_TRUE(CPU_ISSET(t.pu_os_index(pu), &now));
      EXPECT_EQ(numa::current_node(), 0u);
    } else {
      EXPECT_TRUE(b.error);
      EXPECT_FALSE(b.reason.empty());
    }
  }).join();
}

}  // namespace
