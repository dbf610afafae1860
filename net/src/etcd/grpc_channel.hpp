// grpc_channel — gRPC over one cleartext HTTP/2 connection (h2c, prior
// knowledge), the transport of the etcd client. Private to hwsync_net.
//
// Contract
//   Connection   One tcp_connection on the ring and one nghttp2 client
//                session. Every call — unary or a long-lived bidirectional
//                stream (Watch, LeaseKeepAlive) — is one HTTP/2 stream on
//                that connection; nothing opens a second one.
//   I/O          nghttp2 does no I/O. A reader coroutine on the ring feeds
//                it what the socket delivers; whatever the session wants to
//                send is collected into one outbox and written by a single
//                writer coroutine (started when the outbox becomes non-empty
//                and none runs), so the socket has one sender and one
//                receiver, as tcp_connection requires.
//   Threads      Every nghttp2 call and all call state are under one
//                hwsync::mutex (held briefly, also on the loop thread: no
//                I/O and no waiting under it). Callers block on a
//                hwsync::condition_variable, never on the loop thread.
//   Framing      gRPC's length-prefixed messages: 1 byte compressed flag
//                (must be 0: no grpc-encoding is negotiated), 4 bytes
//                big-endian length, the message. A message over 64 MiB or a
//                compressed one is a protocol_error.
//   Errors       grpc-status != 0 in the trailers -> etcd::grpc_error (a
//                net::error). Bytes that are not HTTP/2, a response without
//                :status 200, content-type application/grpc or grpc-status
//                -> net::error(protocol_error) naming what was expected and
//                what came. Connection loss fails every open call with the
//                ring's typed error (connection_reset, closed_by_peer, ...)
//                and marks the channel broken for good; the client opens a
//                new one.
//   Deadlines    Each wait takes a steady_clock deadline; past it the
//                stream is reset (RST_STREAM CANCEL) and timed_out thrown.
//
// State of one call (grpc_call, under the channel's mutex):
//   stream_id  send_closed  closed  meaning                     next
//   -1         any          no      made, not yet submitted     start_call submits
//   >0         no           no      request stream open         send_message; cancel
//   >0         yes          no      request sent, awaiting end  messages arrive
//   any        any          yes     ended: trailers, RST, or    read_message drains messages,
//                                   the channel failed          then returns/throws the status
// State of the channel: failure_ unset = live; set = failed for good (every
// open call failed with it, no new call starts); goaway_ = no new streams.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "hwsync/condition_variable.hpp"
#include "hwsync/mutex.hpp"
#include "hwsync/net/error.hpp"
#include "hwsync/net/ring.hpp"

struct nghttp2_session;

namespace hwsync::net::etcd::detail {

class grpc_channel;

// One gRPC call (one HTTP/2 stream). All members are guarded by the
// channel's mutex.
struct grpc_call {
  std::string path;             // "/etcdserverpb.KV/Range", for messages
  std::int32_t stream_id = -1;  // -1 until submitted
  // Outgoing: framed messages not yet taken by nghttp2.
  std::string send_buffer;
  bool send_closed = false;    // end the request stream once send_buffer drains
  bool send_deferred = false;  // nghttp2 waits for resume_data
  // Incoming.
  std::string receive_buffer;  // DATA bytes not yet a whole message
  std::deque<std::string> messages;
  int http_status = 0;
  std::string content_type;
  std::optional<int> grpc_status;
  std::string grpc_message;
  bool closed = false;                // the stream is closed (or the channel failed)
  std::uint32_t reset_code = 0;       // RST_STREAM / close error code
  std::optional<net::error> failure;  // a protocol or connection failure of this call
  // Called, under the channel's mutex, each time the call may have become
  // readable (a message, the end, a failure): for a reader that waits on
  // more than this one call (the lease keeper). Must not block or call
  // the channel. Cleared by cancel(): never called after it returns.
  std::function<void()> on_readable;
};

class grpc_channel : public std::enable_shared_from_this<grpc_channel> {
 public:
  // Connects to host:port by `deadline` and starts the HTTP/2 session and
  // its reader. Throws net::error (connection_refused, timed_out, ...).
  static std::shared_ptr<grpc_channel> connect(const std::string& host, std::uint16_t port,
                                               steady_time deadline);
  ~grpc_channel();
  grpc_channel(const grpc_channel&) = delete;
  grpc_channel& operator=(const grpc_channel&) = delete;

  // Opens a stream for `path` and queues `first_message` (already framed
  // or empty); `end_stream` half-closes after it (a unary request).
  // `on_readable`: see grpc_call::on_readable.
  std::shared_ptr<grpc_call> start_call(std::string path, std::string_view message, bool end_stream,
                                        std::function<void()> on_readable = {});
  // Queues one more message on an open request stream.
  void send_message(const std::shared_ptr<grpc_call>& call, std::string_view message);
  // The next response message; nullopt when the stream ended with
  // grpc-status 0. Throws grpc_error / net::error (see Errors, Deadlines).
  std::optional<std::string> read_message(const std::shared_ptr<grpc_call>& call,
                                          steady_time deadline);
  // Waits until read_message would not block (a message, the end, or a
  // failure is there); false if `deadline` passed first. The stream stays
  // open either way.
  bool wait_readable(const std::shared_ptr<grpc_call>& call, steady_time deadline);
  // wait_readable without the wait: true if read_message would not block.
  bool readable(const std::shared_ptr<grpc_call>& call) const;
  // Resets the stream (RST_STREAM CANCEL) unless it is closed already, and
  // detaches its on_readable.
  void cancel(const std::shared_ptr<grpc_call>& call);

  // One request, one response: start_call + read_message + the trailers.
  std::string unary(std::string path, std::string_view request, steady_time deadline);

  // True once the connection failed or the peer sent GOAWAY: no new calls.
  bool broken() const;
  const std::string& peer() const noexcept { return peer_; }
  // Stops the reader (cancels its receive) and fails every open call.
  void shutdown();

  // For the nghttp2 callbacks (grpc_channel.cpp), under mutex_.
  struct callbacks;

 private:
  grpc_channel(tcp_connection connection, std::string peer);
  void start_reader();
  static task<void> reader(std::shared_ptr<grpc_channel> self);
  static task<void> writer(std::shared_ptr<grpc_channel> self);
  // Moves what nghttp2 wants to send into outbox_; true if the caller must
  // start the writer (after unlocking). Fails the channel on a session error.
  bool collect_output_locked();
  void start_writer_if(bool needed);
  void fail_locked(const net::error& why);
  static void readable_changed_locked(grpc_call& call);
  void submit_locked(grpc_call& call);

  mutable hwsync::mutex mutex_;
  hwsync::condition_variable changed_;  // a call's state changed
  nghttp2_session* session_ = nullptr;
  tcp_connection connection_;
  std::string peer_;
  std::string outbox_;
  bool writer_running_ = false;
  bool goaway_ = false;
  std::string session_error_;          // nghttp2's last error message
  std::optional<net::error> failure_;  // the whole channel failed
  std::map<std::int32_t, std::shared_ptr<grpc_call>> open_calls_;
  std::stop_source stop_;
};

// Frames one message for gRPC: flag 0, big-endian length, bytes.
std::string frame_message(std::string_view message);

}  // namespace hwsync::net::etcd::detail
