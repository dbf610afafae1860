// hwsync/htm.hpp — hardware transactional memory (Intel TSX/RTM): the
// hwsync::htm component. A leaf of the dependency graph (docs/architecture.md):
// it includes no other hwsync component.
//
//   hwsync/htm/capabilities.hpp   capabilities(): CPUID decoding, HWSYNC_HTM,
//                                 the one-time probe, the active backend
//   hwsync/htm/transaction.hpp    transaction (begin/commit/abort/in_transaction)
//                                 and status, RTM's abort word decoded
//   hwsync/htm/elided.hpp         elided<Lock>: adaptive lock elision
//   hwsync/htm/elision_policy.hpp the retry/fallback/switch-off policy and its tuning
//   hwsync/htm/statistics.hpp     attempts, commits, aborts by cause, fallbacks
//   hwsync/htm/emulation.hpp      the policy emulation backend (tests the
//                                 policy, not the hardware)
//
// docs/htm.md explains detection, elision, the policy and the emulation, and
// what has and has not run on real TSX hardware.
#pragma once

#include "hwsync/htm/capabilities.hpp"
#include "hwsync/htm/elided.hpp"
#include "hwsync/htm/elision_policy.hpp"
#include "hwsync/htm/emulation.hpp"
#include "hwsync/htm/statistics.hpp"
#include "hwsync/htm/transaction.hpp"
