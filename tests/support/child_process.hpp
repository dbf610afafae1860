// Runs a program as a child process and collects how it ended and what it
// printed: for tests that expect an abort (debug checks) or a sanitizer
// report, which cannot happen inside the test process itself.
#pragma once

#include <string>
#include <vector>

namespace hwsync::test {

struct child_result {
  int exit_code = -1;  // valid when signal == 0
  int signal = 0;      // the signal that ended the child, or 0
  std::string output;  // stdout and stderr, interleaved
};

// Runs argv[0] with the given arguments (no shell), waits at most
// timeout_seconds (then kills it and reports SIGKILL).
child_result run_child(const std::vector<std::string>& argv, int timeout_seconds = 120);

// The path in environment variable `name`, or an empty string.
std::string env_path(const char* name);

}  // namespace hwsync::test
