// hwsync/numa_placement.hpp — which NUMA node a thread is on, and putting
// memory and threads on a chosen node: node_memory, placed<T>, node_local<T>,
// thread binding, and virtual nodes for tests on synthetic topologies.
//
// Contract
//   Topology     Everything here reads numa::current_topology(): the
//                runtime's topology::system() (this machine, or
//                HWLOC_SYNTHETIC), unless a test or benchmark installed a
//                synthetic one with use_synthetic_topology(). Installing one
//                is process-wide; topologies installed earlier stay alive
//                until exit, so a thread that read one a moment ago never
//                holds a dangling reference.
//   Node         current_node() is the node of the CPU the calling thread ran
//                on a moment ago: sched_getcpu() (a load from the rseq area
//                on glibc >= 2.35) mapped through the topology, cached per
//                thread and recomputed only when the CPU number changes. On a
//                synthetic topology a thread may be given a virtual node with
//                assign_current_thread_to_node(); current_node() then returns
//                it. Without an assignment, a synthetic topology maps the
//                kernel's CPU number modulo its PUs (topology.hpp).
//   Honesty      Nothing here reports success it did not check. Each result
//                says what happened: memory is bound to a node (the kernel's
//                placement read back after the first page was written), left
//                to first touch, or not bound, with the reason. On a
//                synthetic topology hwloc's binding calls return success and
//                do nothing, so they are never called: the answer is "not
//                bound". On a machine with one NUMA node placement cannot
//                change anything: plain memory, reported as not bound.
//   Memory       node_memory is whole pages from mmap (or hwloc_alloc_membind
//                on a multi-node machine), zero-filled, freed on destruction;
//                placed<T> and each replica of node_local<T> own one, so two
//                replicas never share a cache line or a page.
//   Threads      current_node(), assign_current_thread_to_node() and
//                bind_current_thread_to_node() act on the calling thread;
//                every function may be called from any number of threads.
//                use_synthetic_topology() and use_system_topology() are meant
//                for a test's or benchmark's setup: threads that run meanwhile
//                see the old or the new topology, never a torn one.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "hwsync/topology.hpp"

namespace hwsync::numa {

// The topology NUMA code uses (see the contract).
const topology& current_topology();
// Process-wide: NUMA code now sees the synthetic topology `description`
// (topology::from_synthetic; throws std::invalid_argument as it does).
// Virtual node assignments made under an earlier topology lapse.
void use_synthetic_topology(std::string_view description);
// Back to topology::system().
void use_system_topology() noexcept;

unsigned node_count();
// The calling thread's node, 0..node_count()-1 (0 when the kernel's CPU is
// not in the topology: offline when it loaded, or outside the cpuset).
unsigned current_node();

// Tests and benchmarks on a synthetic topology: the calling thread is on
// `node` from now on, as far as current_node() (and so numa_mutex) can
// tell. std::errc::operation_not_supported when the current topology is this
// machine (pin with bind_current_thread_to_node() there). Throws
// std::out_of_range for a node outside the topology, naming both.
std::error_code assign_current_thread_to_node(unsigned node);
// Undoes an assignment: current_node() follows the CPU again.
void clear_current_thread_node() noexcept;

// What a placement or binding did.
enum class outcome {
  bound,        // memory: on the node, read back from the kernel; thread: affinity set
  first_touch,  // memory left to the kernel's local policy: it lands where it is first written
  not_bound,    // nothing placed; `reason` says why
};

struct placement {
  outcome what = outcome::not_bound;
  int node = -1;       // where the memory is, as the kernel reported; -1: unknown
  std::string reason;  // why it is not bound (empty otherwise)

  bool bound() const noexcept { return what == outcome::bound; }
};

struct binding {
  outcome what = outcome::not_bound;  // bound or not_bound
  std::error_code error;              // set when not bound
  std::string reason;                 // why it is not bound (empty otherwise)

  bool bound() const noexcept { return what == outcome::bound; }
};

// Pins the calling thread to the CPUs of `node` (topology::
// pin_current_thread_to_node) on a multi-node machine. Not bound, affinity
// untouched: on a synthetic topology (operation_not_supported), on a
// one-node machine (every CPU is on that node; no error), or when the kernel
// refuses (its error). Throws std::out_of_range for a bad node.
binding bind_current_thread_to_node(unsigned node);

// Whole pages of zeroed memory placed on a node, or left to first touch.
class node_memory {
 public:
  // `bytes` rounded up to whole pages, bound to `node` where that is
  // possible and checked. Throws std::out_of_range for a bad node,
  // std::bad_alloc when no memory can be had at all (a refused binding is
  // not an error: the memory is then plain, and the placement says so).
  static node_memory on_node(std::size_t bytes, unsigned node);
  // Fresh pages that nobody has written: the kernel puts each on the node of
  // the thread that writes it first. The placement is first_touch (node -1)
  // until refresh_placement() reads back where the first page went.
  static node_memory first_touch(std::size_t bytes);

