// hwloc is used only while a topology loads: every answer is copied into plain
// tables, and the hwloc topology is destroyed before the constructor returns.
#include "hwsync/topology.hpp"

#include <hwloc.h>
#include <sched.h>
#include <strings.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace hwsync {

namespace {

using hwloc_ptr = std::unique_ptr<hwloc_topology, decltype(&hwloc_topology_destroy)>;

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), std::string("hwsync::topology: ") + what);
}

hwloc_ptr new_hwloc() {
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0) throw_errno("hwloc_topology_init failed");
  hwloc_ptr p(t, &hwloc_topology_destroy);
  // hwloc 2 drops instruction caches unless asked; the report lists them.
  if (hwloc_topology_set_icache_types_filter(t, HWLOC_TYPE_FILTER_KEEP_ALL) != 0)
    throw_errno("hwloc_topology_set_icache_types_filter failed");
  return p;
}

void check_index(unsigned index, unsigned count, const char* fn, const char* what) {
  if (index < count) return;
  throw std::out_of_range("hwsync::topology::" + std::string(fn) + ": " + what + " " +
                          std::to_string(index) + " is out of range; this topology has " + what +
                          "s 0.." + std::to_string(count - 1));
}

std::string at(const char* s) {
  return " at '" + std::string(s) + "'";
}

// The attributes in "(...)" at p; on success p moves past the ')'. Caches
// take size=, other objects memory=, all of them indexes=.
std::string attributes_complaint(const char*& p, bool cache) {
  const char* a = p + 1;
  if (!std::strchr(a, ')')) return "no ')' closing the attributes" + at(p);
  while (*a != ')') {
    const char* key = cache ? "size=" : "memory=";
    if (std::strncmp(a, key, std::strlen(key)) == 0) {
      const char* v = a + std::strlen(key);
      char* end = nullptr;
      (void)std::strtoull(v, &end, 0);
      a = end;
      for (const char* unit : {"TiB", "GiB", "MiB", "kiB", "TB", "GB", "MB", "kB"}) {
        if (strncasecmp(a, unit, std::strlen(unit)) == 0) {
          a += std::strlen(unit);
          break;
        }
      }
    } else if (std::strncmp(a, "indexes=", 8) == 0) {
      a += 8;
      a += std::strcspn(a, " )");
    } else {
      return "unknown attribute" + at(a);
    }
    if (*a == ' ')
      ++a;
    else if (*a != ')')
      return "expected ' ' or ')' after an attribute" + at(a);
  }
  p = a + 1;
  return {};
}

