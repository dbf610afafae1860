// The etcd client's gRPC layer against a fake gRPC server that speaks valid
// HTTP/2 (an nghttp2 server session on a plain socket) but answers what a
// real etcd never would: a message that is not protobuf, a compressed
// message, a truncated message, no grpc-status, :status 503, a wrong
// content-type, a status with a percent-encoded message. Each must come back
// as a typed net::error naming what was expected, never a crash or a hang;
// and the client must stay usable for the next call on a fresh connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "hwsync/net/etcd_client.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
namespace net = hwsync::net;
namespace etcd = hwsync::net::etcd;
using hwsync::test::watchdog;

std::string framed(std::string_view message, std::uint8_t flag = 0) {
  std::string out(1, static_cast<char>(flag));
  const auto n = static_cast<std::uint32_t>(message.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((n >> shift) & 0xff));
  out.append(message);
  return out;
}

struct reply {
  std::string status = "200";
  std::string content_type = "application/grpc";
  std::string body;  // DATA bytes, sent as given
  // Trailers (name, value); empty: none at all (the stream ends with the DATA).
  std::vector<std::pair<std::string, std::string>> trailers = {{"grpc-status", "0"}};
};

// Serves every request on every connection with `r`, until destroyed.
class fake_grpc_server {
 public:
  explicit fake_grpc_server(reply r) : reply_(std::move(r)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 8) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("fake_grpc_server: bind/listen failed");
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) return;  // the listener was shut down
        serve(fd);
        ::close(fd);
      }
    });
  }
  ~fake_grpc_server() {
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }

 private:
  struct stream_body {
    const fake_grpc_server* server;
    std::size_t sent = 0;
  };

  static ssize_t read_body(nghttp2_session* session, std::int32_t stream_id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* flags, nghttp2_data_source* source,
                           void*) {
    auto* body = static_cast<stream_body*>(source->ptr);
    const std::string& all = body->server->reply_.body;
    const std::size_t n = std::min(length, all.size() - body->sent);
    std::memcpy(buf, all.data() + body->sent, n);
    body->sent += n;
    if (body->sent == all.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      const auto& trailers = body->server->reply_.trailers;
      if (!trailers.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nv;
        for (const auto& [k, v] : trailers) nv.push_back(header(k, v));
        nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size());
      }
    }
    return static_cast<ssize_t>(n);
  }

  static nghttp2_nv header(const std::string& name, const std::string& value) {
    return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
            reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
            value.size(), NGHTTP2_NV_FLAG_NONE};
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<fake_grpc_server*>(user);
    const bool request_done =
        (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (!request_done) return 0;
    self->requests_++;
    const std::string ct = "content-type";
    const std::string st = ":status";
    const nghttp2_nv headers[] = {header(st, self->reply_.status),
                                  header(ct, self->reply_.content_type)};
    self->bodies_.push_back(std::make_unique<stream_body>(stream_body{self, 0}));
    nghttp2_data_provider provider{};
    provider.source.ptr = self->bodies_.back().get();
    provider.read_callback = &read_body;
    nghttp2_submit_response(session, frame->hd.stream_id, headers, 2, &provider);
    return 0;
  }

  void serve(int fd) {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &on_frame_recv);
    nghttp2_session* session = nullptr;
    nghttp2_session_server_new(&session, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
    char buf[16384];
    for (;;) {
      const std::uint8_t* out = nullptr;
      for (ssize_t n; (n = nghttp2_session_mem_send(session, &out)) > 0;) {
        if (::write(fd, out, static_cast<std::size_t>(n)) != n) break;
      }
      const ssize_t got = ::read(fd, buf, sizeof buf);
      if (got <= 0) break;
      if (nghttp2_session_mem_recv(session, reinterpret_cast<std::uint8_t*>(buf),
                                   static_cast<std::size_t>(got)) < 0) {
        break;
      }
    }
    nghttp2_session_del(session);
    bodies_.clear();
  }

  reply reply_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<int> requests_{0};
  std::vector<std::unique_ptr<stream_body>> bodies_;  // the serving thread's
  std::thread thread_;
};

// What client.get threw (fails if nothing).
std::pair<net::errc, std::string> get_error(fake_grpc_server& server) {
  etcd::client c({server.endpoint()});
  try {
    c.get("k", {}, std::chrono::steady_clock::now() + 20s);
  } catch (const net::error& e) {
    return {e.code(), e.what()};
  }
  ADD_FAILURE() << "expected a net::error, got a result";
  return {net::errc::io_error, ""};
}

