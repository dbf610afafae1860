// vector_clock: slots, merge, comparison, and the canonical encoding.
#include "hwsync/clocks/vector_clock.hpp"

#include <algorithm>
#include <limits>

namespace hwsync {

const char* to_string(causal_order o) noexcept {
  switch (o) {
    case causal_order::before:
      return "before";
    case causal_order::after:
      return "after";
    case causal_order::equal:
      return "equal";
    case causal_order::concurrent:
      return "concurrent";
  }
  return "invalid causal_order";
}

vector_clock::vector_clock(std::initializer_list<slot> slots) {
  for (const slot& s : slots) {
    if (s.counter == 0) continue;
    vector_clock one;
    one.slots_.push_back(s);
    merge(one);
  }
}

std::uint64_t vector_clock::increment(node_id n) {
  auto it = std::lower_bound(slots_.begin(), slots_.end(), n,
                             [](const slot& s, node_id id) { return s.node < id; });
  if (it == slots_.end() || it->node != n) {
    it = slots_.insert(it, slot{n, 1});
    return 1;
  }
  if (it->counter == std::numeric_limits<std::uint64_t>::max()) {
    throw clock_overflow("vector_clock::increment: node " + std::to_string(n) +
                         "'s counter is at its maximum, 2^64-1; expected room for one more");
  }
  return ++it->counter;
}

std::uint64_t vector_clock::counter(node_id n) const noexcept {
  auto it = std::lower_bound(slots_.begin(), slots_.end(), n,
                             [](const slot& s, node_id id) { return s.node < id; });
  return it != slots_.end() && it->node == n ? it->counter : 0;
}

void vector_clock::merge(const vector_clock& other) {
  // The common case, a clock from a node that knows no node this one does
  // not: take the maxima in place, without allocating.
  bool subset = other.slots_.size() <= slots_.size();
  {
    auto a = slots_.cbegin();
    auto b = other.slots_.cbegin();
    while (subset && b != other.slots_.cend()) {
      if (a == slots_.cend() || b->node < a->node) {
        subset = false;
      } else if (a->node < b->node) {
        ++a;
      } else {
        ++a;
        ++b;
      }
    }
  }
  if (subset) {
    auto a = slots_.begin();
    for (const slot& s : other.slots_) {
      while (a->node < s.node) ++a;
      a->counter = std::max(a->counter, s.counter);
    }
    return;
  }
  std::vector<slot> out;
  out.reserve(slots_.size() + other.slots_.size());
  auto a = slots_.begin();
  auto b = other.slots_.begin();
  while (a != slots_.end() || b != other.slots_.end()) {
    if (b == other.slots_.end() || (a != slots_.end() && a->node < b->node)) {
      out.push_back(*a++);
    } else if (a == slots_.end() || b->node < a->node) {
      out.push_back(*b++);
    } else {
      out.push_back({a->node, std::max(a->counter, b->counter)});
      ++a;
      ++b;
    }
  }
  slots_ = std::move(out);
}

causal_order compare(const vector_clock& x, const vector_clock& y) noexcept {
  // A slot missing on one side is a 0 there, and a present slot is >= 1.
  bool x_bigger = false;  // some counter of x exceeds y's
  bool y_bigger = false;
  auto a = x.slots_.begin();
  auto b = y.slots_.begin();
  while (a != x.slots_.end() || b != y.slots_.end()) {
    if (b == y.slots_.end() || (a != x.slots_.end() && a->node < b->node)) {
      x_bigger = true;
      ++a;
    } else if (a == x.slots_.end() || b->node < a->node) {
      y_bigger = true;
      ++b;
    } else {
      x_bigger |= a->counter > b->counter;
      y_bigger |= b->counter > a->counter;
      ++a;
      ++b;
    }
    if (x_bigger && y_bigger) return causal_order::concurrent;
  }
  if (x_bigger) return causal_order::after;
  if (y_bigger) return causal_order::before;
  return causal_order::equal;
}

std::string vector_clock::to_string() const {
  std::string s = "[";
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(slots_[i].node) + ":" + std::to_string(slots_[i].counter);
  }
  return s + "]";
}

// ---------------------------------------------------------------------------
// Encoding

