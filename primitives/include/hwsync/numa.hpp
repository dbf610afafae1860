// hwsync/numa.hpp — NUMA-aware locking and placement: hwsync::numa_mutex
// (hwsync/numa_mutex.hpp) and the numa:: placement API — the calling
// thread's node, node_memory, placed<T>, node_local<T>, thread binding and
// virtual nodes for synthetic topologies (hwsync/numa_placement.hpp).
// docs/numa.md explains the algorithm, its bound and what was measured.
#pragma once

#include "hwsync/numa_mutex.hpp"
#include "hwsync/numa_placement.hpp"
