// Detection: CPUID decoding, the HWSYNC_HTM setting, the probe, and the
// one-time choice of backend (hwsync/htm/capabilities.hpp).
#include "hwsync/htm/capabilities.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "internal.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace hwsync::htm {

namespace detail {
// Every hardware transaction reads it right after XBEGIN, so a write to its
// line aborts them all: aligned to start a line. What the linker puts after
// it is written at start-up or when a tool is switched on (cycle_clock's
// mode); a neighbour written often would cost aborts, not correctness.
alignas(64) std::atomic<backend> current_backend{backend::unresolved};
}  // namespace detail

cpuid_leaves read_cpuid() noexcept {
  cpuid_leaves l;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return l;
  l.max_basic_leaf = a;
  l.vendor_ebx = b;
  l.vendor_edx = d;
  l.vendor_ecx = c;
  if (l.max_basic_leaf >= 1) {
    __cpuid(1, a, b, c, d);
    l.leaf1_eax = a;
  }
  if (l.max_basic_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    l.leaf7_ebx = b;
    l.leaf7_edx = d;
  }
#endif
  return l;
}

namespace {

constexpr std::uint32_t bit(unsigned n) noexcept {
  return std::uint32_t{1} << n;
}

// Intel family 6 models on which glibc turns RTM off (sysdeps/x86/cpu-features.c),
// or nullptr. The Haswell entries are also libitm's htm_available() list.
const char* erratum_verdict(unsigned model, unsigned stepping) noexcept {
  switch (model) {
    case 0x3f:
      if (stepping >= 4) return nullptr;  // Xeon E7 v3 from stepping 4 has working TSX
      [[fallthrough]];
    case 0x3c:
    case 0x45:
    case 0x46:
      return "Haswell TSX erratum (HSW136): RTM refused, as glibc and libitm refuse it";
    case 0x4e:
    case 0x5e:
      return "Skylake client: TSX withdrawn by Intel's 2021 microcode, RTM refused as glibc does";
    case 0x8e:
    case 0x9e:
      if (stepping > 0xc) return nullptr;
      return "Kaby/Coffee Lake client up to stepping 0xc: TSX withdrawn by Intel's 2021 "
             "microcode, RTM refused as glibc does";
    case 0x55:
      if (stepping > 5) return nullptr;  // Cascade Lake (6, 7) and Cooper Lake (0xb) keep TSX
      return "Skylake-SP up to stepping 5: TSX withdrawn by Intel's 2021 microcode, RTM "
             "refused as glibc does";
    default:
      return nullptr;
  }
}

std::string printable(const char* text) {
  std::string out;
  std::size_t n = 0;
  for (const char* p = text; *p != '\0'; ++p, ++n) {
    if (n == 64) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

probe_result run_probe() noexcept {
  probe_result p;
  p.ran = true;
  constexpr unsigned max_attempts = 16;
  while (p.attempts < max_attempts && p.commits == 0) {
    ++p.attempts;
    const std::uint32_t s = detail::rtm::begin();
    if (s == status::started_value) {
      detail::rtm::end();
      ++p.commits;
    } else {
      p.last_abort_status = s;
    }
  }
  return p;
}

}  // namespace

cpu_features decode_cpuid(const cpuid_leaves& l) noexcept {
  cpu_features f;
  std::memcpy(f.vendor.data() + 0, &l.vendor_ebx, 4);
  std::memcpy(f.vendor.data() + 4, &l.vendor_edx, 4);
  std::memcpy(f.vendor.data() + 8, &l.vendor_ecx, 4);
  f.vendor[12] = '\0';
  if (l.max_basic_leaf >= 1) {
    const std::uint32_t a = l.leaf1_eax;
    const unsigned base_family = (a >> 8) & 0xf;
    const unsigned base_model = (a >> 4) & 0xf;
    f.stepping = a & 0xf;
    f.family = base_family == 0xf ? base_family + ((a >> 20) & 0xff) : base_family;
    f.model = base_family == 0x6 || base_family == 0xf ? (((a >> 16) & 0xf) << 4) + base_model
                                                       : base_model;
  }
  if (l.max_basic_leaf >= 7) {
    f.rtm = (l.leaf7_ebx & bit(11)) != 0;
    f.hle = (l.leaf7_ebx & bit(4)) != 0;
    f.rtm_always_abort = (l.leaf7_edx & bit(11)) != 0;
    f.tsx_force_abort = (l.leaf7_edx & bit(13)) != 0;
  }
  const char* erratum = nullptr;
  if (f.vendor_name() == "GenuineIntel" && f.family == 6)
    erratum = erratum_verdict(f.model, f.stepping);
  f.erratum_model = erratum != nullptr;

  if (!f.rtm) {
    f.verdict = l.max_basic_leaf < 7 ? "RTM absent (no CPUID leaf 7)"
                                     : "RTM absent (CPUID.(7,0):EBX[11] clear)";
  } else if (f.rtm_always_abort) {
    f.verdict = "RTM_ALWAYS_ABORT (CPUID.(7,0):EDX[11]): microcode aborts every transaction";
  } else if (erratum != nullptr) {
    f.verdict = erratum;
  } else if (f.tsx_force_abort) {
    f.verdict = "RTM present; TSX_FORCE_ABORT MSR exists (CPUID.(7,0):EDX[13]): the probe decides";
  } else {
    f.verdict = "RTM present";
  }
  f.rtm_decoded_usable = f.rtm && !f.rtm_always_abort && !f.erratum_model;
  return f;
}

std::string_view to_string(backend b) noexcept {
  switch (b) {
    case backend::unresolved:
      return "unresolved";
    case backend::off:
      return "off";
    case backend::rtm:
      return "rtm";
    case backend::policy_emulation:
      return "policy_emulation";
  }
  return "invalid";
}

std::string_view to_string(setting s) noexcept {
  switch (s) {
    case setting::auto_detect:
      return "auto";
    case setting::off:
      return "off";
    case setting::on:
      return "on";
    case setting::emulate:
      return "emulate";
  }
  return "invalid";
}

parsed_setting parse_setting(const char* value) {
  parsed_setting p;
  if (value == nullptr) return p;
  p.present = true;
  p.text = value;
  const std::string_view v(value);
  if (v.empty() || v == "auto") {
    p.value = setting::auto_detect;
  } else if (v == "off") {
    p.value = setting::off;
  } else if (v == "on") {
    p.value = setting::on;
  } else if (v == "emulate") {
    p.value = setting::emulate;
  } else {
    p.valid = false;
    p.value = setting::off;
    p.error = "HWSYNC_HTM=\"" + printable(value) +
              "\" is not a setting: expected one of off, on, emulate, auto (or unset)";
  }
  return p;
}

bool probe_wanted(const cpu_features& cpu, const parsed_setting& s) noexcept {
  return s.valid && cpu.rtm_decoded_usable &&
         (s.value == setting::auto_detect || s.value == setting::on);
}

backend_choice choose_backend(const cpu_features& cpu, const parsed_setting& s,
                              const probe_result& probe) {
  if (!s.valid) return {backend::off, "hwsync: " + s.error + "; lock elision is off"};
  switch (s.value) {
    case setting::off:
      return {backend::off, ""};
    case setting::emulate:
      return {backend::policy_emulation, ""};
    case setting::auto_detect:
    case setting::on:
      break;
  }
  if (cpu.rtm_decoded_usable && probe.ran && probe.commits > 0) return {backend::rtm, ""};
  if (s.value == setting::auto_detect) return {backend::off, ""};
  std::string why;
  if (!cpu.rtm_decoded_usable) {
    why = std::string(cpu.verdict);
  } else if (!probe.ran) {
    why = "the probe transaction did not run";
  } else {
    why = "all " + std::to_string(probe.attempts) + " probe transactions aborted (last " +
          status(probe.last_abort_status).describe() + ")";
  }
  return {backend::off,
          "hwsync: HWSYNC_HTM=on, but RTM is not usable here: " + why + "; lock elision stays off"};
}

std::string capability_report::describe() const {
  std::string out(cpu.vendor_name().empty() ? "unknown vendor" : cpu.vendor_name());
  out += " family " + hex(cpu.family) + " model " + hex(cpu.model) + " stepping " +
         std::to_string(cpu.stepping) + ": " + std::string(cpu.verdict);
  if (!requested.present) {
    out += "; HWSYNC_HTM unset";
  } else {
    out += "; HWSYNC_HTM=\"" + printable(requested.text.c_str()) + "\"";
    if (!requested.valid) out += " (invalid)";
  }
  if (probe.ran) {
    out += "; probe " + std::to_string(probe.commits) + "/" + std::to_string(probe.attempts) +
           " committed";
  } else {
    out += "; probe not run";
  }
  out += "; backend " + std::string(to_string(chosen));
  return out;
}

const capability_report& capabilities() {
  static const capability_report report = [] {
    capability_report r;
    r.leaves = read_cpuid();
    r.cpu = decode_cpuid(r.leaves);
    r.requested = parse_setting(std::getenv("HWSYNC_HTM"));
    if (probe_wanted(r.cpu, r.requested)) r.probe = run_probe();
    r.rtm_usable = r.cpu.rtm_decoded_usable && r.probe.commits > 0;
    backend_choice c = choose_backend(r.cpu, r.requested, r.probe);
    r.chosen = c.chosen;
    r.note = std::move(c.note);
    if (!r.note.empty()) std::fprintf(stderr, "%s\n", r.note.c_str());
    return r;
  }();
  return report;
}

backend detail::resolve_backend() {
  const backend chosen = capabilities().chosen;
  backend expected = backend::unresolved;
  current_backend.compare_exchange_strong(expected, chosen, std::memory_order_relaxed);
  return current_backend.load(std::memory_order_relaxed);
}

backend active_backend() noexcept {
  const backend b = detail::current_backend.load(std::memory_order_relaxed);
  return b != backend::unresolved ? b : detail::resolve_backend();
}

}  // namespace hwsync::htm
