#include "etcd/grpc_channel.hpp"

#include <nghttp2/nghttp2.h>

#include <array>
#include <cstring>
#include <utility>

#include "hwsync/net/etcd_client.hpp"

namespace hwsync::net::etcd::detail {

namespace {

// etcd's default --max-request-bytes is 1.5 MiB and responses are bounded by
// the range limit; 64 MiB only stops a corrupt length from allocating GiBs.
constexpr std::size_t max_message_bytes = 64u << 20;

// grpc-message is percent-encoded (gRPC over HTTP/2, "Responses").
std::string percent_decode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

errc errc_for(grpc_status status, std::string_view message) {
  switch (status) {
    case grpc_status::cancelled:
      return errc::cancelled;
    case grpc_status::deadline_exceeded:
      return errc::timed_out;
    case grpc_status::unavailable:
      return errc::connection_reset;
    case grpc_status::not_found:
      // etcd's only NOT_FOUND is rpctypes.ErrLeaseNotFound.
      return message.find("lease") != std::string_view::npos ? errc::lease_lost
                                                             : errc::protocol_error;
    default:
      return errc::protocol_error;
  }
}

std::string call_name(const grpc_call& call, const std::string& peer) {
  std::string out = call.path;
  out.append(" on ").append(peer);
  return out;
}

nghttp2_nv header(const char* name, const std::string& value) {
  return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name)),
          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), std::strlen(name),
          value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

std::string frame_message(std::string_view message) {
  std::string out;
  out.reserve(5 + message.size());
  const auto n = static_cast<std::uint32_t>(message.size());
  out.push_back('\0');  // not compressed
  out.push_back(static_cast<char>((n >> 24) & 0xff));
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
  out.append(message);
  return out;
}

// The nghttp2 callbacks. nghttp2 calls them from inside mem_recv / mem_send
// / submit_*, which run only under the channel's mutex.
struct grpc_channel::callbacks {
  static grpc_channel& self(void* user_data) { return *static_cast<grpc_channel*>(user_data); }

