// hwsync/htm/capabilities.hpp — whether this process may use Intel RTM, and
// which transactional backend it runs: detection, the HWSYNC_HTM override,
// and the one-time probe.
//
// Contract
//   capabilities() decides once per process, on first use, and caches the
//   answer (thread-safe static initialization): CPUID is a VM exit under a
//   hypervisor, several µs, so it never runs on a lock's path. Later calls
//   are one load of the cached report.
//
//   The decision, in order:
//   1. CPUID, decoded by the pure function decode_cpuid() so that tests feed
//      recorded leaves of other CPUs:
//        RTM              CPUID.(EAX=7,ECX=0):EBX[11]
//        HLE              CPUID.(7,0):EBX[4] (reported only)
//        RTM_ALWAYS_ABORT CPUID.(7,0):EDX[11]: microcode makes every
//                         transaction abort; RTM is not usable
//        TSX_FORCE_ABORT  CPUID.(7,0):EDX[13]: the TSX_FORCE_ABORT MSR
//                         exists (Skylake-era microcode), so the kernel may
//                         be forcing aborts; reported, and left to the probe
//      and the Intel family-6 models on which glibc refuses RTM (the TSX
//      erratum list in sysdeps/x86/cpu-features.c; libitm's htm_available()
//      refuses the Haswell part of it): Haswell 0x3c, 0x45, 0x46 and 0x3f
//      below stepping 4; Skylake client 0x4e, 0x5e; Kaby/Coffee Lake 0x8e,
//      0x9e up to stepping 0xc; Skylake-SP 0x55 up to stepping 5.
//   2. HWSYNC_HTM (read once, with the first decision):
//        unset or ""  auto: RTM where step 1 and the probe say so, else off
//        off          never elide, never begin a hardware transaction
//        on           like auto, but says on stderr (once) when RTM is not
//                     usable and why; elision then stays off
//        emulate      the policy emulation backend (hwsync/htm/emulation.hpp):
//                     tests the retry/fallback policy, not the hardware
//      Any other value is a configuration error: one message on stderr that
//      says what was expected and what arrived, and the backend is off. Off,
//      not auto: a mistyped switch whose usual purpose is to turn TSX off
//      must not turn it on.
//   3. The probe: only when step 1 says RTM is usable and the setting is auto
//      or on, up to 16 empty transactions; one commit makes RTM usable
//      (RTM_ALWAYS_ABORT-like microcode, a TSX_FORCE_ABORT in force or a
//      hypervisor that hides TSX make them all abort).
//   XBEGIN is never executed unless step 1 said yes: on this project's AMD
//   machines it raises SIGILL (tests/htm prove nothing executes it).
//
//   Not x86-64: the CPUID leaves read as zeros, RTM is never usable, and the
//   emulation backend still works.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace hwsync::htm {

// The raw CPUID values detection reads, as a CPU reports them (or as a test
// records them for another CPU).
struct cpuid_leaves {
  std::uint32_t max_basic_leaf = 0;  // CPUID.0:EAX
  // CPUID.0:EBX, EDX, ECX: the vendor string in that order ("Genu" "ineI" "ntel").
  std::uint32_t vendor_ebx = 0, vendor_edx = 0, vendor_ecx = 0;
  std::uint32_t leaf1_eax = 0;  // CPUID.1:EAX: stepping, model, family
  std::uint32_t leaf7_ebx = 0;  // CPUID.(7,0):EBX (0 when max_basic_leaf < 7)
  std::uint32_t leaf7_edx = 0;  // CPUID.(7,0):EDX (0 when max_basic_leaf < 7)
};

// Reads this CPU's leaves (zeros off x86). Costs a few CPUID instructions:
// call it once, as capabilities() does.
cpuid_leaves read_cpuid() noexcept;

// What CPUID says about TSX, decoded without touching the hardware.
struct cpu_features {
  std::array<char, 13> vendor{};  // NUL-terminated, e.g. "GenuineIntel"
  unsigned family = 0;            // with the extended family added, as Intel's SDM defines it
  unsigned model = 0;             // with the extended model added (families 6 and 15)
  unsigned stepping = 0;
  bool rtm = false;               // EBX[11]
  bool hle = false;               // EBX[4]
  bool rtm_always_abort = false;  // EDX[11]
  bool tsx_force_abort = false;   // EDX[13]
  bool erratum_model = false;     // on the refusal list above
  // rtm && !rtm_always_abort && !erratum_model: worth the probe.
  bool rtm_decoded_usable = false;
  // Why RTM is or is not usable by CPUID alone, in one phrase.
  std::string_view verdict;

  std::string_view vendor_name() const noexcept { return vendor.data(); }
};

cpu_features decode_cpuid(const cpuid_leaves& leaves) noexcept;

// The transactional backend a process runs.
enum class backend : std::uint8_t {
  unresolved = 0,        // capabilities() has not run yet
  off = 1,               // no elision: elided<Lock> is Lock plus one branch
  rtm = 2,               // Intel RTM
  policy_emulation = 3,  // software emulation of RTM's control flow (tests the policy)
};
std::string_view to_string(backend b) noexcept;

// The HWSYNC_HTM setting, parsed by a pure function.
enum class setting : std::uint8_t { auto_detect, off, on, emulate };
std::string_view to_string(setting s) noexcept;

struct parsed_setting {
  setting value = setting::auto_detect;
  bool present = false;  // the variable was set
  std::string text;      // its value as it arrived (when present)
  bool valid = true;
  std::string error;  // when !valid: what was expected and what arrived
};
// `value` is the variable's text, or nullptr when it is unset.
parsed_setting parse_setting(const char* value);

// The result of the one-time probe.
struct probe_result {
  bool ran = false;
  unsigned attempts = 0;
  unsigned commits = 0;
  std::uint32_t last_abort_status = 0;  // raw EAX of the last abort (0 if none)
};

// The backend chosen from the decoded CPU, the setting and the probe (pure).
// `note` says why, when the user asked for something this machine cannot do
// or the setting was invalid; empty otherwise.
struct backend_choice {
  backend chosen = backend::off;
  std::string note;
};
backend_choice choose_backend(const cpu_features& cpu, const parsed_setting& s,
                              const probe_result& probe);
// Whether choose_backend() would need the probe for this CPU and setting.
bool probe_wanted(const cpu_features& cpu, const parsed_setting& s) noexcept;

struct capability_report {
  cpuid_leaves leaves;
  cpu_features cpu;
  parsed_setting requested;  // HWSYNC_HTM as read at the decision
  probe_result probe;
  bool rtm_usable = false;  // decoded usable and the probe committed
  backend chosen = backend::off;
  std::string note;  // printed once on stderr when not empty

  // One line for logs and benchmark contexts, e.g.
  // "AuthenticAMD family 0x19 model 0x1 stepping 1: RTM absent (CPUID.(7,0):EBX[11]
  // clear); HWSYNC_HTM unset; backend off; probe not run".
  std::string describe() const;
};

// The report of this process (decided once, cached).
const capability_report& capabilities();

// The backend elided locks and transactions use now: capabilities().chosen,
// or the policy emulation while a test's policy_emulation_scope is alive.
backend active_backend() noexcept;

}  // namespace hwsync::htm
