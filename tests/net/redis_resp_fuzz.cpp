// libFuzzer target for the RESP2 reply decoder (net/src/redis/resp.hpp).
// Properties checked on every input, beyond "no crash, no sanitizer report":
//   1. Chunking does not matter: the input fed in pieces of sizes drawn from
//      the input itself decodes to the same replies, and fails (or not) the
//      same way, as the input fed at once.
//   2. A failure is a net::error with code protocol_error and a message;
//      nothing else escapes.
//   3. Every decoded reply survives encode_reply() -> decode unchanged.
// CTest runs it for a bounded number of executions (redis_resp_fuzz_smoke);
// run it by hand for longer: build/redis-tsan/tests/redis_resp_fuzz -max_total_time=600
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "hwsync/net/error.hpp"
#include "redis/resp.hpp"

namespace {

using hwsync::net::redis::reply;
using hwsync::net::redis::reply_decoder;

struct outcome {
  std::vector<reply> replies;
  bool failed = false;
};

[[noreturn]] void property_broken(const char* what) {
  std::fprintf(stderr, "redis_resp_fuzz: %s\n", what);
  std::abort();
}

template <class NextChunk>
outcome decode(std::string_view input, NextChunk next_chunk) {
  outcome o;
  reply_decoder d;
  try {
    std::size_t at = 0;
    while (at < input.size()) {
      const std::size_t n = next_chunk(input.size() - at);
      d.feed(input.substr(at, n));
      at += n;
      reply r;
      while (d.next(r)) o.replies.push_back(std::move(r));
    }
  } catch (const hwsync::net::error& e) {
    if (e.code() != hwsync::net::errc::protocol_error)
      property_broken("error code is not protocol_error");
    if (std::string_view(e.what()).empty()) property_broken("protocol_error without a message");
    o.failed = true;
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  // The first byte seeds the chunk sizes; the rest is what the server sent.
  std::uint32_t seed = data[0] * 2654435761u + 1;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  const outcome whole = decode(input, [](std::size_t left) { return left; });
  const outcome pieces = decode(input, [&seed](std::size_t left) {
    seed = seed * 1103515245u + 12345u;
    const std::size_t n = 1 + (seed >> 16) % 7;
    return n < left ? n : left;
  });
  if (whole.failed != pieces.failed) property_broken("chunking changed whether decoding failed");
  if (whole.replies != pieces.replies) property_broken("chunking changed the decoded replies");

  for (const reply& r : whole.replies) {
    const outcome again =
        decode(hwsync::net::redis::encode_reply(r), [](std::size_t left) { return left; });
    if (again.failed || again.replies.size() != 1 || !(again.replies[0] == r)) {
      property_broken("a decoded reply does not survive encode -> decode");
    }
  }
  return 0;
}