// hwloc_topology_set_synthetic says only EINVAL; its reason goes to stderr, and
// only with HWLOC_SYNTHETIC_VERBOSE set in the environment, which a library
// cannot set safely in a threaded process. So walk the description the way
// hwloc 2.9's parser does, with hwloc's own type parser, to name the same
// place and reason. Empty when nothing is found to blame.
std::string synthetic_complaint(const std::string& d) {
  const char* p = d.c_str();
  if (*p == '(') {
    if (std::string why = attributes_complaint(p, false); !why.empty()) return why;
  }
  struct level {
    bool typed;
    hwloc_obj_type_t type;
  };
  std::vector<level> levels;
  bool attached_numa = false;
  for (;;) {
    while (*p == ' ' || *p == '\n') ++p;
    if (!*p) break;
    hwloc_obj_type_t type = HWLOC_OBJ_PU;
    if (*p == '[') {
      if (hwloc_type_sscanf(p + 1, &type, nullptr, 0) != 0)
        return "unknown attached object type" + at(p + 1);
      if (type != HWLOC_OBJ_NUMANODE) return "only NUMA nodes may be attached" + at(p + 1);
      const char* close = std::strchr(p, ']');
      if (!close) return "no ']' after the attached object type" + at(p + 1);
      if (const char* a = std::strchr(p, '('); a && a < close) {
        if (std::string why = attributes_complaint(a, false); !why.empty()) return why;
      }
      attached_numa = true;
      p = close + 1;
      continue;
    }
    const bool typed = *p < '0' || *p > '9';
    if (typed) {
      if (hwloc_type_sscanf(p, &type, nullptr, 0) != 0) {
        if (std::strncmp(p, "Tile", 4) != 0 && std::strncmp(p, "Module", 6) != 0)
          return "unknown object type" + at(p);
        type = HWLOC_OBJ_GROUP;
      }
      if (type == HWLOC_OBJ_MACHINE || type == HWLOC_OBJ_MISC || type == HWLOC_OBJ_BRIDGE ||
          type == HWLOC_OBJ_PCI_DEVICE || type == HWLOC_OBJ_OS_DEVICE)
        return "object type not allowed as a level" + at(p);
      const char* colon = std::strchr(p, ':');
      if (!colon) return "no ':' after the object type" + at(p);
      p = colon + 1;
    }
    char* end = nullptr;
    const unsigned long n = std::strtoul(p, &end, 0);
    if (end == p) return "no number of objects" + at(p);
    if (n == 0) return "0 objects" + at(p);
    if (n > UINT_MAX) return "too many objects" + at(p);
    p = end;
    if (*p == '(') {
      if (std::string why = attributes_complaint(p, typed && hwloc_obj_type_is_cache(type));
          !why.empty())
        return why;
    }
    levels.push_back({typed, type});
    if (levels.size() >= 127) return "more than 126 levels";
  }
  if (levels.empty()) return "no levels; expected at least the number of PUs, e.g. \"pu:4\"";
  const level& last = levels.back();
  if (last.typed && last.type != HWLOC_OBJ_PU)
    return std::string("the last level must be PUs, not ") + hwloc_obj_type_string(last.type);
  for (hwloc_obj_type_t t :
       {HWLOC_OBJ_PU, HWLOC_OBJ_PACKAGE, HWLOC_OBJ_DIE, HWLOC_OBJ_NUMANODE, HWLOC_OBJ_CORE}) {
    int count = 0;
    for (const level& l : levels) count += l.typed && l.type == t;
    if (count > 1) return std::string("several ") + hwloc_obj_type_string(t) + " levels";
    if (t == HWLOC_OBJ_NUMANODE && count == 1 && attached_numa)
      return "NUMA nodes both as a level and attached";
  }
  std::size_t untyped = 0;
  for (std::size_t i = 0; i + 1 < levels.size(); ++i) untyped += !levels[i].typed;
  if (untyped != 0 && untyped + 1 != levels.size())
    return "levels with and without object types mixed";
  return {};
}

[[noreturn]] void throw_rejected(const std::string& where, const std::string& description) {
  std::string why = synthetic_complaint(description);
  if (why.empty())
    why = "hwloc gives no reason beyond EINVAL (HWLOC_SYNTHETIC_VERBOSE=1 makes it print one)";
  throw std::invalid_argument("hwsync::topology::" + where + ": hwloc rejected the synthetic " +
                              "description \"" + description + "\": " + why);
}

hwloc_obj_t obj_at(hwloc_topology_t t, hwloc_obj_type_t type, unsigned i) {
  hwloc_obj_t o = hwloc_get_obj_by_type(t, type, i);
  if (!o)
    throw std::runtime_error(std::string("hwsync::topology: hwloc lists no ") +
                             hwloc_obj_type_string(type) + " #" + std::to_string(i));
  return o;
}

unsigned count_of(hwloc_topology_t t, hwloc_obj_type_t type) {
  const int n = hwloc_get_nbobjs_by_type(t, type);
  if (n < 0)
    throw std::runtime_error(std::string("hwsync::topology: hwloc puts ") +
                             hwloc_obj_type_string(type) + " objects at several depths");
  return static_cast<unsigned>(n);
}

// The nearest NUMA node: hwloc 2 hangs nodes (possibly behind memory-side
// caches) off the object whose CPUs they are local to.
hwloc_obj_t nearest_node(hwloc_obj_t pu) {
  for (hwloc_obj_t a = pu->parent; a; a = a->parent) {
    hwloc_obj_t m = a->memory_first_child;
    while (m && m->type != HWLOC_OBJ_NUMANODE) m = m->memory_first_child;
    if (m) return m;
  }
  return nullptr;
}

// A CPU mask as wide as the kernel's: sched_getaffinity fails with EINVAL
// when the buffer holds fewer bits than the kernel's CPU count.
using cpu_mask = std::vector<cpu_set_t>;
std::size_t bytes_of(const cpu_mask& m) {
  return m.size() * sizeof(cpu_set_t);
}

