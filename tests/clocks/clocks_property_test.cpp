// Properties of the logical clocks, checked by rapidcheck on generated
// inputs (a failure prints the shrunk counterexample and the seed to replay
// it with RC_PARAMS="seed=..."):
//   vector_clock: happens-before is a strict partial order; compare agrees
//   with the element-wise definition; merge is commutative, associative,
//   idempotent and an upper bound; encode/decode round-trips.
//   decoder: random, mutated, truncated and extended inputs decode to the
//   canonical clock they encode or throw clock_decode_error.
//   hybrid_logical_clock: strictly monotonic whatever the wall clock does;
//   never behind the wall clock; while the wall clock does not step back,
//   within the maximum offset of it; update rejects exactly the remotes
//   further ahead than the maximum offset.
//   lamport_clock: receive orders after the remote and after every earlier
//   event.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "hwsync/clocks.hpp"

namespace hwsync {
// How rapidcheck prints a counterexample.
inline void showValue(const vector_clock& c, std::ostream& os) {
  os << c.to_string();
}
}  // namespace hwsync

namespace rc {
// Clocks over nodes 0..4 with counters 0..3: small enough that every
// relation (before, after, equal, concurrent) comes up often.
template <>
struct Arbitrary<hwsync::vector_clock> {
  static Gen<hwsync::vector_clock> arbitrary() {
    return gen::map(gen::container<std::vector<std::pair<std::uint32_t, std::uint64_t>>>(gen::pair(
                        gen::inRange<std::uint32_t>(0, 5), gen::inRange<std::uint64_t>(0, 4))),
                    [](const std::vector<std::pair<std::uint32_t, std::uint64_t>>& pairs) {
                      hwsync::vector_clock c;
                      for (const auto& [node, counter] : pairs) {
                        c.merge(hwsync::vector_clock{{node, counter}});
                      }
                      return c;
                    });
  }
};
}  // namespace rc

