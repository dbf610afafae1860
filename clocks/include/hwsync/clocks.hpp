// hwsync/clocks.hpp — the clocks that order events across threads, processes
// and machines (docs/clocks.md says which to use for what):
//   lamport_clock         total order consistent with causality (one atomic)
//   vector_clock          causality itself: before / after / equal / concurrent
//   hybrid_logical_clock  causality plus closeness to physical time, with a
//                         loud error when a remote clock is too far ahead
//   interval_clock        physical time as [earliest, latest] with the
//                         kernel's NTP error bound, and commit wait
// and physical_source, the injectable wall clock they all read.
// hwsync::cycle_clock (hwsync/cycle_clock.hpp) measures durations on one
// machine; it does not order events between machines.
#pragma once

#include "hwsync/clocks/clock_error.hpp"
#include "hwsync/clocks/hybrid_logical_clock.hpp"
#include "hwsync/clocks/interval_clock.hpp"
#include "hwsync/clocks/lamport_clock.hpp"
#include "hwsync/clocks/node_id.hpp"
#include "hwsync/clocks/physical_source.hpp"
#include "hwsync/clocks/vector_clock.hpp"
