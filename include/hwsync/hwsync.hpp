// hwsync/hwsync.hpp — every hwsync header except the network clients.
// Belongs to the umbrella target hwsync::hwsync, which links all components.
#pragma once

#include "hwsync/barrier.hpp"
#include "hwsync/clocks.hpp"
#include "hwsync/condition_variable.hpp"
#include "hwsync/cycle_clock.hpp"
#include "hwsync/futex.hpp"
#include "hwsync/htm.hpp"
#include "hwsync/latch.hpp"
#include "hwsync/lock_order.hpp"
#include "hwsync/lock_profile.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/numa.hpp"
#include "hwsync/semaphore.hpp"
#include "hwsync/seqlock.hpp"
#include "hwsync/shared_mutex.hpp"
#include "hwsync/spin.hpp"
#include "hwsync/stm.hpp"
#include "hwsync/topology.hpp"
