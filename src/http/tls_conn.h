// TlsConn: an http::Conn that terminates TLS on an accepted socket, so that
// the HTTP/1.1 server (JSON gateway, /health, /metrics...) runs on https
// client URLs as etcd serves them there.
//
// The handshake runs on the connection's own thread at the first Read (not
// on the listener's io thread), bounded by that read's timeout; then
// `check` (etcd's checks beyond the chain: a revoked serial, the allowed
// hostname) decides whether the client stays.
//
// PeekClientHelloAlpn reads the protocols a TLS client offers (ALPN) from
// the bytes of its ClientHello, before anything is decrypted: the listener
// sends gRPC clients (they offer "h2" and never "http/1.1") to gRPC's own
// TLS port and the others here.
//
// Thread safety: Read/Write/CloseWrite from the connection thread;
// WaitPeerGone and Abort from any thread (they touch only the socket).
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "http/server.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace keel::http {

class TlsConn final : public Conn {
 public:
  // ctx: a server context (certificate, verification mode); owns fd.
  TlsConn(int fd, SSL_CTX* ctx, std::function<bool(SSL*)> check);
  ~TlsConn() override;
  ssize_t Read(char* buf, size_t n, int timeout_ms) override;
  bool Write(std::string_view data, int timeout_ms) override;
  bool WaitPeerGone(int timeout_ms, int wake_fd) override;
  void Abort() override;
  void CloseWrite() override;

 private:
  bool Handshake(int timeout_ms);
  // After an SSL call returned r <= 0: waits for what it needs.
  bool Wait(int r, int timeout_ms);

  const int fd_;
  SSL* ssl_;
  std::function<bool(SSL*)> check_;
  bool handshaken_ = false;
  bool failed_ = false;
};

// Makes ctx answer ALPN with "http/1.1" when the client offers it (and with
// nothing otherwise), so that a client offering h2 too speaks HTTP/1.1.
void PreferHttp11(SSL_CTX* ctx);

enum class HelloScan { kNeedMore, kNotTls, kDone };
// Scans the first bytes of a connection: kDone with *alpn set to the
// protocols the ClientHello offers (empty: none), kNeedMore if the first
// record is not complete yet, kNotTls if it is no TLS handshake.
HelloScan PeekClientHelloAlpn(std::string_view bytes,
                              std::vector<std::string>* alpn);

}  // namespace keel::http

namespace keel::http {

// Pumps bytes both ways between client_fd and a new connection to
// 127.0.0.1:port, on a thread of its own, until either side closes; owns
// client_fd. (keel's https client ports hand gRPC connections, still
// encrypted, to gRPC's own TLS port this way.)
void RelayToLoopback(int client_fd, uint16_t port);

}  // namespace keel::http
