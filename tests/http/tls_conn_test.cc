// The ClientHello scan that routes https client connections: a real
// ClientHello from OpenSSL with and without ALPN, cut short, and not TLS.
#include "http/tls_conn.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

namespace keel::http {
namespace {

// The first bytes an OpenSSL client sends, offering alpn (wire format).
std::string ClientHello(const std::string& alpn_wire) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!alpn_wire.empty()) {
    SSL_CTX_set_alpn_protos(
        ctx, reinterpret_cast<const unsigned char*>(alpn_wire.data()),
        static_cast<unsigned>(alpn_wire.size()));
  }
  SSL* ssl = SSL_new(ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  SSL_set_tlsext_host_name(ssl, "localhost");
  EXPECT_EQ(SSL_connect(ssl), -1);  // wants the server's answer
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  std::string hello(data, static_cast<size_t>(n));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return hello;
}

TEST(ClientHello, AlpnOfferedIsRead) {
  std::vector<std::string> alpn;
  const std::string grpc = ClientHello(std::string("\x02h2", 3));
  ASSERT_EQ(PeekClientHelloAlpn(grpc, &alpn), HelloScan::kDone);
  EXPECT_EQ(alpn, std::vector<std::string>{"h2"});
  const std::string curl = ClientHello(std::string("\x02h2\x08http/1.1", 12));
  ASSERT_EQ(PeekClientHelloAlpn(curl, &alpn), HelloScan::kDone);
  EXPECT_EQ(alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  ASSERT_EQ(PeekClientHelloAlpn(ClientHello(""), &alpn), HelloScan::kDone);
  EXPECT_TRUE(alpn.empty());
  // Cut short: wait for more. Not a TLS handshake: refused.
  for (size_t n : {size_t{0}, size_t{3}, grpc.size() - 1}) {
    EXPECT_EQ(PeekClientHelloAlpn(grpc.substr(0, n), &alpn),
              HelloScan::kNeedMore)
        << n;
  }
  EXPECT_EQ(PeekClientHelloAlpn("GET / HTTP/1.1\r\n", &alpn),
            HelloScan::kNotTls);
  EXPECT_EQ(PeekClientHelloAlpn("PRI * HTTP/2.0\r\n", &alpn),
            HelloScan::kNotTls);
}

}  // namespace
}  // namespace keel::http
