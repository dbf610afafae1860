// lamport_clock's out-of-line error path.
#include "hwsync/clocks/lamport_clock.hpp"

#include <string>

namespace hwsync {

void lamport_clock::reject(lamport_timestamp remote) const {
  throw clock_overflow("lamport_clock::receive: expected a remote counter of at most " +
                       std::to_string(max_counter) + " (2^62), got " +
                       std::to_string(remote.counter) + " from node " +
                       std::to_string(remote.node) + " (local node " + std::to_string(node_) +
                       ", counter " + std::to_string(now().counter) +
                       "): taking it would leave too little room before the counter wraps");
}

}  // namespace hwsync