  static grpc_call* call_of(nghttp2_session* session, std::int32_t stream_id) {
    return static_cast<grpc_call*>(nghttp2_session_get_stream_user_data(session, stream_id));
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame,
                       const std::uint8_t* name, std::size_t name_length, const std::uint8_t* value,
                       std::size_t value_length, std::uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    grpc_call* call = call_of(session, frame->hd.stream_id);
    if (call == nullptr) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), name_length);
    const std::string_view v(reinterpret_cast<const char*>(value), value_length);
    if (n == ":status") {
      int status = 0;
      for (char c : v) status = c >= '0' && c <= '9' ? status * 10 + (c - '0') : -1000000;
      call->http_status = status;
    } else if (n == "content-type") {
      call->content_type = std::string(v);
    } else if (n == "grpc-status") {
      int status = 0;
      for (char c : v) status = c >= '0' && c <= '9' ? status * 10 + (c - '0') : -1000000;
      call->grpc_status = status;
    } else if (n == "grpc-message") {
      call->grpc_message = percent_decode(v);
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t length, void* user_data) {
    grpc_call* call = call_of(session, stream_id);
    if (call == nullptr || call->failure) return 0;
    // Not a gRPC response (an error page of a proxy, say): its body is no
    // message stream; read_message reports the status and content-type.
    if (call->http_status != 200 || call->content_type.rfind("application/grpc", 0) != 0) {
      return 0;
    }
    call->receive_buffer.append(reinterpret_cast<const char*>(data), length);
    std::size_t at = 0;
    const std::string& b = call->receive_buffer;
    while (b.size() - at >= 5) {
      const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(b[at + i]); };
      if (byte(0) != 0) {
        fail_call(self(user_data), session, *call,
                  "expected an uncompressed gRPC message (flag byte 0), got flag byte " +
                      std::to_string(byte(0)));
        return 0;
      }
      const std::size_t n = (std::size_t{byte(1)} << 24) | (std::size_t{byte(2)} << 16) |
                            (std::size_t{byte(3)} << 8) | std::size_t{byte(4)};
      if (n > max_message_bytes) {
        fail_call(self(user_data), session, *call,
                  "expected a gRPC message of at most " + std::to_string(max_message_bytes) +
                      " bytes, got a length prefix of " + std::to_string(n));
        return 0;
      }
      if (b.size() - at - 5 < n) break;
      call->messages.emplace_back(b, at + 5, n);
      at += 5 + n;
    }
    call->receive_buffer.erase(0, at);
    readable_changed_locked(*call);
    self(user_data).changed_.notify_all();
    return 0;
  }

  static void fail_call(grpc_channel& ch, nghttp2_session* session, grpc_call& call,
                        const std::string& what) {
    call.failure.emplace(errc::protocol_error, call_name(call, ch.peer_) + ": " + what);
    call.closed = true;
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call.stream_id, NGHTTP2_PROTOCOL_ERROR);
    readable_changed_locked(call);
    ch.changed_.notify_all();
  }

  static int on_stream_close(nghttp2_session* session, std::int32_t stream_id,
                             std::uint32_t error_code, void* user_data) {
    grpc_channel& ch = self(user_data);
    if (grpc_call* call = call_of(session, stream_id); call != nullptr) {
      call->closed = true;
      call->reset_code = error_code;
      readable_changed_locked(*call);
    }
    ch.open_calls_.erase(stream_id);
    ch.changed_.notify_all();
    return 0;
  }

  // nghttp2's own account of a connection error ("Remote peer returned
  // unexpected data while we expected SETTINGS frame..."), for the message.
  static int on_error(nghttp2_session*, int, const char* message, std::size_t length,
                      void* user_data) {
    std::string& e = self(user_data).session_error_;
    if (!e.empty()) e.append("; ");
    e.append(message, length);
    return 0;
  }

  // A GOAWAY nghttp2 sends names the peer's violation (error code and,
  // from nghttp2, a short reason in its debug data).
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type != NGHTTP2_GOAWAY || frame->goaway.error_code == NGHTTP2_NO_ERROR) {
      return 0;
    }
    std::string& e = self(user_data).session_error_;
    if (!e.empty()) e.append("; ");
    e.append("sent GOAWAY ").append(nghttp2_http2_strerror(frame->goaway.error_code));
    if (frame->goaway.opaque_data_len > 0) {
      e.append(" (")
          .append(reinterpret_cast<const char*>(frame->goaway.opaque_data),
                  frame->goaway.opaque_data_len)
          .append(")");
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      // Streams above last_stream_id were not processed; nghttp2 closes them
      // (on_stream_close with REFUSED_STREAM). No new streams from now on.
      self(user_data).goaway_ = true;
    }
    return 0;
  }

  // Hands nghttp2 the next bytes of a request stream; defers (until
  // send_message resumes it) when nothing is queued and the stream is open.
  static ssize_t read_data(nghttp2_session*, std::int32_t, std::uint8_t* buffer, std::size_t length,
                           std::uint32_t* flags, nghttp2_data_source* source, void*) {
    grpc_call& call = *static_cast<grpc_call*>(source->ptr);
    const std::size_t n = std::min(length, call.send_buffer.size());
    std::memcpy(buffer, call.send_buffer.data(), n);
    call.send_buffer.erase(0, n);
    if (call.send_buffer.empty()) {
      if (call.send_closed) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
      } else if (n == 0) {
        call.send_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(n);
  }
};

