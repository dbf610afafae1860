// RESP2 (net/src/redis/resp.hpp): commands encode as arrays of bulk
// strings; every reply kind decodes, whole or fed one byte at a time;
// malformed input is a protocol_error that says what was expected and shows
// what arrived, and the decoder stays failed after it.
#include "redis/resp.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hwsync/net/error.hpp"

namespace {

using hwsync::net::errc;
using hwsync::net::error;
using hwsync::net::redis::reply;
using hwsync::net::redis::reply_decoder;

std::vector<reply> decode_all(std::string_view bytes, std::size_t chunk) {
  reply_decoder d;
  std::vector<reply> out;
  for (std::size_t at = 0; at < bytes.size(); at += chunk) {
    d.feed(bytes.substr(at, chunk));
    reply r;
    while (d.next(r)) out.push_back(std::move(r));
  }
  return out;
}

// The protocol_error's message for `bytes` (fails the test if none).
std::string malformed_message(std::string_view bytes) {
  reply_decoder d;
  d.feed(bytes);
  reply r;
  try {
    while (d.next(r)) {
    }
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::protocol_error);
    return e.what();
  }
  ADD_FAILURE() << "no protocol_error for " << bytes;
  return {};
}

TEST(RedisResp, CommandIsAnArrayOfBulkStrings) {
  std::string out;
  hwsync::net::redis::append_command(out, {"SET", "k", std::string_view("a\r\n\0b", 5)});
  EXPECT_EQ(out, std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\n\0b\r\n", 31));
  hwsync::net::redis::append_command(out, {"PING"});
  EXPECT_EQ(out.substr(31), "*1\r\n$4\r\nPING\r\n");
}

TEST(RedisResp, EveryReplyKindDecodesWholeAndByteByByte) {
  const std::string wire =
      "+OK\r\n-ERR wrong\r\n:-42\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n$-1\r\n*-1\r\n"
      "*3\r\n:1\r\n*1\r\n$1\r\nx\r\n*0\r\n";
  const std::vector<reply> expected = {
      reply::simple("OK"),
      reply::error_reply("ERR wrong"),
      reply::number(-42),
      reply::bulk("he\r\no"),
      reply::bulk(""),
      reply::nil(),
      reply::nil(),
      reply::array({reply::number(1), reply::array({reply::bulk("x")}), reply::array({})}),
  };
  EXPECT_EQ(decode_all(wire, wire.size()), expected);
  EXPECT_EQ(decode_all(wire, 1), expected);
  EXPECT_EQ(decode_all(wire, 3), expected);
}

TEST(RedisResp, EncodedRepliesDecodeToThemselves) {
  const reply r = reply::array({reply::simple("a"), reply::error_reply("E"), reply::number(7),
                                reply::bulk(std::string("\0\r\n", 3)), reply::nil()});
  const auto back = decode_all(hwsync::net::redis::encode_reply(r), 2);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], r);
}

TEST(RedisResp, IncompleteReplyWaitsForMoreBytes) {
  reply_decoder d;
  reply r;
  d.feed("$10\r\nhello");
  EXPECT_FALSE(d.next(r));
  d.feed("world\r");
  EXPECT_FALSE(d.next(r));
  d.feed("\n");
  ASSERT_TRUE(d.next(r));
  EXPECT_EQ(r, reply::bulk("helloworld"));
}

TEST(RedisResp, UnknownTypeByteSaysWhatArrived) {
  const std::string m = malformed_message("+OK\r\n?what\r\n");
  EXPECT_NE(m.find("expected '+', '-', ':', '$' or '*'"), std::string::npos) << m;
  EXPECT_NE(m.find("\"?what\\r\\n\""), std::string::npos) << m;
}

TEST(RedisResp, BadLengthsAndIntegersAreProtocolErrors) {
  EXPECT_NE(malformed_message(":12x\r\n").find("Bad integer"), std::string::npos);
  EXPECT_NE(malformed_message("$-2\r\n").find("\"$-2\\r\\n\""), std::string::npos);
  EXPECT_NE(malformed_message("*-7\r\n").find("\"*-7\\r\\n\""), std::string::npos);
  EXPECT_NE(malformed_message("$99999999999999999999\r\n").find("length"), std::string::npos);
}

TEST(RedisResp, BulkStringMustEndInCrLf) {
  const std::string m = malformed_message("$3\r\nabcXY");
  EXPECT_NE(m.find("a bulk string of 3 bytes followed by"), std::string::npos) << m;
  EXPECT_NE(m.find("got \"XY\""), std::string::npos) << m;
}

TEST(RedisResp, NestingDeeperThanHiredisSupportsIsRefused) {
  std::string deep;
  for (int i = 0; i < 9; ++i) deep += "*1\r\n";
  deep += ":1\r\n";
  EXPECT_NE(malformed_message(deep).find("depth"), std::string::npos);
}

TEST(RedisResp, HugeArrayHeaderAllocatesOnlyWhatArrives) {
  // 2^31 - 1 elements announced, two sent: no allocation for the rest.
  reply_decoder d;
  reply r;
  d.feed("*2147483647\r\n:1\r\n:2\r\n");
  EXPECT_FALSE(d.next(r));
}

TEST(RedisResp, FailedDecoderStaysFailed) {
  reply_decoder d;
  reply r;
  d.feed("!\r\n");
  EXPECT_THROW(d.next(r), error);
  EXPECT_TRUE(d.failed());
  EXPECT_THROW(d.feed("+OK\r\n"), error);
  EXPECT_THROW(d.next(r), error);
}

TEST(RedisResp, ExpectHelpersNameTheCommandAndTheReply) {
  EXPECT_EQ(hwsync::net::redis::expect_integer(reply::number(3), "INCR"), 3);
  try {
    hwsync::net::redis::expect_integer(reply::error_reply("WRONGTYPE no"), "INCR");
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::protocol_error);
    EXPECT_NE(std::string(e.what()).find("INCR: expected an integer reply, the server answered "
                                         "error \"WRONGTYPE no\""),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(hwsync::net::redis::expect_status(reply::bulk("OK"), "OK", "SET"), error);
  EXPECT_NO_THROW(hwsync::net::redis::expect_status(reply::simple("OK"), "OK", "SET"));
}

}  // namespace