namespace {

using hwsync::causal_order;
using hwsync::hlc_timestamp;
using hwsync::vector_clock;

constexpr std::int64_t ms = 1'000'000;  // ns

vector_clock merged(vector_clock a, const vector_clock& b) {
  a.merge(b);
  return a;
}

// The definition, over every node either clock mentions.
causal_order oracle(const vector_clock& a, const vector_clock& b) {
  bool le = true, ge = true;
  std::vector<hwsync::node_id> nodes;
  for (const auto& s : a.slots()) nodes.push_back(s.node);
  for (const auto& s : b.slots()) nodes.push_back(s.node);
  for (auto n : nodes) {
    le = le && a.counter(n) <= b.counter(n);
    ge = ge && a.counter(n) >= b.counter(n);
  }
  if (le && ge) return causal_order::equal;
  if (le) return causal_order::before;
  if (ge) return causal_order::after;
  return causal_order::concurrent;
}

RC_GTEST_PROP(VectorClockProperty, CompareAgreesWithTheDefinition,
              (const vector_clock& a, const vector_clock& b)) {
  RC_ASSERT(compare(a, b) == oracle(a, b));
  RC_TAG(hwsync::to_string(compare(a, b)));
}

RC_GTEST_PROP(VectorClockProperty, HappensBeforeIsIrreflexiveAndAsymmetric,
              (const vector_clock& a, const vector_clock& b)) {
  RC_ASSERT(!happened_before(a, a));
  RC_ASSERT(compare(a, a) == causal_order::equal);
  if (happened_before(a, b)) RC_ASSERT(!happened_before(b, a));
  const causal_order ab = compare(a, b);
  const causal_order ba = compare(b, a);
  const causal_order mirror = ab == causal_order::before  ? causal_order::after
                              : ab == causal_order::after ? causal_order::before
                                                          : ab;
  RC_ASSERT(ba == mirror);
  RC_ASSERT((ab == causal_order::equal) == (a == b));
}

RC_GTEST_PROP(VectorClockProperty, HappensBeforeIsTransitive,
              (const vector_clock& a, const vector_clock& x, const vector_clock& y,
               const vector_clock& c)) {
  // A chain a < b < c2 built by the receive rule, and an arbitrary c.
  const auto node = *rc::gen::inRange<std::uint32_t>(0, 5);
  vector_clock b = merged(a, x);
  b.increment(node);
  vector_clock c2 = merged(b, y);
  c2.increment(*rc::gen::inRange<std::uint32_t>(0, 5));
  RC_ASSERT(happened_before(a, b));
  RC_ASSERT(happened_before(b, c2));
  RC_ASSERT(happened_before(a, c2));
  if (happened_before(a, b) && happened_before(b, c)) RC_ASSERT(happened_before(a, c));
  if (happened_before(a, x) && happened_before(x, c)) RC_ASSERT(happened_before(a, c));
}

RC_GTEST_PROP(VectorClockProperty, MergeIsCommutativeAssociativeIdempotent,
              (const vector_clock& a, const vector_clock& b, const vector_clock& c)) {
  RC_ASSERT(merged(a, b) == merged(b, a));
  RC_ASSERT(merged(merged(a, b), c) == merged(a, merged(b, c)));
  RC_ASSERT(merged(a, a) == a);
  const vector_clock m = merged(a, b);
  for (const auto* side : {&a, &b}) {
    const causal_order o = compare(*side, m);
    RC_ASSERT(o == causal_order::before || o == causal_order::equal);
  }
}

RC_GTEST_PROP(VectorClockProperty, EncodingRoundTrips, (const vector_clock& a)) {
  RC_ASSERT(vector_clock::decode(a.encode()) == a);
}

RC_GTEST_PROP(VectorClockProperty, WideClocksRoundTrip,
              (const std::vector<std::pair<std::uint32_t, std::uint64_t>>& pairs)) {
  vector_clock c;
  for (const auto& [node, counter] : pairs) c.merge(vector_clock{{node, counter}});
  RC_ASSERT(vector_clock::decode(c.encode()) == c);
}

// ---------------------------------------------------------------------------
// Decoder robustness

// Decodes `in`; a success must be the canonical encoding of what it returns.
void decode_or_reject(const std::vector<std::uint8_t>& in) {
  try {
    const vector_clock c = vector_clock::decode(in);
    RC_ASSERT(c.encode() == in);
    RC_TAG("decoded");
  } catch (const hwsync::clock_decode_error& e) {
    RC_ASSERT(e.offset() <= in.size());
    RC_ASSERT(std::string(e.what()).find("expected") != std::string::npos);
    RC_TAG("rejected");
  }
}

RC_GTEST_PROP(VectorClockDecoder, RandomBytesDecodeCanonicallyOrThrow,
              (std::vector<std::uint8_t> in)) {
  if (*rc::gen::arbitrary<bool>()) in.insert(in.begin(), vector_clock::format_version);
  decode_or_reject(in);
}

RC_GTEST_PROP(VectorClockDecoder, MutatedEncodingsDecodeCanonicallyOrThrow,
              (const vector_clock& a)) {
  std::vector<std::uint8_t> in = a.encode();
  const auto at = *rc::gen::inRange<std::size_t>(0, in.size());
  in[at] = *rc::gen::arbitrary<std::uint8_t>();
  decode_or_reject(in);
}

RC_GTEST_PROP(VectorClockDecoder, TruncatedOrExtendedEncodingsThrow,
              (const vector_clock& a, const std::vector<std::uint8_t>& extra)) {
  const std::vector<std::uint8_t> full = a.encode();
  const auto n = *rc::gen::inRange<std::size_t>(0, full.size());
  const std::vector<std::uint8_t> prefix(full.begin(),
                                         full.begin() + static_cast<std::ptrdiff_t>(n));
  RC_ASSERT_THROWS_AS(vector_clock::decode(prefix), hwsync::clock_decode_error);
  if (!extra.empty()) {
    std::vector<std::uint8_t> longer = full;
    longer.insert(longer.end(), extra.begin(), extra.end());
    RC_ASSERT_THROWS_AS(vector_clock::decode(longer), hwsync::clock_decode_error);
  }
}

// ---------------------------------------------------------------------------
// hybrid_logical_clock

RC_GTEST_PROP(HlcProperty, MonotonicNeverBehindAndWithinTheMaximumOffset, ()) {
  const int max_ms = *rc::gen::inRange(1, 1000);
  const bool may_step_back = *rc::gen::arbitrary<bool>();
  hwsync::manual_source wall(*rc::gen::inRange<std::int64_t>(0, 1'000'000) * ms);
  hwsync::hybrid_logical_clock c(wall, std::chrono::milliseconds(max_ms));
  // (kind: 0 now, 1 update; wall-clock change in ms; remote's offset from
  // the local wall clock in ms; remote's logical counter)
  const auto events = *rc::gen::container<std::vector<std::tuple<int, int, int, int>>>(
      rc::gen::tuple(rc::gen::inRange(0, 2), rc::gen::inRange(may_step_back ? -300 : 0, 300),
                     rc::gen::inRange(-2 * max_ms, 2 * max_ms + 1), rc::gen::inRange(0, 1000)));
  bool stepped_back = false;
  int rejected = 0;
  hlc_timestamp prev = c.last();
  for (const auto& [kind, delta_ms, offset_ms, logical] : events) {
    wall.advance(std::chrono::milliseconds(delta_ms));
    stepped_back = stepped_back || delta_ms < 0;
    const std::int64_t pt = std::max<std::int64_t>(0, wall.now_ns() / ms);
    hlc_timestamp ts;
    if (kind == 0) {
      ts = c.now();
    } else {
      const hlc_timestamp remote(
          static_cast<std::uint64_t>(std::max<std::int64_t>(0, pt + offset_ms)),
          static_cast<std::uint16_t>(logical));
      if (static_cast<std::int64_t>(remote.physical_ms()) - pt > max_ms) {
        RC_ASSERT_THROWS_AS(c.update(remote), hwsync::max_offset_exceeded);
        RC_ASSERT(c.last() == prev);
        ++rejected;
        continue;
      }
      ts = c.update(remote);
      RC_ASSERT(ts > remote);
    }
    RC_ASSERT(ts > prev);
    RC_ASSERT(static_cast<std::int64_t>(ts.physical_ms()) >= pt);
    if (!stepped_back) RC_ASSERT(static_cast<std::int64_t>(ts.physical_ms()) - pt <= max_ms);
    prev = ts;
  }
  RC_CLASSIFY(rejected > 0, "some remotes rejected");
  RC_CLASSIFY(stepped_back, "wall clock stepped back");
}

// ---------------------------------------------------------------------------
// lamport_clock

RC_GTEST_PROP(LamportProperty, ReceiveOrdersAfterTheRemoteAndTheLocalPast,
              (const std::vector<std::uint32_t>& remotes)) {
  hwsync::lamport_clock c(1);
  hwsync::lamport_timestamp prev = c.now();
  for (std::uint32_t r : remotes) {
    const hwsync::lamport_timestamp remote{r % 3 == 0 ? r : r / 1000, 2};
    const auto ts = r % 2 ? c.receive(remote) : c.tick();
    RC_ASSERT(ts.counter > prev.counter);
    if (r % 2) RC_ASSERT(ts.counter > remote.counter);
    prev = ts;
  }
}

}  // namespace