  node_memory() noexcept = default;
  node_memory(node_memory&& o) noexcept;
  node_memory& operator=(node_memory&& o) noexcept;
  node_memory(const node_memory&) = delete;
  node_memory& operator=(const node_memory&) = delete;
  ~node_memory();

  void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  const numa::placement& placement() const noexcept { return placement_; }
  // For first_touch memory after it was written: asks the kernel which node
  // holds the first page and records it (node stays -1 if it cannot tell).
  void refresh_placement();

 private:
  void release() noexcept;

  void* data_ = nullptr;
  std::size_t size_ = 0;
  bool from_hwloc_ = false;  // hwloc_free, not munmap
  numa::placement placement_;
};

// One T in its own node_memory: make_on_node<T>(node, args...) or
// make_first_touch<T>(args...) (constructed by the calling thread, so the
// first touch is that thread's). Owns the T like std::unique_ptr; moving
// keeps the object where it is.
template <class T>
class placed {
 public:
  placed() noexcept = default;
  placed(placed&& o) noexcept : mem_(std::move(o.mem_)), obj_(std::exchange(o.obj_, nullptr)) {}
  placed& operator=(placed&& o) noexcept {
    if (this != &o) {
      destroy();
      mem_ = std::move(o.mem_);
      obj_ = std::exchange(o.obj_, nullptr);
    }
    return *this;
  }
  ~placed() { destroy(); }

  T* get() const noexcept { return obj_; }
  T& operator*() const noexcept { return *obj_; }
  T* operator->() const noexcept { return obj_; }
  explicit operator bool() const noexcept { return obj_ != nullptr; }
  const numa::placement& placement() const noexcept { return mem_.placement(); }

  template <class U, class... Args>
  friend placed<U> make_on_node(unsigned node, Args&&... args);
  template <class U, class... Args>
  friend placed<U> make_first_touch(Args&&... args);

 private:
  template <class... Args>
  placed(node_memory mem, Args&&... args) : mem_(std::move(mem)) {
    obj_ = ::new (mem_.data()) T(std::forward<Args>(args)...);
  }
  void destroy() noexcept {
    if (obj_ != nullptr) obj_->~T();
    obj_ = nullptr;
  }

  node_memory mem_;
  T* obj_ = nullptr;
};

template <class T, class... Args>
placed<T> make_on_node(unsigned node, Args&&... args) {
  static_assert(alignof(T) <= 4096, "node_memory is page-aligned");
  return placed<T>(node_memory::on_node(sizeof(T), node), std::forward<Args>(args)...);
}

template <class T, class... Args>
placed<T> make_first_touch(Args&&... args) {
  static_assert(alignof(T) <= 4096, "node_memory is page-aligned");
  placed<T> p(node_memory::first_touch(sizeof(T)), std::forward<Args>(args)...);
  p.mem_.refresh_placement();
  return p;
}

// One replica of T per NUMA node of current_topology() at construction,
// each made with make_on_node (so each says where it went). local() is the
// calling thread's node's replica; no locking: synchronizing access to a
// replica is T's business.
template <class T>
class node_local {
 public:
  // Every replica constructed from the same arguments (copied, not moved).
  template <class... Args>
  explicit node_local(const Args&... args) {
    const unsigned n = node_count();
    replicas_.reserve(n);
    for (unsigned node = 0; node < n; ++node) replicas_.push_back(make_on_node<T>(node, args...));
  }

  unsigned size() const noexcept { return static_cast<unsigned>(replicas_.size()); }
  T& local() { return *replicas_[current_node() % replicas_.size()]; }
  T& operator[](unsigned node) { return *replicas_.at(node); }
  const T& operator[](unsigned node) const { return *replicas_.at(node); }
  const numa::placement& placement(unsigned node) const { return replicas_.at(node).placement(); }

  template <class F>
  void for_each(F&& f) {
    for (auto& r : replicas_) f(*r);
  }

 private:
  std::vector<placed<T>> replicas_;
};

}  // namespace hwsync::numa