grpc_channel::grpc_channel(tcp_connection connection, std::string peer)
    : connection_(std::move(connection)), peer_(std::move(peer)) {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) throw std::bad_alloc();
  nghttp2_session_callbacks_set_on_header_callback(cbs, &callbacks::on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &callbacks::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_error_callback2(cbs, &callbacks::on_error);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &callbacks::on_frame_send);
  const int rv = nghttp2_session_client_new(&session_, cbs, this);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) throw std::bad_alloc();
  // No server push (gRPC never uses it); a 1 MiB stream window so a large
  // range response does not wait for WINDOW_UPDATE round trips.
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                             {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
}

grpc_channel::~grpc_channel() {
  nghttp2_session_del(session_);
}

std::shared_ptr<grpc_channel> grpc_channel::connect(const std::string& host, std::uint16_t port,
                                                    steady_time deadline) {
  tcp_connection c = tcp_connection::connect(host, port, deadline);
  std::string peer = c.peer();
  std::shared_ptr<grpc_channel> ch(new grpc_channel(std::move(c), std::move(peer)));
  bool start = false;
  {
    std::lock_guard lock(ch->mutex_);
    start = ch->collect_output_locked();  // the preface and SETTINGS
  }
  ch->start_writer_if(start);
  ch->start_reader();
  return ch;
}

void grpc_channel::start_reader() {
  ring::detach(reader(shared_from_this()));
}

task<void> grpc_channel::reader(std::shared_ptr<grpc_channel> self) {
  std::array<char, 16384> buffer;
  const std::stop_token stop = self->stop_.get_token();
  // Onto the loop thread before the first recv: io_uring ties a request to
  // the thread that submitted it, and a recv still waiting for bytes when
  // that thread exits completes with -ECANCELED (the connecting thread may
  // be a short-lived one; the redis connection pins the same case with
  // CoroutineReaderSurvivesTheExitOfTheThreadThatStartedIt).
  ring& loop = ring::default_ring();
  if (!loop.on_loop_thread()) co_await loop.async(io_request{});
  for (;;) {
    std::size_t n = 0;
    try {
      n = co_await self->connection_.async_recv_some(buffer, no_deadline, stop);
    } catch (const net::error& e) {
      std::lock_guard lock(self->mutex_);
      self->fail_locked(e);
      co_return;
    }
    bool start = false;
    {
      std::lock_guard lock(self->mutex_);
      if (self->failure_) co_return;
      const auto rv = nghttp2_session_mem_recv(
          self->session_, reinterpret_cast<const std::uint8_t*>(buffer.data()), n);
      if (rv < 0) {
        self->fail_locked(net::error(errc::protocol_error,
                                     "HTTP/2 from " + self->peer_ +
                                         ": expected valid HTTP/2 frames (gRPC), got bytes nghttp2 "
                                         "rejects: " +
                                         nghttp2_strerror(static_cast<int>(rv))));
        co_return;
      }
      start = self->collect_output_locked();
      if (!self->failure_ && nghttp2_session_want_read(self->session_) == 0 &&
          nghttp2_session_want_write(self->session_) == 0) {
        // nghttp2 ended the session itself (a GOAWAY it sent for a
        // connection error, or one the peer sent with nothing left open).
        std::string what = "HTTP/2 from ";
        what.append(self->peer_).append(": expected valid HTTP/2 frames (gRPC), got ");
        if (self->session_error_.empty()) {
          what.append("the session ended by GOAWAY");
        } else {
          what.append("a connection error: ").append(self->session_error_);
        }
        self->fail_locked(net::error(errc::protocol_error, what));
      }
    }
    self->start_writer_if(start);
  }
}

task<void> grpc_channel::writer(std::shared_ptr<grpc_channel> self) {
  std::string chunk;
  for (;;) {
    {
      std::lock_guard lock(self->mutex_);
      if (self->outbox_.empty() || self->failure_) {
        self->writer_running_ = false;
        co_return;
      }
      chunk.clear();
      chunk.swap(self->outbox_);
    }
    try {
      co_await self->connection_.async_send_all(chunk, no_deadline, self->stop_.get_token());
    } catch (const net::error& e) {
      std::lock_guard lock(self->mutex_);
      self->fail_locked(e);
      self->writer_running_ = false;
      co_return;
    }
  }
}

