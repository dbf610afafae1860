// tests/net/etcd_suite.hpp — what the etcd recipe tests share: one
// single-member etcd for the whole suite (started once, stopped at its
// end), and a count of the keys under a prefix.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hwsync/net/etcd_client.hpp"
#include "support/etcd_server.hpp"

namespace hwsync::test {

class single_etcd_suite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new etcd_cluster(1); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static std::vector<std::string> endpoints() { return {cluster_->endpoint(0)}; }
  static etcd_cluster& cluster() { return *cluster_; }

 private:
  static inline etcd_cluster* cluster_ = nullptr;
};

inline std::int64_t keys_under(net::etcd::client& c, const std::string& prefix) {
  return c.get(prefix, {.range_end = net::etcd::prefix_end(prefix), .count_only = true}).count;
}

}  // namespace hwsync::test