std::error_code current_affinity(cpu_mask& m) {
  for (std::size_t words = 1; words <= 256; words *= 2) {
    m.assign(words, cpu_set_t{});
    if (sched_getaffinity(0, bytes_of(m), m.data()) == 0) return {};
    if (errno != EINVAL) return {errno, std::generic_category()};
  }
  return std::make_error_code(std::errc::invalid_argument);
}

std::error_code pin_to(const std::vector<unsigned>& os_cpus) {
  if (os_cpus.empty()) return std::make_error_code(std::errc::invalid_argument);
  cpu_mask before;
  if (std::error_code ec = current_affinity(before)) return ec;
  const std::size_t bytes = bytes_of(before);
  cpu_mask want(before.size(), cpu_set_t{});
  for (unsigned cpu : os_cpus) {
    // Beyond the kernel's CPU count: no such CPU can exist.
    if (cpu >= bytes * CHAR_BIT) return std::make_error_code(std::errc::invalid_argument);
    CPU_SET_S(cpu, bytes, want.data());
  }
  if (sched_setaffinity(0, bytes, want.data()) != 0) return {errno, std::generic_category()};
  // The kernel silently intersects the mask with the cpuset cgroup's CPUs:
  // only the mask read back says what was granted.
  cpu_mask got(before.size(), cpu_set_t{});
  std::error_code ec;
  if (sched_getaffinity(0, bytes, got.data()) != 0)
    ec = {errno, std::generic_category()};
  else if (!CPU_EQUAL_S(bytes, got.data(), want.data()))
    ec = std::make_error_code(std::errc::invalid_argument);
  if (ec) sched_setaffinity(0, bytes, before.data());
  return ec;
}

std::string size_text(std::size_t bytes) {
  if (bytes == 0) return "size unknown";
  constexpr std::size_t kib = 1024, mib = kib * 1024, gib = mib * 1024;
  if (bytes % gib == 0) return std::to_string(bytes / gib) + " GiB";
  if (bytes % mib == 0) return std::to_string(bytes / mib) + " MiB";
  if (bytes % kib == 0) return std::to_string(bytes / kib) + " KiB";
  return std::to_string(bytes) + " B";
}

