// hwsync/clocks/vector_clock.hpp — hwsync::vector_clock, per-node event
// counters that capture causality exactly (Fidge, Mattern 1988).
//
// Contract
//   A value type (like std::vector: copy it, send it, compare it); one
//   object is not meant to be shared between threads without a lock.
//   increment(n)   node n's event: its counter goes up by one. A node seen
//                  for the first time gets a slot; slots never shrink.
//   merge(o)       element-wise maximum with o (a receive: merge the
//                  message's clock, then increment the receiver's slot).
//                  Commutative, associative, idempotent.
//   compare(a, b)  causal_order::before when a <= b element-wise and a != b
//                  (a happened before b), after for the mirror image, equal,
//                  or concurrent when each has a counter the other lacks.
//                  The seed's table: [2,1,0] vs [3,2,0] is before, [1,2,0]
//                  vs [2,1,0] is concurrent, equal vectors are equal.
//                  happened_before(a, b) is compare(a, b) == before: a
//                  strict partial order.
//   Representation Slots are (node_id, counter) pairs sorted by node id, and
//                  a missing slot means 0, so equal clocks are equal
//                  objects whatever order the nodes appeared in; a counter
//                  is never 0 in a slot. Size: 24 bytes plus 16 per node.
//   Encoding       encode() gives the canonical bytes:
//                    byte 0         format version (1)
//                    varint         number of slots
//                    per slot       varint node-id delta (the first id
//                                   itself, then id - previous id, >= 1),
//                                   varint counter (>= 1)
//                  varints are unsigned LEB128 of at most 10 bytes, without
//                  redundant zero bytes. decode() accepts exactly these
//                  bytes and throws clock_decode_error otherwise: it checks
//                  every length before it reads, caps the slot count (at
//                  max_decoded_slots, and at what the remaining bytes can
//                  hold, before allocating), and rejects trailing bytes.
//   Complexity     increment O(log n) to find the slot (O(n) to insert a new
//                  one); merge, compare, equality O(n + m). merge
//                  allocates only when the other clock has a node this one
//                  lacks; otherwise it takes the maxima in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "hwsync/clocks/clock_error.hpp"
#include "hwsync/clocks/node_id.hpp"

namespace hwsync {

enum class causal_order { before, after, equal, concurrent };

const char* to_string(causal_order o) noexcept;

class vector_clock {
 public:
  struct slot {
    node_id node;
    std::uint64_t counter;
    friend bool operator==(const slot&, const slot&) = default;
  };

  static constexpr std::uint8_t format_version = 1;
  // The most slots decode() accepts (a cluster larger than this is not a
  // vector-clock use case; a length prefix larger is an attack or garbage).
  static constexpr std::size_t max_decoded_slots = 1u << 16;

  vector_clock() = default;
  // From (node, counter) pairs in any order; repeated nodes keep the
  // largest counter, zero counters are dropped.
  vector_clock(std::initializer_list<slot> slots);

  // Node n's event; returns its new counter. Throws clock_overflow at 2^64-1.
  std::uint64_t increment(node_id n);
  void merge(const vector_clock& other);

  std::uint64_t counter(node_id n) const noexcept;
  const std::vector<slot>& slots() const noexcept { return slots_; }
  std::size_t size() const noexcept { return slots_.size(); }

  friend causal_order compare(const vector_clock& a, const vector_clock& b) noexcept;
  friend bool happened_before(const vector_clock& a, const vector_clock& b) noexcept {
    return compare(a, b) == causal_order::before;
  }
  friend bool operator==(const vector_clock&, const vector_clock&) = default;

  std::vector<std::uint8_t> encode() const;
  static vector_clock decode(std::span<const std::uint8_t> bytes);

  // "[0:2, 1:1]": for messages and test output.
  std::string to_string() const;

 private:
  std::vector<slot> slots_;  // sorted by node, counters >= 1
};

}  // namespace hwsync