namespace {

void put_varint(std::vector<std::uint8_t>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

// Reads the input front to back; every read checks the length first.
class reader {
 public:
  explicit reader(std::span<const std::uint8_t> in) noexcept : in_(in) {}

  std::size_t offset() const noexcept { return pos_; }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }

  [[noreturn]] void fail(const std::string& expected, const std::string& got) const {
    throw clock_decode_error("vector_clock::decode: expected " + expected + " at byte " +
                                 std::to_string(pos_) + " of " + std::to_string(in_.size()) +
                                 ", got " + got,
                             pos_);
  }

  std::uint8_t byte(const char* what) {
    if (pos_ >= in_.size()) fail(what, "the end of the input (truncated)");
    return in_[pos_++];
  }

  // Unsigned LEB128, canonical: at most 10 bytes, no bits beyond 64, no
  // redundant final zero byte.
  std::uint64_t varint(const char* what) {
    const std::size_t start = pos_;
    std::uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
      if (pos_ >= in_.size()) {
        pos_ = start;
        fail(what, "the end of the input inside a varint (truncated)");
      }
      const std::uint8_t b = in_[pos_++];
      const std::uint64_t bits = b & 0x7f;
      if (shift == 63 && bits > 1) {
        pos_ = start;
        fail(what, "a varint longer than 64 bits");
      }
      v |= bits << shift;
      if ((b & 0x80) == 0) {
        if (b == 0 && shift > 0) {
          pos_ = start;
          fail(what, "a varint with a redundant zero byte (not canonical)");
        }
        return v;
      }
      if (shift == 63) {
        pos_ = start;
        fail(what, "a varint longer than 10 bytes");
      }
    }
  }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
};

}  // namespace

std::vector<std::uint8_t> vector_clock::encode() const {
  std::vector<std::uint8_t> out;
  out.reserve(2 + slots_.size() * 4);
  out.push_back(format_version);
  put_varint(out, slots_.size());
  node_id prev = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    put_varint(out, i == 0 ? slots_[i].node : slots_[i].node - prev);
    put_varint(out, slots_[i].counter);
    prev = slots_[i].node;
  }
  return out;
}

vector_clock vector_clock::decode(std::span<const std::uint8_t> bytes) {
  reader in(bytes);
  const std::uint8_t version = in.byte("the format version byte");
  if (version != format_version) {
    throw clock_decode_error("vector_clock::decode: expected format version " +
                                 std::to_string(format_version) + " at byte 0, got " +
                                 std::to_string(version),
                             0);
  }
  const std::size_t count_at = in.offset();
  const std::uint64_t count = in.varint("the slot count");
  // Each slot takes at least two bytes: refuse before allocating anything.
  if (count > max_decoded_slots) {
    throw clock_decode_error("vector_clock::decode: expected at most " +
                                 std::to_string(max_decoded_slots) + " slots at byte " +
                                 std::to_string(count_at) + ", got a count of " +
                                 std::to_string(count),
                             count_at);
  }
  if (count > in.remaining() / 2) {
    throw clock_decode_error("vector_clock::decode: expected " + std::to_string(count) +
                                 " slots (at least " + std::to_string(count * 2) +
                                 " bytes) after byte " + std::to_string(in.offset()) + ", got " +
                                 std::to_string(in.remaining()) + " bytes (truncated)",
                             in.offset());
  }
  vector_clock out;
  out.slots_.reserve(static_cast<std::size_t>(count));
  std::uint64_t prev = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::size_t at = in.offset();
    const std::uint64_t delta = in.varint("a node-id delta");
    if (i > 0 && delta == 0) in.fail("a node-id delta of at least 1", "0 (ids must increase)");
    const std::uint64_t id = i == 0 ? delta : prev + delta;
    if (delta > std::numeric_limits<node_id>::max() || id > std::numeric_limits<node_id>::max()) {
      throw clock_decode_error(
          "vector_clock::decode: expected a node id below 2^32 at byte " + std::to_string(at) +
              ", got " +
              (i == 0 ? std::to_string(id) : std::to_string(prev) + " + " + std::to_string(delta)),
          at);
    }
    const std::uint64_t c = in.varint("a counter");
    if (c == 0) in.fail("a counter of at least 1", "0 (zero counters are not encoded)");
    out.slots_.push_back({static_cast<node_id>(id), c});
    prev = id;
  }
  if (in.remaining() != 0) {
    in.fail("the end of the input after " + std::to_string(count) + " slots",
            std::to_string(in.remaining()) + " trailing bytes");
  }
  return out;
}

}  // namespace hwsync
