// A participant process for the election / semaphore / barrier tests
// (etcd_election_test.cpp, etcd_semaphore_test.cpp run it). ENDPOINTS is
// "host:port[,host:port...]"; TTL_S the session's TTL in seconds.
//   lead ENDPOINTS PREFIX VALUE TTL_S
//                  campaigns, prints "leader <token>", waits for a line on
//                  stdin, resigns, prints "resigned".
//   campaign ENDPOINTS PREFIX VALUE TTL_S
//                  prints "campaigning", campaigns (blocking), prints
//                  "campaign=won <token>" or "campaign=<errc name>".
//   permit ENDPOINTS PREFIX PERMITS TTL_S
//                  acquires a permit, prints "permit <token>", waits for a
//                  line on stdin, releases, prints "released".
//   enter ENDPOINTS PREFIX COUNT TTL_S
//                  enters the double barrier, prints "entered", waits for a
//                  line on stdin.
// Exits 2 with a message on bad arguments, 1 on an unexpected error.
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "hwsync/net/etcd_client.hpp"
#include "hwsync/net/etcd_double_barrier.hpp"
#include "hwsync/net/etcd_election.hpp"
#include "hwsync/net/etcd_semaphore.hpp"
#include "hwsync/net/etcd_session.hpp"

namespace {

namespace etcd = hwsync::net::etcd;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(part);
  return out;
}

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void wait_for_line() {
  std::string line;
  std::getline(std::cin, line);
}

int run(const std::string& mode, const std::string& endpoints, const std::string& prefix,
        const std::string& arg, int ttl_s) {
  etcd::client c(split(endpoints));
  etcd::session s(c, std::chrono::seconds(ttl_s));
  if (mode == "lead") {
    etcd::election e(s, prefix);
    e.campaign(arg);
    say("leader " + std::to_string(e.term()->create_revision));
    wait_for_line();
    e.resign();
    say("resigned");
    return 0;
  }
  if (mode == "campaign") {
    etcd::election e(s, prefix);
    say("campaigning");
    try {
      e.campaign(arg);
      say("campaign=won " + std::to_string(e.term()->create_revision));
    } catch (const hwsync::net::error& err) {
      say(std::string("campaign=") + hwsync::net::to_string(err.code()));
      std::fprintf(stderr, "%s\n", err.what());
    }
    return 0;
  }
  if (mode == "permit") {
    etcd::semaphore sem(s, prefix, std::stoll(arg));
    sem.acquire();
    say("permit " + std::to_string(sem.token()));
    wait_for_line();
    sem.release();
    say("released");
    return 0;
  }
  if (mode == "enter") {
    etcd::double_barrier b(s, prefix, std::stoll(arg));
    b.enter();
    say("entered");
    wait_for_line();
    return 0;
  }
  std::fprintf(stderr, "etcd_recipe_child: expected a mode lead|campaign|permit|enter, got '%s'\n",
               mode.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr,
                 "usage: etcd_recipe_child lead|campaign|permit|enter ENDPOINTS PREFIX ARG "
                 "TTL_S (got %d arguments)\n",
                 argc - 1);
    return 2;
  }
  try {
    return run(argv[1], argv[2], argv[3], argv[4], std::stoi(argv[5]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "etcd_recipe_child: %s\n", e.what());
    return 1;
  }
}
