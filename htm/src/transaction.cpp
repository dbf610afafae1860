// htm::transaction and htm::status (hwsync/htm/transaction.hpp): the backend
// dispatch around the RTM instructions of rtm.cpp.
#include "hwsync/htm/transaction.hpp"

#include <cstdio>
#include <string>

#include "hwsync/htm/capabilities.hpp"
#include "internal.hpp"

namespace hwsync::htm {

std::string status::describe() const {
  if (is_started()) return "started";
  if (is_unavailable()) return "unavailable";
  std::string bits;
  const auto add = [&bits](const std::string& name) {
    if (!bits.empty()) bits += '|';
    bits += name;
  };
  if (is_explicit()) {
    char code[8];
    std::snprintf(code, sizeof code, "0x%02x", explicit_code());
    add(std::string("explicit ") + code);
  }
  if (conflict()) add("conflict");
  if (capacity()) add("capacity");
  if (retry()) add("retry");
  if (debug()) add("debug");
  if (nested()) add("nested");
  if (bits.empty()) bits = "unreported";
  return "abort(" + bits + ")" + (emulated() ? " [emulated]" : "");
}

status transaction::begin() noexcept {
  switch (active_backend()) {
    case backend::rtm:
      return status(detail::rtm::begin());
    case backend::policy_emulation:
      return detail::emulation::bare_begin();
    case backend::unresolved:
    case backend::off:
      break;
  }
  return status::unavailable();
}

void transaction::commit() noexcept {
  switch (active_backend()) {
    case backend::rtm:
      // XEND outside a transaction raises #GP: say what happened instead.
      if (!detail::rtm::test()) detail::fatal("transaction::commit() outside a transaction");
      detail::rtm::end();
      return;
    case backend::policy_emulation:
      detail::emulation::bare_commit();
      return;
    case backend::unresolved:
    case backend::off:
      return;
  }
}

void transaction::abort(std::uint8_t code) noexcept {
  switch (active_backend()) {
    case backend::rtm:
      detail::rtm::abort_with(code);
      return;
    case backend::policy_emulation:
      detail::emulation::bare_abort(code);
      return;
    case backend::unresolved:
    case backend::off:
      return;
  }
}

bool transaction::in_transaction() noexcept {
  switch (active_backend()) {
    case backend::rtm:
      return detail::rtm::test();
    case backend::policy_emulation:
      return detail::emulation::in_transaction();
    case backend::unresolved:
    case backend::off:
      break;
  }
  return false;
}

}  // namespace hwsync::htm
