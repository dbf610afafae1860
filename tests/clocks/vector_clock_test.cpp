// hwsync::vector_clock: the seed's comparison table, slots, merge, and the
// encoding with every way its decoder must refuse bad bytes.
#include "hwsync/clocks/vector_clock.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

namespace {

using hwsync::causal_order;
using hwsync::vector_clock;
using bytes = std::vector<std::uint8_t>;

// [a, b, c] as the seed writes it: nodes 0, 1, 2.
vector_clock vc(std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  return vector_clock{{0, a}, {1, b}, {2, c}};
}

TEST(VectorClock, TheSeedsComparisonTable) {
  EXPECT_EQ(compare(vc(2, 1, 0), vc(3, 2, 0)), causal_order::before);
  EXPECT_EQ(compare(vc(3, 2, 0), vc(2, 1, 0)), causal_order::after);
  EXPECT_EQ(compare(vc(1, 2, 0), vc(2, 1, 0)), causal_order::concurrent);
  EXPECT_EQ(compare(vc(2, 1, 0), vc(1, 2, 0)), causal_order::concurrent);
  EXPECT_EQ(compare(vc(2, 1, 0), vc(2, 1, 0)), causal_order::equal);
  EXPECT_EQ(compare(vector_clock{}, vector_clock{}), causal_order::equal);
  EXPECT_TRUE(happened_before(vc(2, 1, 0), vc(3, 2, 0)));
  EXPECT_FALSE(happened_before(vc(1, 2, 0), vc(2, 1, 0)));
  EXPECT_FALSE(happened_before(vc(2, 1, 0), vc(2, 1, 0)));
}

TEST(VectorClock, MissingSlotsAreZero) {
  // [1,0,0] vs [1,0,1]: node 2 only on the right.
  EXPECT_EQ(compare(vector_clock{{0, 1}}, vc(1, 0, 1)), causal_order::before);
  EXPECT_EQ(compare(vector_clock{{5, 1}}, vector_clock{{6, 1}}), causal_order::concurrent);
  EXPECT_EQ(vc(1, 0, 2), (vector_clock{{2, 2}, {0, 1}}));  // order of appearance is irrelevant
  EXPECT_EQ(vc(0, 0, 0), vector_clock{});
  EXPECT_EQ(vc(1, 0, 2).size(), 2u);
}

TEST(VectorClock, IncrementGrowsWhenANewNodeAppears) {
  vector_clock c;
  EXPECT_EQ(c.increment(42), 1u);
  EXPECT_EQ(c.increment(42), 2u);
  EXPECT_EQ(c.increment(7), 1u);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.counter(42), 2u);
  EXPECT_EQ(c.counter(7), 1u);
  EXPECT_EQ(c.counter(8), 0u);
  EXPECT_EQ(c.to_string(), "[7:1, 42:2]");
}

TEST(VectorClock, MergeIsTheElementWiseMaximum) {
  vector_clock a = vc(1, 5, 0);
  a.merge(vector_clock{{0, 3}, {2, 1}, {9, 4}});
  EXPECT_EQ(a, (vector_clock{{0, 3}, {1, 5}, {2, 1}, {9, 4}}));
}

TEST(VectorClock, ReceiveRuleOrdersSendBeforeReceive) {
  vector_clock p, q;
  p.increment(0);
  const vector_clock message = [&] {
    p.increment(0);
    return p;
  }();
  q.increment(1);
  q.merge(message);
  q.increment(1);
  EXPECT_EQ(compare(message, q), causal_order::before);
  p.increment(0);  // after the send, unknown to q
  EXPECT_EQ(compare(p, q), causal_order::concurrent);
}

TEST(VectorClock, IncrementAtTheMaximumCounterThrows) {
  const bytes max_counter = {1, 1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  vector_clock c = vector_clock::decode(max_counter);
  EXPECT_EQ(c.counter(3), std::numeric_limits<std::uint64_t>::max());
  EXPECT_THROW(c.increment(3), hwsync::clock_overflow);
  EXPECT_EQ(c.counter(3), std::numeric_limits<std::uint64_t>::max());
}

TEST(VectorClockEncoding, IsCompactAndCanonical) {
  EXPECT_EQ(vector_clock{}.encode(), (bytes{1, 0}));
  // version, 3 slots, (id 0, 2), (delta 1, 1), (delta 299 = 0xab 0x02, 200 = 0xc8 0x01)
  const vector_clock c{{0, 2}, {1, 1}, {300, 200}};
  EXPECT_EQ(c.encode(), (bytes{1, 3, 0, 2, 1, 1, 0xab, 0x02, 0xc8, 0x01}));
  EXPECT_EQ(vector_clock::decode(c.encode()), c);
  const vector_clock big{{0xffffffffu, std::numeric_limits<std::uint64_t>::max()}, {0, 1}};
  EXPECT_EQ(vector_clock::decode(big.encode()), big);
}

// Decoding `in` throws clock_decode_error whose message has `expected`.
void expect_rejected(const bytes& in, const std::string& expected, const std::string& got) {
  try {
    const vector_clock c = vector_clock::decode(in);
    ADD_FAILURE() << "decoded " << c.to_string() << " from bad input";
  } catch (const hwsync::clock_decode_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("expected " + expected), std::string::npos) << msg;
    EXPECT_NE(msg.find(got), std::string::npos) << msg;
    EXPECT_LE(e.offset(), in.size());
  }
}

TEST(VectorClockEncoding, DecoderRejectsBadInput) {
  expect_rejected({}, "the format version byte", "the end of the input (truncated)");
  expect_rejected({2, 0}, "format version 1", "got 2");
  expect_rejected({1}, "the slot count", "truncated");
  expect_rejected({1, 0x80}, "the slot count", "inside a varint (truncated)");
  expect_rejected({1, 1, 0}, "1 slots (at least 2 bytes)", "got 1 bytes (truncated)");
  expect_rejected({1, 1, 0, 0x81}, "a counter", "truncated");
  expect_rejected({1, 0x81, 0x80, 0x04}, "at most 65536 slots", "got a count of 65537");
  expect_rejected({1, 2, 5, 1, 0, 1}, "a node-id delta of at least 1", "ids must increase");
  expect_rejected({1, 1, 5, 0}, "a counter of at least 1", "zero counters are not encoded");
  expect_rejected({1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 1}, "a node id below 2^32",
                  "got 4294967296");
  expect_rejected({1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1, 1}, "a node id below 2^32",
                  "4294967295 + 1");
  expect_rejected({1, 0, 0}, "the end of the input after 0 slots", "1 trailing bytes");
  expect_rejected({1, 1, 3, 1, 7, 7}, "the end of the input after 1 slots", "2 trailing bytes");
  expect_rejected({1, 0x80, 0x00}, "the slot count", "redundant zero byte");
  expect_rejected({1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
                  "a counter", "longer than 64 bits");
  expect_rejected({1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x01},
                  "a counter", "longer than 10 bytes");
}

TEST(VectorClockEncoding, EveryTruncationOfAValidEncodingIsRejected) {
  const vector_clock c{{0, 2}, {1, 1}, {300, 200}, {70000, 1u << 20}};
  const bytes full = c.encode();
  for (std::size_t n = 0; n < full.size(); ++n) {
    const bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(vector_clock::decode(prefix), hwsync::clock_decode_error) << "length " << n;
  }
}

TEST(VectorClockEncoding, CausalOrderHasNames) {
  EXPECT_STREQ(hwsync::to_string(causal_order::before), "before");
  EXPECT_STREQ(hwsync::to_string(causal_order::concurrent), "concurrent");
}

}  // namespace
