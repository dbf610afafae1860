// hwsync/topology.hpp — the machine's shape as the runtime sees it: packages,
// NUMA nodes, cores, PUs (hardware threads) and caches, discovered by hwloc.
//
// Contract
//   Sources      topology::system() is this machine, discovered once per
//                process. As with hwloc itself, HWLOC_SYNTHETIC or
//                HWLOC_XMLFILE in the environment replace the discovery; a
//                malformed HWLOC_SYNTHETIC throws instead of quietly falling
//                back to the real machine as hwloc does. from_synthetic()
//                builds a topology from an hwloc synthetic description
//                ("package:2 numa:2 core:4 pu:1"), so NUMA code can be tested
//                on a one-node machine.
//   Indexes      Every index is hwloc's logical index, 0..n-1 in tree order
//                (the PUs of a core, then of a NUMA node, are adjacent). The
//                kernel's numbers, for sched_setaffinity or mbind, are
//                pu_os_index() and node_os_index(). An index out of range
//                throws std::out_of_range naming it and the valid range.
//   Levels       A level a synthetic description leaves out is filled the way
//                hwloc fills a missing NUMA level: no package level is one
//                package, no core level makes each PU its own core. Every
//                count is therefore >= 1, and pus() >= cores().
//   NUMA         Each PU belongs to exactly one node: the nearest one in
//                hwloc's tree (first memory child of its closest ancestor that
//                has memory). The nodes partition the PUs; a memory-only node
//                (HBM or CXL beside DRAM) has none.
//   Cost         Loading is slow (system(): milliseconds of sysfs reads, paid
//                once). Every query afterwards reads tables built at load:
//                no hwloc call, no lock, no cpuid. current_pu() and
//                current_node() are one sched_getcpu(), which glibc >= 2.35
//                reads from the rseq area the kernel keeps current (a load;
//                the vDSO getcpu, RDPID or LSL, where rseq is off). The answer
//                is where the thread ran a moment ago: exact only while it is
//                pinned.
//   Pinning      pin_current_thread_to_*() sets the calling thread's CPU
//                affinity with sched_setaffinity and reads it back with
//                sched_getaffinity: success means the kernel holds exactly
//                those CPUs and the thread already runs on one of them
//                (affinity changes migrate before returning). A failure
//                puts back the affinity it found. On a topology that is not
//                this machine (is_synthetic()), where hwloc's own binding
//                calls return success and do nothing, pinning returns
//                std::errc::operation_not_supported. Memory placement is not
//                touched.
//   Synthetic    A synthetic topology knows nothing of the CPU a thread runs
//                on: current_pu() reports the kernel's CPU number modulo
//                pus(), so per-node code paths run in tests; it is not a
//                location.
//   Threads      Immutable once built: every member may be called from any
//                number of threads at once. Move-only; a moved-from topology
//                may only be destroyed or assigned to.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace hwsync {

class topology {
 public:
  enum class cache_kind : unsigned char { unified, data, instruction };

  struct cache_info {
    unsigned level;             // 1 for L1
    cache_kind kind;            // L1d and L1i are two caches of level 1
    std::size_t size_bytes;     // 0 where the machine does not say
    std::size_t line_bytes;     // 0 where the machine does not say
    std::vector<unsigned> pus;  // the PUs that share it, ascending
  };

  // This machine (or HWLOC_SYNTHETIC / HWLOC_XMLFILE), loaded on first use;
  // concurrent first calls load it once. Throws std::invalid_argument for a
  // malformed HWLOC_SYNTHETIC, std::system_error when hwloc cannot load.
  static const topology& system();

  // Throws std::invalid_argument quoting the description and what hwloc
  // objects to when it is malformed.
  static topology from_synthetic(std::string_view description);

  topology(topology&&) noexcept;
  topology& operator=(topology&&) noexcept;
  topology(const topology&) = delete;
  topology& operator=(const topology&) = delete;
  ~topology();

  // Not a view of the machine this process runs on: a synthetic description,
  // or an XML file loaded without HWLOC_THISSYSTEM=1.
  bool is_synthetic() const noexcept;

  unsigned packages() const noexcept;
  unsigned numa_nodes() const noexcept;
  unsigned cores() const noexcept;
  unsigned pus() const noexcept;

  // CPU caches by level (L1d, L1i, L2, ...), each level in tree order.
  std::span<const cache_info> caches() const noexcept;

  unsigned node_of_pu(unsigned pu) const;
  unsigned core_of_pu(unsigned pu) const;
  unsigned package_of_pu(unsigned pu) const;
  // Ascending; empty for a memory-only node.
  std::span<const unsigned> pus_of_node(unsigned node) const;

  unsigned pu_os_index(unsigned pu) const;
  unsigned node_os_index(unsigned node) const;

  // -1 when the kernel's CPU is not in this topology (offline when it was
  // loaded, or outside this process's cpuset cgroup).
  int current_pu() const noexcept;
  int current_node() const noexcept;

  // std::errc::operation_not_supported on a synthetic topology;
  // std::errc::invalid_argument when the kernel refuses or narrows the mask
  // (CPUs offline or outside the cpuset cgroup) or the node has no PUs;
  // another errno from sched_setaffinity as it comes. Throws std::out_of_range
  // for a bad index, like the queries.
  std::error_code pin_current_thread_to_pu(unsigned pu) const;
  std::error_code pin_current_thread_to_node(unsigned node) const;

  // One line for reports: "1 package, 1 NUMA node, 2 cores, 2 PUs; L1d 32 KiB
  // x2, L1i 32 KiB x2, L2 512 KiB x2, L3 32 MiB x1", prefixed with the
  // description for a synthetic topology.
  std::string describe() const;

 private:
  struct impl;
  explicit topology(std::unique_ptr<impl> p) noexcept;
  std::unique_ptr<impl> impl_;
};

}  // namespace hwsync
