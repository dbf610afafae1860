// hwsync/clocks/node_id.hpp — the identity of a process or machine in the
// logical clocks (lamport_clock's tie-break, vector_clock's slots).
//
// Contract
//   Any 32-bit value chosen by the application; two nodes that exchange
//   timestamps must use different ids. The clocks never allocate ids.
#pragma once

#include <cstdint>

namespace hwsync {

using node_id = std::uint32_t;

}  // namespace hwsync
