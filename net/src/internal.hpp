// Declarations shared between the net component's own sources (not public).
#pragma once

#include <string_view>

#include "hwsync/net/lock_backend.hpp"

namespace hwsync::net::detail {

// The factory registered for `scheme`, or an empty function.
backend_factory find_backend(std::string_view scheme);

}  // namespace hwsync::net::detail