std::string counted(unsigned n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

struct topology::impl {
  bool synthetic = false;
  std::string description;  // the synthetic description, if any
  unsigned n_packages = 0;
  unsigned n_nodes = 0;
  unsigned n_cores = 0;
  unsigned n_pus = 0;
  std::vector<unsigned> pu_node, pu_core, pu_package, pu_os;  // by logical PU
  std::vector<unsigned> node_os;                              // by logical node
  std::vector<std::vector<unsigned>> node_pus;
  std::vector<int> os_to_pu;  // kernel CPU number -> logical PU, or -1
  std::vector<cache_info> caches;

  static std::unique_ptr<impl> build(hwloc_topology_t t, bool synthetic);
};

std::unique_ptr<topology::impl> topology::impl::build(hwloc_topology_t t, bool synthetic) {
  auto im = std::make_unique<impl>();
  im->synthetic = synthetic;
  if (const char* d = hwloc_obj_get_info_by_name(hwloc_get_root_obj(t), "SyntheticDescription"))
    im->description = d;

  im->n_pus = count_of(t, HWLOC_OBJ_PU);
  im->n_nodes = count_of(t, HWLOC_OBJ_NUMANODE);
  if (im->n_pus == 0 || im->n_nodes == 0)
    throw std::runtime_error("hwsync::topology: hwloc found " + std::to_string(im->n_pus) +
                             " PUs and " + std::to_string(im->n_nodes) +
                             " NUMA nodes; expected at least one of each");
  const unsigned hw_cores = count_of(t, HWLOC_OBJ_CORE);
  const unsigned hw_packages = count_of(t, HWLOC_OBJ_PACKAGE);
  im->n_cores = hw_cores ? hw_cores : im->n_pus;
  im->n_packages = hw_packages ? hw_packages : 1;

  for (unsigned n = 0; n < im->n_nodes; ++n)
    im->node_os.push_back(obj_at(t, HWLOC_OBJ_NUMANODE, n)->os_index);
  im->node_pus.resize(im->n_nodes);

  for (unsigned i = 0; i < im->n_pus; ++i) {
    hwloc_obj_t pu = obj_at(t, HWLOC_OBJ_PU, i);
    im->pu_os.push_back(pu->os_index);
    unsigned core = i;
    if (hw_cores) {
      hwloc_obj_t c = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_CORE, pu);
      if (!c)
        throw std::runtime_error("hwsync::topology: PU " + std::to_string(i) +
                                 " has no core while others do");
      core = c->logical_index;
    }
    im->pu_core.push_back(core);
    hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_PACKAGE, pu);
    im->pu_package.push_back(pkg ? pkg->logical_index : 0);
    // A PU with no node above it (a memoryless domain) is charged to node 0:
    // the only choice that needs no distance table.
    hwloc_obj_t node = nearest_node(pu);
    const unsigned n = node ? node->logical_index : 0;
    im->pu_node.push_back(n);
    im->node_pus[n].push_back(i);
  }

  unsigned max_os = 0;
  for (unsigned os : im->pu_os) max_os = std::max(max_os, os);
  im->os_to_pu.assign(max_os + 1, -1);
  for (unsigned i = 0; i < im->n_pus; ++i) im->os_to_pu[im->pu_os[i]] = static_cast<int>(i);

  static constexpr hwloc_obj_type_t cache_types[] = {
      HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L1ICACHE, HWLOC_OBJ_L2CACHE, HWLOC_OBJ_L2ICACHE,
      HWLOC_OBJ_L3CACHE, HWLOC_OBJ_L3ICACHE, HWLOC_OBJ_L4CACHE, HWLOC_OBJ_L5CACHE};
  for (hwloc_obj_type_t type : cache_types) {
    const unsigned n = count_of(t, type);
    for (unsigned i = 0; i < n; ++i) {
      hwloc_obj_t c = obj_at(t, type, i);
      cache_info info{};
      info.level = c->attr->cache.depth;
      info.kind = c->attr->cache.type == HWLOC_OBJ_CACHE_DATA          ? cache_kind::data
                  : c->attr->cache.type == HWLOC_OBJ_CACHE_INSTRUCTION ? cache_kind::instruction
                                                                       : cache_kind::unified;
      info.size_bytes = static_cast<std::size_t>(c->attr->cache.size);
      info.line_bytes = c->attr->cache.linesize;
      for (int os = hwloc_bitmap_first(c->cpuset); os >= 0; os = hwloc_bitmap_next(c->cpuset, os)) {
        if (static_cast<unsigned>(os) <= max_os && im->os_to_pu[static_cast<unsigned>(os)] >= 0)
          info.pus.push_back(static_cast<unsigned>(im->os_to_pu[static_cast<unsigned>(os)]));
      }
      std::sort(info.pus.begin(), info.pus.end());
      im->caches.push_back(std::move(info));
    }
  }
  return im;
}

topology::topology(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}
topology::topology(topology&&) noexcept = default;
topology& topology::operator=(topology&&) noexcept = default;
topology::~topology() = default;

const topology& topology::system() {
  static const topology machine = [] {
    hwloc_ptr t = new_hwloc();
    if (hwloc_topology_load(t.get()) != 0) throw_errno("hwloc_topology_load failed");
    // hwloc falls back to discovering the machine when it cannot parse
    // HWLOC_SYNTHETIC; a test that asked for four nodes must not get one.
    const char* env = std::getenv("HWLOC_SYNTHETIC");
    if (env && *env &&
        !hwloc_obj_get_info_by_name(hwloc_get_root_obj(t.get()), "SyntheticDescription"))
      throw_rejected("system (HWLOC_SYNTHETIC)", env);
    return topology(impl::build(t.get(), !hwloc_topology_is_thissystem(t.get())));
  }();
  return machine;
}

topology topology::from_synthetic(std::string_view description) {
  const std::string d(description);
  if (d.find('\0') != std::string::npos)
    throw std::invalid_argument("hwsync::topology::from_synthetic: the synthetic description \"" +
                                d + "\" contains a NUL character");
  hwloc_ptr t = new_hwloc();
  if (hwloc_topology_set_synthetic(t.get(), d.c_str()) != 0) throw_rejected("from_synthetic", d);
  if (hwloc_topology_load(t.get()) != 0) throw_errno("hwloc_topology_load failed");
  // Synthetic even under HWLOC_THISSYSTEM=1: its CPUs are not this machine's.
  auto im = impl::build(t.get(), true);
  if (im->description.empty()) im->description = d;
  return topology(std::move(im));
}

