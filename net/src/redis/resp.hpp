// net/src/redis/resp.hpp — RESP2, the Redis wire protocol: commands out,
// replies in. Private to the redis backend (and its tests and fuzz target).
//
// Contract
//   Encoding      append_command() writes one command as RESP2 expects from a
//                 client: an array of bulk strings ("*<n>\r\n" then
//                 "$<len>\r\n<bytes>\r\n" per argument), so arguments may hold
//                 any bytes, CR, LF and NUL included. Commands appended to one
//                 buffer back to back form a pipeline.
//   Decoding      reply_decoder turns the bytes a server sends, fed in chunks
//                 of any size and split anywhere, into owned `reply` values,
//                 in the order the server sent them. The parsing is hiredis's
//                 reader (libhiredis, only its redisReader: no hiredis
//                 networking), with our own reply-object functions, so that
//                 replies are built directly as `reply` values and an array
//                 header never allocates more than the elements that arrive.
//                 Why hiredis's reader: Redis's own tools (redis-cli,
//                 redis-benchmark) are built on it, it is maintained
//                 upstream and packaged by Debian (libhiredis-dev, with its
//                 security fixes), so we neither own nor re-derive the
//                 corner cases of the protocol; tests/net/redis_resp_fuzz.cpp
//                 fuzzes it as we use it. On top of it we check the CRLF
//                 after a bulk string (hiredis 0.14 skips those two bytes
//                 unread).
//   Errors        Malformed input — an unknown type byte, a bad length or
//                 integer, arrays nested deeper than hiredis's limit (7) —
//                 throws net::error(errc::protocol_error) whose message says
//                 what was expected and shows the bytes that arrived. After
//                 that the decoder stays failed (the stream cannot be
//                 resynchronised): feed() and next() throw the same error
//                 again, and the connection must be closed.
//                 An error *reply* ("-ERR ...") is not malformed input: it is
//                 a reply of kind error.
//   Threads       A decoder is used by one thread at a time (the connection
//                 that owns it). Not copyable, movable.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct redisReader;

namespace hwsync::net::redis {

// One RESP2 reply, owned. A small tagged value: `text` holds the payload of
// simple strings, errors and bulk strings; `integer` of integers; `elements`
// of arrays. A nil bulk string and a nil array both decode as kind::nil.
struct reply {
  enum class kind : std::uint8_t { simple_string, error, integer, bulk_string, nil, array };

  kind type = kind::nil;
  long long integer = 0;
  std::string text;
  std::vector<reply> elements;

  static reply simple(std::string s) { return reply{kind::simple_string, 0, std::move(s), {}}; }
  static reply error_reply(std::string s) { return reply{kind::error, 0, std::move(s), {}}; }
  static reply number(long long v) { return reply{kind::integer, v, {}, {}}; }
  static reply bulk(std::string s) { return reply{kind::bulk_string, 0, std::move(s), {}}; }
  static reply nil() { return reply{}; }
  static reply array(std::vector<reply> items) {
    return reply{kind::array, 0, {}, std::move(items)};
  }

  bool is_error() const noexcept { return type == kind::error; }

  // A short human-readable form for error messages, e.g. `integer 3`,
  // `error "NOSCRIPT No matching script"`, `array of 2`; long payloads are cut.
  std::string describe() const;

  friend bool operator==(const reply&, const reply&) = default;
};

const char* kind_name(reply::kind k) noexcept;

// Appends one command (an array of bulk strings) to `out`.
void append_command(std::string& out, std::span<const std::string_view> args);
inline void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  append_command(out, std::span<const std::string_view>(args.begin(), args.size()));
}

// The bytes of a reply as a server would send it (for tests and the fake
// server; the client never sends replies).
std::string encode_reply(const reply& r);

class reply_decoder {
 public:
  reply_decoder();
  ~reply_decoder();
  reply_decoder(reply_decoder&&) noexcept;
  reply_decoder& operator=(reply_decoder&&) noexcept;
  reply_decoder(const reply_decoder&) = delete;
  reply_decoder& operator=(const reply_decoder&) = delete;

  // Appends bytes received from the server. Throws the stored protocol_error
  // if the decoder has failed before.
  void feed(std::string_view bytes);

  // The next complete reply, or false when the bytes fed so far end inside
  // one (feed more). Throws net::error(protocol_error) on malformed input.
  bool next(reply& out);

  bool failed() const noexcept { return !failure_.empty(); }

 private:
  struct reader_deleter {
    void operator()(redisReader* r) const noexcept;
  };
  [[noreturn]] void fail(std::string message);
  [[noreturn]] void rethrow_failure() const;

  std::unique_ptr<redisReader, reader_deleter> reader_;
  std::string failure_;
};

// Replies the lock backend expects, checked with a clear message naming the
// command on a mismatch: an error reply throws net::error(protocol_error)
// quoting the server's error; another kind throws saying which was expected
// and which arrived.
long long expect_integer(const reply& r, std::string_view command);
void expect_status(const reply& r, std::string_view status, std::string_view command);

}  // namespace hwsync::net::redis