TEST(EtcdGrpcFakeServer, ValidRangeResponseParses) {
  watchdog dog("ValidRangeResponseParses", 60s);
  // RangeResponse{count: 7} = field 4, varint: 0x20 0x07.
  fake_grpc_server server({.body = framed(std::string("\x20\x07", 2))});
  etcd::client c({server.endpoint()});
  const auto r = c.get("k", {}, std::chrono::steady_clock::now() + 20s);
  EXPECT_EQ(r.count, 7);
  EXPECT_TRUE(r.kvs.empty());
  EXPECT_EQ(server.requests(), 1);
}

TEST(EtcdGrpcFakeServer, MalformedProtobufIsAProtocolError) {
  watchdog dog("MalformedProtobufIsAProtocolError", 60s);
  fake_grpc_server server({.body = framed("\xff\xff\xff")});  // an unterminated varint tag
  const auto [code, what] = get_error(server);
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  EXPECT_NE(what.find("expected a protobuf"), std::string::npos) << what;
  EXPECT_NE(what.find("RangeResponse"), std::string::npos) << what;
}

TEST(EtcdGrpcFakeServer, CompressedMessageIsAProtocolError) {
  watchdog dog("CompressedMessageIsAProtocolError", 60s);
  fake_grpc_server server({.body = framed("\x20\x07", 1)});
  const auto [code, what] = get_error(server);
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  EXPECT_NE(what.find("uncompressed"), std::string::npos) << what;
}

TEST(EtcdGrpcFakeServer, TruncatedMessageIsAProtocolError) {
  watchdog dog("TruncatedMessageIsAProtocolError", 60s);
  std::string body = framed(std::string(100, 'x'));
  body.resize(20);  // the length prefix says 100, 15 bytes come, then the trailers
  fake_grpc_server server({.body = body});
  const auto [code, what] = get_error(server);
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  EXPECT_NE(what.find("truncated"), std::string::npos) << what;
}

TEST(EtcdGrpcFakeServer, HugeLengthPrefixIsAProtocolErrorNotAnAllocation) {
  watchdog dog("HugeLengthPrefix", 60s);
  fake_grpc_server server({.body = std::string("\x00\xff\xff\xff\xff", 5)});
  const auto [code, what] = get_error(server);
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  EXPECT_NE(what.find("at most"), std::string::npos) << what;
}

TEST(EtcdGrpcFakeServer, MissingGrpcStatusIsAProtocolError) {
  watchdog dog("MissingGrpcStatusIsAProtocolError", 60s);
  fake_grpc_server server({.body = framed(std::string("\x20\x07", 2)), .trailers = {}});
  const auto [code, what] = get_error(server);
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  EXPECT_NE(what.find("grpc-status"), std::string::npos) << what;
}

TEST(EtcdGrpcFakeServer, Http503IsAProtocolError) {
  watchdog dog("Http503IsAProtocolError", 60s);
  fake_grpc_server server({.status = "503", .content_type = "text/plain", .body = "overloaded"});
  const auto [code, what] = get_error(server);
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  EXPECT_NE(what.find("expected HTTP :status 200, got 503"), std::string::npos) << what;
}

TEST(EtcdGrpcFakeServer, WrongContentTypeIsAProtocolError) {
  watchdog dog("WrongContentTypeIsAProtocolError", 60s);
  fake_grpc_server server({.content_type = "application/json", .body = "{}", .trailers = {}});
  const auto [code, what] = get_error(server);
  EXPECT_EQ(code, net::errc::protocol_error) << what;
  EXPECT_NE(what.find("application/json"), std::string::npos) << what;
}

TEST(EtcdGrpcFakeServer, GrpcStatusWithPercentEncodedMessageIsTyped) {
  watchdog dog("GrpcStatusWithPercentEncodedMessageIsTyped", 60s);
  fake_grpc_server server(
      {.body = "", .trailers = {{"grpc-status", "14"}, {"grpc-message", "no%20leader%21"}}});
  etcd::client c({server.endpoint()});
  try {
    c.get("k", {}, std::chrono::steady_clock::now() + 20s);
    FAIL() << "expected a grpc_error";
  } catch (const etcd::grpc_error& e) {
    EXPECT_EQ(e.status(), etcd::grpc_status::unavailable);
    EXPECT_EQ(e.code(), net::errc::connection_reset);
    EXPECT_EQ(e.grpc_message(), "no leader!");
    EXPECT_NE(std::string(e.what()).find("UNAVAILABLE"), std::string::npos) << e.what();
  }
  // A refused call leaves the connection usable.
  EXPECT_THROW(c.get("k", {}, std::chrono::steady_clock::now() + 20s), etcd::grpc_error);
  EXPECT_EQ(server.requests(), 2);
}

}  // namespace
