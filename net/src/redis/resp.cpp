#include "redis/resp.hpp"

#include <hiredis/read.h>

#include <cstdio>
#include <new>
#include <utility>

#include "hwsync/net/error.hpp"

namespace hwsync::net::redis {

namespace {

// Bytes as they would be written in C, for messages: printable ASCII as is,
// CR and LF as \r and \n, everything else as \xNN; cut after `limit` bytes.
std::string quoted(std::string_view bytes, std::size_t limit = 40) {
  std::string out = "\"";
  for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  out += '"';
  if (bytes.size() > limit) out += "...";
  return out;
}

// The reader's reply-object functions, building `reply` values. hiredis
// calls them for each value as it completes, children after their array
// header and in index order, and passes the array's object as
// task->parent->obj. A child is stored in its parent's vector and the
// pointer returned to hiredis points there: hiredis only keeps the pointers
// of arrays still open, and a parent's vector only grows once the child
// array before it has closed, so those pointers stay valid. Only the root
// object is owned by hiredis (freed through free_object on error, handed to
// us by redisReaderGetReply otherwise).
//
// Returning null makes hiredis fail with "Out of memory"; when we refuse a
// value for another reason, the reason is left in the reader's privdata so
// the error message can say it instead.
struct build_state {
  std::string refusal;
};

void* attach(const redisReadTask* task, reply&& value) {
  if (task->parent == nullptr) return new (std::nothrow) reply(std::move(value));
  auto* parent = static_cast<reply*>(task->parent->obj);
  if (static_cast<std::size_t>(task->idx) != parent->elements.size()) {
    static_cast<build_state*>(task->privdata)->refusal =
        "array element " + std::to_string(task->idx) + " arrived out of order";
    return nullptr;
  }
  parent->elements.push_back(std::move(value));
  return &parent->elements.back();
}

void* create_string(const redisReadTask* task, char* str, std::size_t len) {
  std::string text(str, len);
  switch (task->type) {
    case REDIS_REPLY_STATUS:
      return attach(task, reply::simple(std::move(text)));
    case REDIS_REPLY_ERROR:
      return attach(task, reply::error_reply(std::move(text)));
    default:
      // hiredis skips the two bytes after a bulk string's payload without
      // looking at them (they are in its buffer: it waited for len + 2).
      if (str[len] != '\r' || str[len + 1] != '\n') {
        static_cast<build_state*>(task->privdata)->refusal =
            "a bulk string of " + std::to_string(len) + " bytes followed by \"\\r\\n\", got " +
            quoted(std::string_view(str + len, 2));
        return nullptr;
      }
      return attach(task, reply::bulk(std::move(text)));
  }
}

void* create_array(const redisReadTask* task, int elements) {
  if (elements < 0) {
    static_cast<build_state*>(task->privdata)->refusal =
        "an array length of -1 (nil) or more, got " + std::to_string(elements);
    return nullptr;
  }
  // No reserve(elements): the header's count is the peer's claim, not bytes
  // that arrived; the vector grows with the elements that do.
  return attach(task, reply::array({}));
}

void* create_integer(const redisReadTask* task, long long value) {
  return attach(task, reply::number(value));
}

void* create_nil(const redisReadTask* task) {
  return attach(task, reply::nil());
}

void free_object(void* obj) {
  // hiredis frees only a root object, never a child (children live inside
  // their root's vectors).
  delete static_cast<reply*>(obj);
}

redisReplyObjectFunctions reply_functions = {create_string, create_array, create_integer,
                                             create_nil, free_object};

}  // namespace

const char* kind_name(reply::kind k) noexcept {
  switch (k) {
    case reply::kind::simple_string:
      return "simple string";
    case reply::kind::error:
      return "error";
    case reply::kind::integer:
      return "integer";
    case reply::kind::bulk_string:
      return "bulk string";
    case reply::kind::nil:
      return "nil";
    case reply::kind::array:
      return "array";
  }
  return "?";
}

std::string reply::describe() const {
  switch (type) {
    case kind::simple_string:
    case kind::error:
    case kind::bulk_string:
      return std::string(kind_name(type)) + " " + quoted(text, 80);
    case kind::integer:
      return "integer " + std::to_string(integer);
    case kind::nil:
      return "nil";
    case kind::array:
      return "array of " + std::to_string(elements.size());
  }
  return "?";
}

void append_command(std::string& out, std::span<const std::string_view> args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (std::string_view a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out.append(a);
    out += "\r\n";
  }
}

std::string encode_reply(const reply& r) {
  // Appends rather than operator+ chains, which GCC 12 warns about
  // (a false -Wrestrict in its std::string inlining).
  std::string out;
  auto line = [&out](char type, std::string_view text) {
    out += type;
    out.append(text);
    out += "\r\n";
  };
  switch (r.type) {
    case reply::kind::simple_string:
      line('+', r.text);
      break;
    case reply::kind::error:
      line('-', r.text);
      break;
    case reply::kind::integer:
      line(':', std::to_string(r.integer));
      break;
    case reply::kind::bulk_string:
      line('$', std::to_string(r.text.size()));
      out.append(r.text);
      out += "\r\n";
      break;
    case reply::kind::nil:
      line('$', "-1");
      break;
    case reply::kind::array:
      line('*', std::to_string(r.elements.size()));
      for (const reply& e : r.elements) out += encode_reply(e);
      break;
  }
  return out;
}

void reply_decoder::reader_deleter::operator()(redisReader* r) const noexcept {
  delete static_cast<build_state*>(r->privdata);
  redisReaderFree(r);
}

reply_decoder::reply_decoder() {
  redisReader* r = redisReaderCreateWithFunctions(&reply_functions);
  if (r == nullptr) throw std::bad_alloc();
  r->privdata = new build_state;
  reader_.reset(r);
}

reply_decoder::~reply_decoder() = default;
reply_decoder::reply_decoder(reply_decoder&&) noexcept = default;
reply_decoder& reply_decoder::operator=(reply_decoder&&) noexcept = default;

void reply_decoder::rethrow_failure() const {
  throw error(errc::protocol_error, failure_);
}

void reply_decoder::fail(std::string message) {
  failure_ = std::move(message);
  rethrow_failure();
}

void reply_decoder::feed(std::string_view bytes) {
  if (failed()) rethrow_failure();
  if (bytes.empty()) return;
  if (redisReaderFeed(reader_.get(), bytes.data(), bytes.size()) != REDIS_OK) {
    throw std::bad_alloc();  // hiredis fails a feed only when it cannot grow its buffer
  }
}

bool reply_decoder::next(reply& out) {
  if (failed()) rethrow_failure();
  redisReader* r = reader_.get();
  // What the reply being parsed starts with, kept for the error message:
  // hiredis drops its buffer when it fails.
  const std::string_view pending =
      r->buf != nullptr ? std::string_view(r->buf + r->pos, r->len - r->pos) : std::string_view();
  const std::string start(pending.substr(0, 41));

  void* obj = nullptr;
  if (redisReaderGetReply(r, &obj) != REDIS_OK) {
    auto* state = static_cast<build_state*>(r->privdata);
    std::string why = state->refusal.empty()
                          ? std::string(r->errstr)
                          : "expected " + std::exchange(state->refusal, std::string());
    fail(
        "malformed RESP2 reply from the server (expected '+', '-', ':', '$' or '*' values with "
        "CRLF-terminated headers and lengths >= -1): " +
        why + "; the reply began with " + quoted(start, 40));
  }
  if (obj == nullptr) return false;
  std::unique_ptr<reply> owned(static_cast<reply*>(obj));
  out = std::move(*owned);
  return true;
}

namespace {
[[noreturn]] void unexpected(const reply& r, std::string_view expected, std::string_view command) {
  if (r.is_error()) {
    throw error(errc::protocol_error, "redis " + std::string(command) + ": expected " +
                                          std::string(expected) + ", the server answered " +
                                          r.describe());
  }
  throw error(errc::protocol_error, "redis " + std::string(command) + ": expected " +
                                        std::string(expected) + ", got " + r.describe());
}
}  // namespace

long long expect_integer(const reply& r, std::string_view command) {
  if (r.type != reply::kind::integer) unexpected(r, "an integer reply", command);
  return r.integer;
}

void expect_status(const reply& r, std::string_view status, std::string_view command) {
  if (r.type != reply::kind::simple_string || r.text != status) {
    unexpected(r, "status \"" + std::string(status) + "\"", command);
  }
}

}  // namespace hwsync::net::redis
