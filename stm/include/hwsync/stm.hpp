// hwsync/stm.hpp — software transactional memory: the hwsync::stm component.
//
//   hwsync::stm::tvar<long> a{100}, b{0};
//   hwsync::stm::atomically([&](auto& tx) {
//     long x = tx.read(a);
//     if (x < 30) tx.retry();   // park until a tvar read so far changes
//     tx.write(a, x - 30);
//     tx.write(b, tx.read(b) + 30);
//   });
//
//   hwsync/stm/tvar.hpp         tvar<T>: trivially copyable T of any size,
//                               and tvar<std::shared_ptr<const T>>
//   hwsync/stm/atomically.hpp   atomically(f), or_else(f1, f2)
//   hwsync/stm/transaction.hpp  transaction: read/write/retry/or_else/
//                               on_commit/on_abort; modes, tuning, quiesce()
//   hwsync/stm/statistics.hpp   commits by path, aborts by cause
//   hwsync/stm/stripe_table.hpp the version clock, the versioned-lock
//                               stripes and the serial gate (internal)
//
// docs/stm.md: the API, TL2 with timestamp extension, the guarantees
// (opacity, privatization), the hybrid HTM protocol and measured numbers.
// Depends on hwsync::primitives (blocking retry, the serial mutex) and
// hwsync::htm (the hardware fast path).
#pragma once

#include "hwsync/stm/atomically.hpp"
#include "hwsync/stm/statistics.hpp"
#include "hwsync/stm/stripe_table.hpp"
#include "hwsync/stm/transaction.hpp"
#include "hwsync/stm/tvar.hpp"
