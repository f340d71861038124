// Listener: accepts TCP connections on one or more addresses and routes
// each by its first bytes, like etcd's cmux: HTTP/2 (gRPC) to a callback
// that takes the socket (keel hands it to gRPC with
// grpc::AddInsecureChannelFromFd), everything else to the HTTP/1.x Server.
//
// The first bytes are peeked (MSG_PEEK), never consumed, so the protocol
// that gets the socket reads the whole stream. Peeking waits asynchronously
// on one io thread with a deadline: a client that connects and sends
// nothing holds a socket until sniff_timeout_ms, and blocks nobody.
//
// TLS (https client URLs): the sniff reads the ALPN protocols of the
// client's ClientHello (not encrypted). gRPC clients offer "h2" only (or
// with "grpc-exp"), never "http/1.1": their connection goes, still
// encrypted, to on_tls_grpc (keel relays it to gRPC's own TLS port: gRPC
// cannot take a TLS session as an fd, and terminating TLS in gRPC keeps the
// client certificate on each call's AuthContext). The others (curl,
// browsers, Prometheus: "http/1.1" offered, or no ALPN) are served by the
// HTTP/1.1 server over a TlsConn (tls_conn.h).
//
// Thread safety: Start/Stop from one thread; callbacks run on the io thread
// and must not block (Server::Serve starts a thread; gRPC's fd hand-off
// returns at once).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "http/server.h"

namespace keel::http {

struct ListenerOptions {
  // Takes a connected socket whose first bytes are the HTTP/2 client
  // preface. Unset: such connections are closed.
  std::function<void(int fd)> on_http2;
  // Serves the other connections (required).
  Server* http = nullptr;
  int sniff_timeout_ms = 30 * 1000;
  // TLS addresses (Address::tls): a client whose ClientHello offers "h2"
  // and not "http/1.1" (every gRPC client) goes, still encrypted, to
  // on_tls_grpc; the others are served by `http` over make_tls_conn(fd)
  // (a TlsConn). Both required when an address has tls set.
  std::function<void(int fd)> on_tls_grpc;
  std::function<std::unique_ptr<Conn>(int fd)> make_tls_conn;
};

struct Address {
  std::string host;
  uint16_t port = 0;
  bool tls = false;
};

class Listener {
 public:
  // Binds every (host, port); port 0 picks one (see ports()). A host name
  // binds each address it resolves to, on the same port.
  static Result<std::unique_ptr<Listener>> Start(
      const std::vector<std::pair<std::string, uint16_t>>& addrs,
      ListenerOptions options);
  // The same, with addresses that may be TLS ones.
  static Result<std::unique_ptr<Listener>> StartAddresses(
      const std::vector<Address>& addrs, ListenerOptions options);
  ~Listener();
  // Stops accepting, closes connections still being sniffed, joins the io
  // thread. Connections already handed off are not touched.
  void Stop();
  // The port bound for each address, in order.
  const std::vector<uint16_t>& ports() const { return ports_; }

  class Impl;

 private:
  explicit Listener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::vector<uint16_t> ports_;
};

// The HTTP/2 connection preface (RFC 9113 3.4).
inline constexpr std::string_view kHttp2Preface =
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

}  // namespace keel::http