bool grpc_channel::collect_output_locked() {
  if (failure_) return false;
  for (;;) {
    const std::uint8_t* data = nullptr;
    const auto n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail_locked(net::error(errc::protocol_error,
                             "HTTP/2 to " + peer_ + ": expected nghttp2 to produce frames, got " +
                                 nghttp2_strerror(static_cast<int>(n))));
      return false;
    }
    if (n == 0) break;
    outbox_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  if (outbox_.empty() || writer_running_) return false;
  writer_running_ = true;
  return true;
}

void grpc_channel::start_writer_if(bool needed) {
  if (needed) ring::detach(writer(shared_from_this()));
}

void grpc_channel::fail_locked(const net::error& why) {
  if (failure_) return;
  failure_.emplace(why);
  for (auto& [id, call] : open_calls_) {
    call->closed = true;
    if (!call->failure) call->failure.emplace(why);
    readable_changed_locked(*call);
  }
  open_calls_.clear();
  changed_.notify_all();
}

void grpc_channel::readable_changed_locked(grpc_call& call) {
  if (call.on_readable) call.on_readable();
}

void grpc_channel::submit_locked(grpc_call& call) {
  const std::string method = "POST", scheme = "http", content_type = "application/grpc",
                    te = "trailers";
  const nghttp2_nv headers[] = {header(":method", method),
                                header(":scheme", scheme),
                                header(":path", call.path),
                                header(":authority", peer_),
                                header("content-type", content_type),
                                header("te", te)};
  nghttp2_data_provider provider{};
  provider.source.ptr = &call;
  provider.read_callback = &callbacks::read_data;
  const std::int32_t id =
      nghttp2_submit_request(session_, nullptr, headers, std::size(headers), &provider, &call);
  if (id < 0) {
    throw net::error(
        errc::protocol_error,
        call_name(call, peer_) + ": expected HTTP/2 to open a stream, got " + nghttp2_strerror(id));
  }
  call.stream_id = id;
}

std::shared_ptr<grpc_call> grpc_channel::start_call(std::string path, std::string_view message,
                                                    bool end_stream,
                                                    std::function<void()> on_readable) {
  auto call = std::make_shared<grpc_call>();
  call->path = std::move(path);
  call->on_readable = std::move(on_readable);
  call->send_buffer.assign(message);
  call->send_closed = end_stream;
  bool start = false;
  {
    std::lock_guard lock(mutex_);
    if (failure_) throw *failure_;
    if (goaway_) {
      throw net::error(
          errc::connection_reset,
          call_name(*call, peer_) + ": expected the connection to accept new streams, got GOAWAY");
    }
    submit_locked(*call);
    open_calls_.emplace(call->stream_id, call);
    start = collect_output_locked();
  }
  start_writer_if(start);
  return call;
}

void grpc_channel::send_message(const std::shared_ptr<grpc_call>& call, std::string_view message) {
  bool start = false;
  {
    std::lock_guard lock(mutex_);
    if (call->failure) throw *call->failure;
    if (call->closed || call->send_closed) {
      throw net::error(errc::closed_by_peer, call_name(*call, peer_) +
                                                 ": expected an open request stream to send on, "
                                                 "got a closed one");
    }
    call->send_buffer.append(frame_message(message));
    if (call->send_deferred) {
      call->send_deferred = false;
      nghttp2_session_resume_data(session_, call->stream_id);
    }
    start = collect_output_locked();
  }
  start_writer_if(start);
}

bool grpc_channel::wait_readable(const std::shared_ptr<grpc_call>& call, steady_time deadline) {
  std::unique_lock lock(mutex_);
  const auto ready = [&] { return !call->messages.empty() || call->closed; };
  if (deadline == no_deadline) {
    changed_.wait(lock, ready);
    return true;
  }
  return changed_.wait_until(lock, deadline, ready);
}

