// net::tcp_connection: sockets whose connect/send/recv go through a ring.
// The blocking members use ring::run; the async ones co_await ring::async.
// Both map results to net::error in the same helpers, so a refused
// connection reads the same either way.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "hwsync/net/ring.hpp"

namespace hwsync::net {
namespace {

struct resolved_address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = 0;
};

std::string peer_name(std::string_view host, std::uint16_t port) {
  std::string name;
  if (host.find(':') != std::string_view::npos) {
    name.append("[").append(host).append("]");
  } else {
    name.append(host);
  }
  return name.append(":").append(std::to_string(port));
}

std::vector<resolved_address> resolve(std::string_view host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string host_text(host);
  const std::string port_text = std::to_string(port);
  const int rc = getaddrinfo(host_text.c_str(), port_text.c_str(), &hints, &list);
  if (rc != 0) {
    throw error(errc::address_unresolved,
                "resolve '" + host_text +
                    "': expected an IPv4/IPv6 address or a name that resolves, got " +
                    gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(list, &freeaddrinfo);
  std::vector<resolved_address> out;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    resolved_address r;
    std::memcpy(&r.storage, a->ai_addr, a->ai_addrlen);
    r.length = a->ai_addrlen;
    r.family = a->ai_family;
    out.push_back(r);
  }
  return out;
}

int open_socket(int family) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "socket(SOCK_STREAM)", "a socket");
  return fd;
}

void set_nodelay(int fd) {
  // Lock protocols send small requests and wait for the reply: Nagle would
  // hold each one back for the previous reply's ACK.
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

[[noreturn]] void throw_connect(int res, const std::string& peer) {
  throw_errno(-res, "connect to " + peer,
              res == -ETIME ? "a connection before the deadline" : "the peer to accept");
}

[[noreturn]] void throw_send(int res, const std::string& peer) {
  throw_errno(-res, "send to " + peer, "the peer to take the bytes");
}

[[noreturn]] void throw_recv(int res, const std::string& peer) {
  throw_errno(-res, "receive from " + peer, "bytes from the peer");
}

[[noreturn]] void throw_eof(const std::string& peer, std::size_t wanted, std::size_t got) {
  std::string message = "receive from " + peer + ": expected ";
  if (wanted == 0) {
    message += "more bytes, got end of stream: the peer closed the connection";
  } else {
    message += std::to_string(wanted) + " bytes, got " + std::to_string(got) +
               " before the peer closed the connection";
  }
  throw error(errc::closed_by_peer, message);
}

io_request make_request(io_request::kind k, int fd, const void* buf, std::size_t len,
                        steady_time deadline) {
  io_request req;
  req.op = k;
  req.fd = fd;
  req.buffer = const_cast<void*>(buf);  // send reads it, recv writes it
  req.length = len;
  req.deadline = deadline;
  return req;
}

}  // namespace

tcp_connection::tcp_connection(tcp_connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), peer_(std::move(other.peer_)), ring_(other.ring_) {}

tcp_connection& tcp_connection::operator=(tcp_connection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    peer_ = std::move(other.peer_);
    ring_ = other.ring_;
  }
  return *this;
}

tcp_connection::~tcp_connection() {
  close();
}

void tcp_connection::close() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

tcp_connection tcp_connection::connect(std::string_view host, std::uint16_t port,
                                       steady_time deadline, std::stop_token stop, ring& r) {
  detail::check_may_block("hwsync::net::tcp_connection::connect");
  const std::string peer = peer_name(host, port);
  int last = -ECONNREFUSED;
  for (const auto& address : resolve(host, port)) {
    const int fd = open_socket(address.family);
    io_request req = make_request(io_request::kind::connect, fd, nullptr, 0, deadline);
    req.address = reinterpret_cast<const sockaddr*>(&address.storage);
    req.address_length = address.length;
    const int res = r.run(req, stop);
    if (res == 0) {
      set_nodelay(fd);
      return tcp_connection(fd, peer, r);
    }
    ::close(fd);
    last = res;
    if (res == -ETIME || res == -ECANCELED) break;  // no time left for the next address
  }
  throw_connect(last, peer);
}

task<tcp_connection> tcp_connection::async_connect(std::string host, std::uint16_t port,
                                                   steady_time deadline, std::stop_token stop,
                                                   ring& r) {
  const std::string peer = peer_name(host, port);
  int last = -ECONNREFUSED;
  for (const auto& address : resolve(host, port)) {
    const int fd = open_socket(address.family);
    io_request req = make_request(io_request::kind::connect, fd, nullptr, 0, deadline);
    req.address = reinterpret_cast<const sockaddr*>(&address.storage);
    req.address_length = address.length;
    const int res = co_await r.async(req, stop);
    if (res == 0) {
      set_nodelay(fd);
      co_return tcp_connection(fd, peer, r);
    }
    ::close(fd);
    last = res;
    if (res == -ETIME || res == -ECANCELED) break;
  }
  throw_connect(last, peer);
}

void tcp_connection::send_all(std::string_view data, steady_time deadline, std::stop_token stop) {
  detail::check_may_block("hwsync::net::tcp_connection::send_all");
  while (!data.empty()) {
    const int res = ring_->run(
        make_request(io_request::kind::send, fd_, data.data(), data.size(), deadline), stop);
    if (res < 0) throw_send(res, peer_);
    data.remove_prefix(static_cast<std::size_t>(res));
  }
}

task<void> tcp_connection::async_send_all(std::string_view data, steady_time deadline,
                                          std::stop_token stop) {
  while (!data.empty()) {
    const int res = co_await ring_->async(
        make_request(io_request::kind::send, fd_, data.data(), data.size(), deadline), stop);
    if (res < 0) throw_send(res, peer_);
    data.remove_prefix(static_cast<std::size_t>(res));
  }
}

std::size_t tcp_connection::recv_some(std::span<char> buffer, steady_time deadline,
                                      std::stop_token stop) {
  detail::check_may_block("hwsync::net::tcp_connection::recv_some");
  const int res = ring_->run(
      make_request(io_request::kind::recv, fd_, buffer.data(), buffer.size(), deadline), stop);
  if (res < 0) throw_recv(res, peer_);
  if (res == 0 && !buffer.empty()) throw_eof(peer_, 0, 0);
  return static_cast<std::size_t>(res);
}

task<std::size_t> tcp_connection::async_recv_some(std::span<char> buffer, steady_time deadline,
                                                  std::stop_token stop) {
  const int res = co_await ring_->async(
      make_request(io_request::kind::recv, fd_, buffer.data(), buffer.size(), deadline), stop);
  if (res < 0) throw_recv(res, peer_);
  if (res == 0 && !buffer.empty()) throw_eof(peer_, 0, 0);
  co_return static_cast<std::size_t>(res);
}

void tcp_connection::recv_exact(std::span<char> buffer, steady_time deadline,
                                std::stop_token stop) {
  detail::check_may_block("hwsync::net::tcp_connection::recv_exact");
  std::size_t got = 0;
  while (got < buffer.size()) {
    const auto rest = buffer.subspan(got);
    const int res = ring_->run(
        make_request(io_request::kind::recv, fd_, rest.data(), rest.size(), deadline), stop);
    if (res < 0) throw_recv(res, peer_);
    if (res == 0) throw_eof(peer_, buffer.size(), got);
    got += static_cast<std::size_t>(res);
  }
}

}  // namespace hwsync::net