bool topology::is_synthetic() const noexcept {
  return impl_->synthetic;
}
unsigned topology::packages() const noexcept {
  return impl_->n_packages;
}
unsigned topology::numa_nodes() const noexcept {
  return impl_->n_nodes;
}
unsigned topology::cores() const noexcept {
  return impl_->n_cores;
}
unsigned topology::pus() const noexcept {
  return impl_->n_pus;
}
std::span<const topology::cache_info> topology::caches() const noexcept {
  return impl_->caches;
}

unsigned topology::node_of_pu(unsigned pu) const {
  check_index(pu, impl_->n_pus, "node_of_pu", "PU");
  return impl_->pu_node[pu];
}

unsigned topology::core_of_pu(unsigned pu) const {
  check_index(pu, impl_->n_pus, "core_of_pu", "PU");
  return impl_->pu_core[pu];
}

unsigned topology::package_of_pu(unsigned pu) const {
  check_index(pu, impl_->n_pus, "package_of_pu", "PU");
  return impl_->pu_package[pu];
}

std::span<const unsigned> topology::pus_of_node(unsigned node) const {
  check_index(node, impl_->n_nodes, "pus_of_node", "NUMA node");
  return impl_->node_pus[node];
}

unsigned topology::pu_os_index(unsigned pu) const {
  check_index(pu, impl_->n_pus, "pu_os_index", "PU");
  return impl_->pu_os[pu];
}

unsigned topology::node_os_index(unsigned node) const {
  check_index(node, impl_->n_nodes, "node_os_index", "NUMA node");
  return impl_->node_os[node];
}

int topology::current_pu() const noexcept {
  const int cpu = sched_getcpu();
  if (cpu < 0) return -1;
  if (impl_->synthetic) return static_cast<int>(static_cast<unsigned>(cpu) % impl_->n_pus);
  const auto os = static_cast<std::size_t>(cpu);
  return os < impl_->os_to_pu.size() ? impl_->os_to_pu[os] : -1;
}

int topology::current_node() const noexcept {
  const int pu = current_pu();
  return pu < 0 ? -1 : static_cast<int>(impl_->pu_node[static_cast<unsigned>(pu)]);
}

std::error_code topology::pin_current_thread_to_pu(unsigned pu) const {
  check_index(pu, impl_->n_pus, "pin_current_thread_to_pu", "PU");
  if (impl_->synthetic) return std::make_error_code(std::errc::operation_not_supported);
  return pin_to({impl_->pu_os[pu]});
}

std::error_code topology::pin_current_thread_to_node(unsigned node) const {
  check_index(node, impl_->n_nodes, "pin_current_thread_to_node", "NUMA node");
  if (impl_->synthetic) return std::make_error_code(std::errc::operation_not_supported);
  std::vector<unsigned> cpus;
  for (unsigned pu : impl_->node_pus[node]) cpus.push_back(impl_->pu_os[pu]);
  return pin_to(cpus);
}

std::string topology::describe() const {
  std::string s;
  if (!impl_->description.empty())
    s = "synthetic \"" + impl_->description + "\": ";
  else if (impl_->synthetic)
    s = "not this machine: ";
  s += counted(impl_->n_packages, "package", "packages") + ", " +
       counted(impl_->n_nodes, "NUMA node", "NUMA nodes") + ", " +
       counted(impl_->n_cores, "core", "cores") + ", " + counted(impl_->n_pus, "PU", "PUs");
  // Caches of one level, kind and size as one entry: "L2 512 KiB x2".
  const auto& cs = impl_->caches;
  for (std::size_t i = 0; i < cs.size();) {
    std::size_t j = i + 1;
    while (j < cs.size() && cs[j].level == cs[i].level && cs[j].kind == cs[i].kind &&
           cs[j].size_bytes == cs[i].size_bytes)
      ++j;
    s += i == 0 ? "; L" : ", L";
    s += std::to_string(cs[i].level);
    if (cs[i].kind == cache_kind::data) s += 'd';
    if (cs[i].kind == cache_kind::instruction) s += 'i';
    s += ' ';
    s += size_text(cs[i].size_bytes);
    s += " x";
    s += std::to_string(j - i);
    i = j;
  }
  return s;
}

}  // namespace hwsync
