// The calling thread's node, virtual nodes, and memory and thread placement
// (hwsync/numa_placement.hpp). hwloc is used only on a multi-node machine,
// for what the runtime's tables cannot do: binding memory and reading back
// where it went.
#include "hwsync/numa_placement.hpp"

#include <hwloc.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace hwsync::numa {

namespace {

// ------------------------------------------------------------- the topology

std::atomic<const topology*> g_installed{nullptr};

// Every synthetic topology ever installed, alive until exit: a thread may
// still be reading the one it loaded a moment before the next was installed.
std::mutex g_installed_mutex;
std::vector<std::unique_ptr<topology>>& installed_topologies() {
  static std::vector<std::unique_ptr<topology>> all;
  return all;
}

void check_node(unsigned node, unsigned nodes, const char* fn) {
  if (node < nodes) return;
  throw std::out_of_range("hwsync::numa::" + std::string(fn) + ": NUMA node " +
                          std::to_string(node) + " is out of range; the topology has nodes 0.." +
                          std::to_string(nodes - 1));
}

// ---------------------------------------------------------- the thread's node

struct thread_node {
  const topology* topo = nullptr;  // the topology `cpu` and `node` were read in
  int cpu = -1;
  unsigned node = 0;
  const topology* assigned_topo = nullptr;  // a virtual node holds under this one only
  unsigned assigned = 0;
};
thread_local thread_node t_node;

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t whole_pages(std::size_t bytes) noexcept {
  const std::size_t p = page_size();
  return bytes == 0 ? p : (bytes + p - 1) / p * p;
}

std::string single_node_reason() {
  return "this machine has one NUMA node: there is no other place to put it";
}

std::string synthetic_reason(const topology& t) {
  return "the topology is synthetic (" + t.describe() +
         "): hwloc's binding calls report success on it and do nothing";
}

// hwloc for this machine, loaded once, only when memory is to be bound on a
// multi-node machine. Null when it cannot load (the reason is returned).
hwloc_topology_t machine_hwloc(std::string& why_not) {
  static std::string failure;
  static hwloc_topology_t t = [] {
    hwloc_topology_t h = nullptr;
    if (hwloc_topology_init(&h) != 0) {
      failure = "hwloc_topology_init failed: " + std::generic_category().message(errno);
      return static_cast<hwloc_topology_t>(nullptr);
    }
    if (hwloc_topology_load(h) != 0 || !hwloc_topology_is_thissystem(h)) {
      failure = "hwloc could not load this machine's topology";
      hwloc_topology_destroy(h);
      return static_cast<hwloc_topology_t>(nullptr);
    }
    return h;
  }();
  why_not = failure;
  return t;
}

// The node (logical index in `topo`) holding the page at p, or -1.
int node_of_page(const topology& topo, void* p, std::size_t bytes) {
  std::string why;
  hwloc_topology_t h = machine_hwloc(why);
  if (h == nullptr) return -1;
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  if (set == nullptr) return -1;
  int node = -1;
  if (hwloc_get_area_memlocation(h, p, bytes, set, HWLOC_MEMBIND_BYNODESET) == 0 &&
      hwloc_bitmap_weight(set) == 1) {
    const int os = hwloc_bitmap_first(set);
    for (unsigned n = 0; n < topo.numa_nodes(); ++n) {
      if (static_cast<int>(topo.node_os_index(n)) == os) node = static_cast<int>(n);
    }
  }
  hwloc_bitmap_free(set);
  return node;
}

void* map_pages(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

}  // namespace

const topology& current_topology() {
  if (const topology* t = g_installed.load(std::memory_order_acquire)) return *t;
  return topology::system();
}

void use_synthetic_topology(std::string_view description) {
  auto t = std::make_unique<topology>(topology::from_synthetic(description));
  std::lock_guard g(g_installed_mutex);
  g_installed.store(t.get(), std::memory_order_release);
  installed_topologies().push_back(std::move(t));
}

void use_system_topology() noexcept {
  g_installed.store(nullptr, std::memory_order_release);
}

unsigned node_count() {
  return current_topology().numa_nodes();
}

unsigned current_node() {
  const topology& t = current_topology();
  thread_node& me = t_node;
  if (me.assigned_topo == &t) return me.assigned;
  const int cpu = sched_getcpu();
  if (cpu == me.cpu && me.topo == &t) return me.node;
  // Cache the pair only if the thread stayed on one CPU while reading it.
  const int node = t.current_node();
  const unsigned result = node < 0 ? 0u : static_cast<unsigned>(node);
  if (sched_getcpu() == cpu) {
    me.topo = &t;
    me.cpu = cpu;
    me.node = result;
  }
  return result;
}

std::error_code assign_current_thread_to_node(unsigned node) {
  const topology& t = current_topology();
  check_node(node, t.numa_nodes(), "assign_current_thread_to_node");
  if (!t.is_synthetic()) return std::make_error_code(std::errc::operation_not_supported);
  t_node.assigned_topo = &t;
  t_node.assigned = node;
  return {};
}

void clear_current_thread_node() noexcept {
  t_node.assigned_topo = nullptr;
}

binding bind_current_thread_to_node(unsigned node) {
  const topology& t = current_topology();
  check_node(node, t.numa_nodes(), "bind_current_thread_to_node");
  binding b;
  if (t.is_synthetic()) {
    b.error = std::make_error_code(std::errc::operation_not_supported);
    b.reason = synthetic_reason(t);
    return b;
  }
  if (t.numa_nodes() == 1) {
    b.reason = single_node_reason() + "; the thread's affinity is left as it was";
    return b;
  }
  if (std::error_code ec = t.pin_current_thread_to_node(node)) {
    b.error = ec;
    b.reason = "the kernel refused the node's CPUs: " + ec.message();
    return b;
  }
  b.what = outcome::bound;
  return b;
}

// --------------------------------------------------------------- node_memory

node_memory node_memory::on_node(std::size_t bytes, unsigned node) {
  const topology& t = current_topology();
  check_node(node, t.numa_nodes(), "node_memory::on_node");
  node_memory m;
  m.size_ = whole_pages(bytes);
  if (t.is_synthetic() || t.numa_nodes() == 1) {
    m.data_ = map_pages(m.size_);
    m.placement_.reason = t.is_synthetic() ? synthetic_reason(t) : single_node_reason();
    return m;
  }
  std::string why;
  hwloc_topology_t h = machine_hwloc(why);
  if (h != nullptr) {
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (set != nullptr) {
      hwloc_bitmap_only(set, t.node_os_index(node));
      errno = 0;
      m.data_ = hwloc_alloc_membind(
          h, m.size_, set, HWLOC_MEMBIND_BIND,
          HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT | HWLOC_MEMBIND_NOCPUBIND);
      if (m.data_ == nullptr)
        why = "hwloc_alloc_membind failed: " + std::generic_category().message(errno);
      hwloc_bitmap_free(set);
    } else {
      why = "hwloc_bitmap_alloc failed";
    }
  }
  if (m.data_ == nullptr) {
    m.data_ = map_pages(m.size_);
    m.placement_.reason = why;
    return m;
  }
  m.from_hwloc_ = true;
  // A policy is a promise about future faults: write the first page so the
  // kernel places it, then believe only where it says the page is.
  static_cast<volatile char*>(m.data_)[0] = 0;
  const int where = node_of_page(t, m.data_, page_size());
  m.placement_.node = where;
  if (where == static_cast<int>(node)) {
    m.placement_.what = outcome::bound;
  } else {
    m.placement_.reason =
        "bound with hwloc, but the kernel reports the first page on " +
        (where < 0 ? std::string("no single node") : "node " + std::to_string(where));
  }
  return m;
}

node_memory node_memory::first_touch(std::size_t bytes) {
  const topology& t = current_topology();
  node_memory m;
  m.size_ = whole_pages(bytes);
  m.data_ = map_pages(m.size_);
  if (t.is_synthetic()) {
    m.placement_.reason = synthetic_reason(t);
  } else if (t.numa_nodes() == 1) {
    m.placement_.reason = single_node_reason();
  } else {
    m.placement_.what = outcome::first_touch;
  }
  return m;
}

void node_memory::refresh_placement() {
  if (placement_.what != outcome::first_touch || data_ == nullptr) return;
  placement_.node = node_of_page(current_topology(), data_, page_size());
}

node_memory::node_memory(node_memory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      from_hwloc_(o.from_hwloc_),
      placement_(std::move(o.placement_)) {}

node_memory& node_memory::operator=(node_memory&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    from_hwloc_ = o.from_hwloc_;
    placement_ = std::move(o.placement_);
  }
  return *this;
}

node_memory::~node_memory() {
  release();
}

void node_memory::release() noexcept {
  if (data_ == nullptr) return;
  if (from_hwloc_) {
    std::string why;
    hwloc_free(machine_hwloc(why), data_, size_);
  } else {
    munmap(data_, size_);
  }
  data_ = nullptr;
}

}  // namespace hwsync::numa
