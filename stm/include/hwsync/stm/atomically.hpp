// hwsync/stm/atomically.hpp — stm::atomically(f) and stm::or_else(f1, f2).
//
// Contract
//   atomically(f) runs f(tx) as one transaction and returns f's result (by
//   value). Either all of f's writes become visible together, or none: an
//   attempt that conflicts is rolled back and f runs again, so f must have
//   no effects other than tvar writes (side effects go in tx.on_commit).
//   An exception thrown by f discards the attempt and propagates.
//   Nested atomically() calls join the outermost transaction (flat nesting).
//   Ordering: transactions are serializable and opaque (every attempt,
//   even one that will abort, sees a consistent snapshot); a committed
//   transaction's writes happen-before every transaction that reads them.
//   Blocking: tx.retry() parks the thread until a tvar it read changes.
//   Progress: a call that keeps aborting runs serially after
//   tuning::serial_after aborts and then commits (hwsync/stm/transaction.hpp).
//
//   or_else(f1, f2) returns a function for atomically() (or to call inside
//   a transaction) that runs f1 and, if f1 retries, f2; if both retry, the
//   whole transaction waits on what either read.
//
//   Every call site (the type of f) keeps one bit: whether it has ever
//   written. Sites that never write start in the read-only mode, which logs
//   nothing.
#pragma once

#include <optional>
#include <type_traits>
#include <utility>

#include "hwsync/htm/transaction.hpp"
#include "hwsync/stm/transaction.hpp"

namespace hwsync::stm {

template <class F>
auto atomically(F&& f) -> std::remove_cvref_t<std::invoke_result_t<F&, transaction&>> {
  using result = std::remove_cvref_t<std::invoke_result_t<F&, transaction&>>;
  constexpr bool returns_void = std::is_void_v<result>;
  static detail::site_profile profile;
  detail::entry how;
  transaction& tx = *detail::enter(profile, how);
  if (how == detail::entry::nested) return f(tx);
  using storage = std::conditional_t<returns_void, bool, std::optional<result>>;

  if (how == detail::entry::hardware) {
    for (;;) {
      const htm::status s = htm::transaction::begin();
      if (s.is_started()) {
        [[maybe_unused]] storage r{};
        bool committed = false;
        try {
          tx.begin_hardware();
          if constexpr (returns_void) {
            f(tx);
          } else {
            r.emplace(f(tx));
          }
          tx.commit_hardware();
          committed = true;
        } catch (const detail::retry_signal&) {
          tx.abandon_hardware(detail::abandon_cause::retry);
        } catch (const detail::abort_signal&) {
          tx.abandon_hardware(detail::abandon_cause::abort);
        } catch (...) {
          tx.abandon_hardware(detail::abandon_cause::exception);
          throw;
        }
        if (committed) {
          tx.after_commit();
          if constexpr (!returns_void)
            return std::move(*r);
          else
            return;
        }
        break;
      }
      if (!tx.hardware_aborted(s)) break;
    }
    tx.begin();  // the software path's first attempt
  }

  // enter() began the first attempt (transaction::start()); the handlers
  // below begin the others.
  for (;;) {
    [[maybe_unused]] storage r{};
    try {
      if constexpr (returns_void) {
        f(tx);
      } else {
        r.emplace(f(tx));
      }
      tx.commit();
    } catch (const detail::abort_signal&) {
      tx.after_abort();
      tx.begin();
      continue;
    } catch (const detail::retry_signal&) {
      tx.after_retry();
      tx.begin();
      continue;
    } catch (...) {
      tx.after_exception();
      throw;
    }
    tx.after_commit();
    if constexpr (!returns_void)
      return std::move(*r);
    else
      return;
  }
}

template <class F1, class F2>
auto or_else(F1 f1, F2 f2) {
  return [f1 = std::move(f1), f2 = std::move(f2)](transaction& tx) mutable {
    return tx.or_else(f1, f2);
  };
}

}  // namespace hwsync::stm
