// Detection: CPUID decoding from recorded leaves, the HWSYNC_HTM setting,
// the choice of backend, and — on this machine, which has no RTM — proof
// that nothing executes XBEGIN (a child process would die of SIGILL).
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "hwsync/htm.hpp"
#include "support/child_process.hpp"

namespace htm = hwsync::htm;

namespace {

constexpr std::uint32_t rtm_bit = 1u << 11;               // CPUID.(7,0):EBX
constexpr std::uint32_t hle_bit = 1u << 4;                // CPUID.(7,0):EBX
constexpr std::uint32_t rtm_always_abort_bit = 1u << 11;  // CPUID.(7,0):EDX
constexpr std::uint32_t tsx_force_abort_bit = 1u << 13;   // CPUID.(7,0):EDX
// Some leaf-7 EBX bits these CPUs also report (FSGSBASE, BMI1, AVX2, SMEP,
// BMI2, ERMS), so the TSX bits are read among neighbours, not alone.
constexpr std::uint32_t common_ebx =
    (1u << 0) | (1u << 3) | (1u << 5) | (1u << 7) | (1u << 8) | (1u << 9);

// "GenuineIntel" and "AuthenticAMD" as CPUID.0 returns them in EBX, EDX, ECX.
htm::cpuid_leaves intel(std::uint32_t leaf1_eax, std::uint32_t ebx7, std::uint32_t edx7) {
  return {0x1b, 0x756e6547, 0x49656e69, 0x6c65746e, leaf1_eax, ebx7, edx7};
}

struct cpu_case {
  const char* name;
  htm::cpuid_leaves leaves;
  const char* vendor;
  unsigned family, model, stepping;
  bool rtm, always_abort, force_abort, erratum, usable;
};

// Family/model/stepping signatures are the published CPUID.1:EAX values of
// these parts; the AMD row is this project's build machine, read with CPUID
// (AMD EPYC, Zen 3, a KVM guest): leaf 0 0xd "AuthenticAMD", leaf 1
// 0x00a00f11, leaf 7 EBX 0x219c07ab EDX 0x10.
const std::vector<cpu_case>& cases() {
  static const std::vector<cpu_case> c = {
      {"Haswell i7-4770 with TSX enumerated (erratum HSW136)",
       intel(0x000306C3, common_ebx | hle_bit | rtm_bit, 0), "GenuineIntel", 6, 0x3c, 3, true,
       false, false, true, false},
      {"Haswell-EX Xeon E7 v3 stepping 4 (TSX fixed)",
       intel(0x000306F4, common_ebx | hle_bit | rtm_bit, 0), "GenuineIntel", 6, 0x3f, 4, true,
       false, false, false, true},
      {"Haswell-EP stepping 2 (erratum)", intel(0x000306F2, common_ebx | hle_bit | rtm_bit, 0),
       "GenuineIntel", 6, 0x3f, 2, true, false, false, true, false},
      {"Skylake client i7-6700K with TSX enumerated (deprecated, refused as glibc does)",
       intel(0x000506E3, common_ebx | hle_bit | rtm_bit, 0), "GenuineIntel", 6, 0x5e, 3, true,
       false, false, true, false},
      {"Skylake-SP Xeon stepping 4 with TSX enumerated (on glibc's list)",
       intel(0x00050654, common_ebx | hle_bit | rtm_bit, 0), "GenuineIntel", 6, 0x55, 4, true,
       false, false, true, false},
      {"Cascade Lake (Skylake server core) stepping 7 with TSX",
       intel(0x00050657, common_ebx | hle_bit | rtm_bit, 0), "GenuineIntel", 6, 0x55, 7, true,
       false, false, false, true},
      {"Coffee Lake i9-9900K stepping 0xd with TSX_FORCE_ABORT",
       intel(0x000906ED, common_ebx | hle_bit | rtm_bit, tsx_force_abort_bit), "GenuineIntel", 6,
       0x9e, 0xd, true, false, true, false, true},
      {"Ice Lake-SP with RTM_ALWAYS_ABORT",
       intel(0x000606A6, common_ebx | rtm_bit, rtm_always_abort_bit), "GenuineIntel", 6, 0x6a, 6,
       true, true, false, false, false},
      {"Sapphire Rapids with TSX off (RTM and HLE not enumerated)",
       intel(0x000806F8, common_ebx, 0), "GenuineIntel", 6, 0x8f, 8, false, false, false, false,
       false},
      {"AMD EPYC Zen 3 (this machine)",
       {0xd, 0x68747541, 0x69746e65, 0x444d4163, 0x00a00f11, 0x219c07ab, 0x10},
       "AuthenticAMD",
       0x19,
       0x01,
       1,
       false,
       false,
       false,
       false,
       false},
      {"CPU without leaf 7 (leaf-7 fields ignored)",
       {0x5, 0x756e6547, 0x49656e69, 0x6c65746e, 0x000006FB, 0xffffffff, 0xffffffff},
       "GenuineIntel",
       6,
       0x0f,
       0xb,
       false,
       false,
       false,
       false,
       false},
  };
  return c;
}

TEST(HtmDetection, DecodesRecordedCpuidTable) {
  for (const cpu_case& c : cases()) {
    SCOPED_TRACE(c.name);
    const htm::cpu_features f = htm::decode_cpuid(c.leaves);
    EXPECT_EQ(f.vendor_name(), c.vendor);
    EXPECT_EQ(f.family, c.family);
    EXPECT_EQ(f.model, c.model);
    EXPECT_EQ(f.stepping, c.stepping);
    EXPECT_EQ(f.rtm, c.rtm);
    EXPECT_EQ(f.rtm_always_abort, c.always_abort);
    EXPECT_EQ(f.tsx_force_abort, c.force_abort);
    EXPECT_EQ(f.erratum_model, c.erratum);
    EXPECT_EQ(f.rtm_decoded_usable, c.usable);
    EXPECT_FALSE(f.verdict.empty());
  }
}

TEST(HtmDetection, VerdictNamesTheReason) {
  const auto& c = cases();
  EXPECT_NE(htm::decode_cpuid(c[0].leaves).verdict.find("Haswell"), std::string_view::npos);
  EXPECT_NE(htm::decode_cpuid(c[7].leaves).verdict.find("RTM_ALWAYS_ABORT"),
            std::string_view::npos);
  EXPECT_NE(htm::decode_cpuid(c[8].leaves).verdict.find("EBX[11] clear"), std::string_view::npos);
  EXPECT_NE(htm::decode_cpuid(c[6].leaves).verdict.find("probe decides"), std::string_view::npos);
}

TEST(HtmSetting, ParsesEveryValidValue) {
  EXPECT_EQ(htm::parse_setting(nullptr).value, htm::setting::auto_detect);
  EXPECT_FALSE(htm::parse_setting(nullptr).present);
  EXPECT_EQ(htm::parse_setting("").value, htm::setting::auto_detect);
  EXPECT_EQ(htm::parse_setting("auto").value, htm::setting::auto_detect);
  EXPECT_EQ(htm::parse_setting("off").value, htm::setting::off);
  EXPECT_EQ(htm::parse_setting("on").value, htm::setting::on);
  EXPECT_EQ(htm::parse_setting("emulate").value, htm::setting::emulate);
  for (const char* v : {"", "auto", "off", "on", "emulate"}) {
    const auto p = htm::parse_setting(v);
    EXPECT_TRUE(p.valid) << v;
    EXPECT_TRUE(p.present) << v;
    EXPECT_TRUE(p.error.empty()) << v;
  }
}

TEST(HtmSetting, BadValueSaysWhatWasExpectedAndWhatArrived) {
  for (const char* v : {"yes", "ON", "emulated", " off", "1"}) {
    const auto p = htm::parse_setting(v);
    EXPECT_FALSE(p.valid) << v;
    EXPECT_EQ(p.value, htm::setting::off) << v;
    EXPECT_NE(p.error.find(std::string("\"") + v + "\""), std::string::npos) << p.error;
    EXPECT_NE(p.error.find("expected one of off, on, emulate"), std::string::npos) << p.error;
  }
  const auto p = htm::parse_setting("bad\x01value");
  EXPECT_NE(p.error.find("bad\\x01value"), std::string::npos) << p.error;
}

TEST(HtmBackendChoice, FollowsCpuSettingAndProbe) {
  const auto usable = htm::decode_cpuid(cases()[5].leaves);   // Cascade Lake
  const auto refused = htm::decode_cpuid(cases()[0].leaves);  // Haswell erratum
  const auto absent = htm::decode_cpuid(cases()[9].leaves);   // Zen 3
  const htm::probe_result committed{true, 1, 1, 0};
  const htm::probe_result all_aborted{true, 16, 0, 0};
  const htm::probe_result not_run{};
  const auto s = [](const char* v) { return htm::parse_setting(v); };

  EXPECT_TRUE(htm::probe_wanted(usable, s(nullptr)));
  EXPECT_TRUE(htm::probe_wanted(usable, s("on")));
  EXPECT_FALSE(htm::probe_wanted(usable, s("off")));
  EXPECT_FALSE(htm::probe_wanted(usable, s("emulate")));
  EXPECT_FALSE(htm::probe_wanted(usable, s("nonsense")));
  EXPECT_FALSE(htm::probe_wanted(refused, s(nullptr)));
  EXPECT_FALSE(htm::probe_wanted(absent, s("on")));

  EXPECT_EQ(htm::choose_backend(usable, s(nullptr), committed).chosen, htm::backend::rtm);
  EXPECT_EQ(htm::choose_backend(usable, s("on"), committed).chosen, htm::backend::rtm);
  EXPECT_EQ(htm::choose_backend(usable, s(nullptr), all_aborted).chosen, htm::backend::off);
  EXPECT_TRUE(htm::choose_backend(usable, s(nullptr), all_aborted).note.empty());
  EXPECT_EQ(htm::choose_backend(usable, s("off"), committed).chosen, htm::backend::off);
  EXPECT_EQ(htm::choose_backend(absent, s("emulate"), not_run).chosen,
            htm::backend::policy_emulation);
  EXPECT_EQ(htm::choose_backend(absent, s(nullptr), not_run).chosen, htm::backend::off);

  const auto on_absent = htm::choose_backend(absent, s("on"), not_run);
  EXPECT_EQ(on_absent.chosen, htm::backend::off);
  EXPECT_NE(on_absent.note.find("HWSYNC_HTM=on, but RTM is not usable here"), std::string::npos);
  EXPECT_NE(on_absent.note.find("EBX[11] clear"), std::string::npos) << on_absent.note;
  const auto on_aborting = htm::choose_backend(usable, s("on"), all_aborted);
  EXPECT_NE(on_aborting.note.find("all 16 probe transactions aborted"), std::string::npos)
      << on_aborting.note;
  const auto bad = htm::choose_backend(usable, s("maybe"), committed);
  EXPECT_EQ(bad.chosen, htm::backend::off);
  EXPECT_NE(bad.note.find("\"maybe\""), std::string::npos) << bad.note;
}

// ---------------------------------------------------------------------------
// This machine

bool cpu_has_rtm() {
  return htm::decode_cpuid(htm::read_cpuid()).rtm;
}

TEST(HtmThisMachine, ReportsRtmUnusableAndNeverProbes) {
  const auto& r = htm::capabilities();
  if (r.cpu.rtm) GTEST_SKIP() << "this CPU enumerates RTM: " << r.describe();
  EXPECT_FALSE(r.rtm_usable) << r.describe();
  EXPECT_FALSE(r.probe.ran) << "the probe would have executed XBEGIN: " << r.describe();
  EXPECT_NE(htm::active_backend(), htm::backend::rtm);
  // Cached: the same object every time.
  EXPECT_EQ(&htm::capabilities(), &r);
}

std::string child() {
  const std::string p = hwsync::test::env_path("HWSYNC_HTM_CHILD");
  if (p.empty()) ADD_FAILURE() << "HWSYNC_HTM_CHILD is not set (tests/CMakeLists.txt sets it)";
  return p;
}

// Runs the child through env(1) with HWSYNC_HTM unset or set to `value`.
hwsync::test::child_result run_with(const char* value, const char* action) {
  std::vector<std::string> argv = {"/usr/bin/env"};
  if (value == nullptr) {
    argv.insert(argv.end(), {"-u", "HWSYNC_HTM"});
  } else {
    argv.push_back(std::string("HWSYNC_HTM=") + value);
  }
  argv.insert(argv.end(), {child(), action});
  return hwsync::test::run_child(argv);
}

TEST(HtmThisMachine, NothingExecutesXbeginUnderAnySetting) {
  if (cpu_has_rtm()) GTEST_SKIP() << "this CPU enumerates RTM";
  for (const char* v : {static_cast<const char*>(nullptr), "", "off", "on", "auto", "bogus"}) {
    SCOPED_TRACE(v == nullptr ? "HWSYNC_HTM unset" : (std::string("HWSYNC_HTM=") + v).c_str());
    const auto r = run_with(v, "elide");
    EXPECT_EQ(r.signal, 0) << "the child died of signal " << r.signal
                           << (r.signal == SIGILL ? " (SIGILL: an RTM instruction ran)" : "")
                           << "\n"
                           << r.output;
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("ok backend=off"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("begin=unavailable"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("probe_ran=0"), std::string::npos) << r.output;
  }
}

// The control that gives the test above its meaning: a child that does
// execute XBEGIN on this machine dies of SIGILL.
TEST(HtmThisMachine, RawXbeginDiesOfSigillHere) {
  if (cpu_has_rtm()) GTEST_SKIP() << "this CPU enumerates RTM: XBEGIN is legal here";
  const auto r = run_with(nullptr, "raw_xbegin");
  EXPECT_EQ(r.signal, SIGILL) << r.output;
  EXPECT_NE(r.output.find("executing XBEGIN"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("survived"), std::string::npos) << r.output;
}

TEST(HtmEnvironment, EmulateSelectsThePolicyEmulation) {
  const auto r = run_with("emulate", "elide");
  EXPECT_EQ(r.signal, 0) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ok backend=policy_emulation"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("probe_ran=0"), std::string::npos) << r.output;
}

TEST(HtmEnvironment, BadValueIsReportedOnceAndElisionIsOff) {
  const auto r = run_with("enable", "report");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string msg =
      "hwsync: HWSYNC_HTM=\"enable\" is not a setting: expected one of off, on, emulate, auto "
      "(or unset); lock elision is off";
  EXPECT_NE(r.output.find(msg), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(msg), r.output.rfind(msg)) << "printed more than once:\n" << r.output;
  EXPECT_NE(r.output.find("backend=off"), std::string::npos) << r.output;
}

TEST(HtmEnvironment, OnWithoutRtmSaysWhy) {
  if (cpu_has_rtm()) GTEST_SKIP() << "this CPU enumerates RTM";
  const auto r = run_with("on", "report");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("hwsync: HWSYNC_HTM=on, but RTM is not usable here: RTM absent"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("backend=off probe_ran=0"), std::string::npos) << r.output;
}

TEST(HtmEnvironment, OffAndUnsetSayNothing) {
  for (const char* v : {static_cast<const char*>(nullptr), "off"}) {
    const auto r = run_with(v, "report");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("hwsync: "), std::string::npos) << r.output;
  }
}

}  // namespace
