// TLS for keel's listeners and dialers, with etcd's semantics and flags.
//
//  - TlsOptions: one side's files and checks (etcd's --peer-cert-file,
//    --peer-key-file, --peer-trusted-ca-file, --peer-client-cert-auth,
//    --peer-crl-file, --peer-cert-allowed-cn, --peer-cert-allowed-hostname,
//    --cipher-suites, --peer-auto-tls; and the client-side equivalents).
//  - TlsContext: the OpenSSL contexts built from TlsOptions, and the checks
//    OpenSSL's chain verification does not do the way etcd does them: a
//    revoked serial (etcd checks the CRL's serials itself, so a CA without a
//    CRL is not an error), the allowed common name, the allowed hostname.
//  - Stream: a TCP socket with or without TLS on it, so the transport's
//    reading and writing code is the same for both.
//  - GoCipherSuitesToOpenSsl: etcd's (Go's) suite names to OpenSSL's.
//  - EnsureSelfSignedCert: --auto-tls / --peer-auto-tls, as etcd does it.
//
// Thread safety: TlsContext is immutable after Create() and may be shared by
// any number of connections. A Stream is used by one thread at a time (the
// transport's io thread), with at most one read and one write in flight.
#pragma once

#define ASIO_NO_DEPRECATED
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/tls_options.h"

namespace keel::transport {

class TlsContext {
 public:
  // Reads the files; the error names the file and what is wrong with it.
  static Result<std::shared_ptr<TlsContext>> Create(const TlsOptions& o);

  asio::ssl::context& server() { return server_; }
  asio::ssl::context& client() { return client_; }
  const TlsOptions& options() const { return opts_; }

  // Checks run after a successful handshake. server_side: we accepted the
  // connection (checks the client's certificate, if it sent one).
  Status CheckPeer(SSL* ssl, bool server_side) const;
  // For the dialer: the certificate must name this host (DNS or IP), as Go
  // checks for an https URL. No-op for self-signed (auto TLS).
  Status SetExpectedHost(SSL* ssl, const std::string& host) const;

 private:
  explicit TlsContext(const TlsOptions& o);
  Status Init();

  const TlsOptions opts_;
  asio::ssl::context server_;
  asio::ssl::context client_;
  // Serials (hex, upper case) of revoked certificates, from crl_file.
  std::set<std::string> revoked_;
};

// Revoked serials in a PEM or DER CRL file, as upper-case hex.
Result<std::set<std::string>> LoadRevokedSerials(const std::string& path);
// The serial of a certificate, as LoadRevokedSerials spells it.
std::string SerialHex(X509* cert);
// Common name of the certificate's subject ("" if none).
std::string CommonName(X509* cert);

// etcd's --cipher-suites value (comma-separated Go names, e.g.
// "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") as an OpenSSL cipher list. An
// unknown name is an error with etcd's message.
Result<std::string> GoCipherSuitesToOpenSsl(const std::string& go_names);

// etcd's auto TLS: <dir>/cert.pem and <dir>/key.pem, an ECDSA P-256 key and a
// self-signed certificate for hosts (IPs and names), valid validity_years
// (etcd's --self-signed-cert-validity, default 1). Existing files are kept,
// as etcd keeps them.
Status EnsureSelfSignedCert(const std::string& dir,
                            const std::vector<std::string>& hosts,
                            int validity_years);

// A TCP socket, optionally with TLS on top. An AsyncReadStream and
// AsyncWriteStream for asio::async_read/async_write.
class Stream {
 public:
  using executor_type = asio::ip::tcp::socket::executor_type;

  explicit Stream(asio::ip::tcp::socket s) : plain_(std::move(s)) {}
  Stream(asio::ip::tcp::socket s, asio::ssl::context& ctx)
      : tls_(std::make_shared<asio::ssl::stream<asio::ip::tcp::socket>>(
            std::move(s), ctx)) {}

  asio::ip::tcp::socket& socket() {
    return tls_ ? tls_->next_layer() : *plain_;
  }
  executor_type get_executor() { return socket().get_executor(); }
  // nullptr for plain TCP.
  asio::ssl::stream<asio::ip::tcp::socket>* tls() { return tls_.get(); }
  void close(asio::error_code& ec) { socket().close(ec); }

  template <typename Buffers, typename Handler>
  void async_read_some(const Buffers& b, Handler&& h) {
    if (tls_) {
      // The handler keeps the TLS stream alive: its pending operations
      // refer to the stream's state, and callers may destroy the Stream
      // after close() while an operation is still to complete (aborted).
      tls_->async_read_some(
          b, [keep = tls_, h = std::forward<Handler>(h)](
                 const asio::error_code& ec, size_t n) mutable { h(ec, n); });
    } else {
      plain_->async_read_some(b, std::forward<Handler>(h));
    }
  }
  template <typename Buffers, typename Handler>
  void async_write_some(const Buffers& b, Handler&& h) {
    if (tls_) {
      tls_->async_write_some(
          b, [keep = tls_, h = std::forward<Handler>(h)](
                 const asio::error_code& ec, size_t n) mutable { h(ec, n); });
    } else {
      plain_->async_write_some(b, std::forward<Handler>(h));
    }
  }

 private:
  std::optional<asio::ip::tcp::socket> plain_;
  std::shared_ptr<asio::ssl::stream<asio::ip::tcp::socket>> tls_;
};

}  // namespace keel::transport
