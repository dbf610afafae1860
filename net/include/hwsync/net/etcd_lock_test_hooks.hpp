// hwsync/net/etcd_lock_test_hooks.hpp — a seam for tests and benchmarks of
// the etcd:// lock backend (net/src/etcd/etcd_backend.cpp): code the backend
// runs at two points of a waiter's wait, so that a test can make an
// interleaving with etcd deterministic instead of hoping for it — e.g. a
// compaction between the waiter's read of its predecessor and the creation
// of its watch — and a benchmark can start a hand-off the moment a waiter
// is parked without asking etcd (bench/etcd_bench.cpp).
//
// Contract
//   Point        A waiter calls the hook after each read that found a key
//                older than its own (its predecessor) and before it creates
//                the watch on that key, which starts at read_revision + 1.
//                On the waiter's thread, without any lock of the backend held.
//                The after-watch hook runs once etcd confirmed that watch
//                (and again for a watch re-made after a connection failure),
//                before the waiter waits for the deletion.
//   Threads      The setters may be called from any thread (a mutex guards
//                the hooks; a waiter calls a copy). A hook itself must be
//                thread-safe if several waiters run.
//   Production   Empty unless a test sets them; empty hooks cost two
//                uncontended mutex acquisitions per wait round (a round is
//                at least one etcd round trip).
#pragma once

#include <cstdint>
#include <functional>

namespace hwsync::net::etcd::test_hooks {

// Replaces the hook (an empty function removes it).
void set_before_predecessor_watch(std::function<void(std::int64_t read_revision)> hook);
void set_after_predecessor_watch(std::function<void()> hook);

}  // namespace hwsync::net::etcd::test_hooks