bool grpc_channel::readable(const std::shared_ptr<grpc_call>& call) const {
  std::lock_guard lock(mutex_);
  return !call->messages.empty() || call->closed;
}

std::optional<std::string> grpc_channel::read_message(const std::shared_ptr<grpc_call>& call,
                                                      steady_time deadline) {
  if (!wait_readable(call, deadline)) {
    cancel(call);
    throw net::error(errc::timed_out, call_name(*call, peer_) +
                                          ": expected a response before the deadline, got "
                                          "none (the stream was cancelled)");
  }
  std::lock_guard lock(mutex_);
  if (!call->messages.empty()) {
    std::string m = std::move(call->messages.front());
    call->messages.pop_front();
    return m;
  }
  if (call->failure) throw *call->failure;
  const std::string name = call_name(*call, peer_);
  if (call->http_status != 200) {
    if (call->http_status == 0 && call->reset_code != 0) {
      throw net::error(errc::connection_reset,
                       name + ": expected a response, got the stream reset (HTTP/2 error " +
                           nghttp2_http2_strerror(call->reset_code) + ")");
    }
    throw net::error(errc::protocol_error, name + ": expected HTTP :status 200, got " +
                                               std::to_string(call->http_status));
  }
  if (call->content_type.rfind("application/grpc", 0) != 0) {
    throw net::error(
        errc::protocol_error,
        name + ": expected content-type application/grpc, got '" + call->content_type + "'");
  }
  if (!call->grpc_status) {
    throw net::error(call->reset_code != 0 ? errc::connection_reset : errc::protocol_error,
                     name + ": expected a grpc-status trailer, got the stream closed without one" +
                         (call->reset_code != 0 ? std::string(" (HTTP/2 error ") +
                                                      nghttp2_http2_strerror(call->reset_code) + ")"
                                                : std::string()));
  }
  if (*call->grpc_status == 0) {
    if (!call->receive_buffer.empty()) {
      throw net::error(errc::protocol_error, name + ": expected whole gRPC messages, got " +
                                                 std::to_string(call->receive_buffer.size()) +
                                                 " trailing bytes of a truncated one");
    }
    return std::nullopt;
  }
  const auto status = static_cast<grpc_status>(*call->grpc_status);
  throw grpc_error(errc_for(status, call->grpc_message), status, call->grpc_message,
                   name + ": etcd answered grpc-status " + std::to_string(*call->grpc_status) +
                       " (" + to_string(status) + "): " + call->grpc_message);
}

void grpc_channel::cancel(const std::shared_ptr<grpc_call>& call) {
  bool start = false;
  {
    std::lock_guard lock(mutex_);
    call->on_readable = nullptr;
    if (call->closed || failure_ || call->stream_id < 0) return;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
    start = collect_output_locked();
  }
  start_writer_if(start);
}

std::string grpc_channel::unary(std::string path, std::string_view request, steady_time deadline) {
  const auto call = start_call(std::move(path), frame_message(request), true);
  std::optional<std::string> response = read_message(call, deadline);
  if (!response) {
    throw net::error(errc::protocol_error, call_name(*call, peer_) +
                                               ": expected one response message, got none "
                                               "(grpc-status 0)");
  }
  if (read_message(call, deadline)) {
    throw net::error(errc::protocol_error,
                     call_name(*call, peer_) + ": expected one response message, got two");
  }
  return std::move(*response);
}

bool grpc_channel::broken() const {
  std::lock_guard lock(mutex_);
  return failure_.has_value() || goaway_;
}

void grpc_channel::shutdown() {
  stop_.request_stop();
  std::lock_guard lock(mutex_);
  fail_locked(net::error(errc::cancelled, "HTTP/2 to " + peer_ + ": the channel was shut down"));
}

}  // namespace hwsync::net::etcd::detail
