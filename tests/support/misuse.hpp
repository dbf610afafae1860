// Debug-check tests: a misuse case (tests/support/misuse_cases.cpp, whose
// path CTest puts in HWSYNC_MISUSE_CASES) runs in a child process and must
// abort with a message that names the primitive, the misuse and the thread.
#pragma once

#include <gtest/gtest.h>

#include <csignal>
#include <string>

#include "support/child_process.hpp"

namespace hwsync::test {

struct misuse_case {
  const char* name;     // the argument misuse_cases takes
  const char* message;  // text the abort message must contain
};

// `primitive`: text every message of the suite must contain (the type's
// name), or null when each case's message names it already.
inline void expect_misuse_aborts(const misuse_case& c, const char* primitive) {
  const std::string program = env_path("HWSYNC_MISUSE_CASES");
  ASSERT_FALSE(program.empty()) << "HWSYNC_MISUSE_CASES is not set (run through ctest)";
  const child_result r = run_child({program, c.name});
  EXPECT_EQ(r.signal, SIGABRT) << r.output;
  if (primitive != nullptr) {
    EXPECT_NE(r.output.find(primitive), std::string::npos) << r.output;
  }
  EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("by thread "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("survived"), std::string::npos) << r.output;
}

// The case's name as the test's name.
inline std::string misuse_case_name(const ::testing::TestParamInfo<misuse_case>& info) {
  return info.param.name;
}

}  // namespace hwsync::test
