// TlsOptions: one side's TLS settings (see tls.h), without pulling asio or
// OpenSSL into the headers that carry them.
//
// Thread safety: a value.
#pragma once

#include <string>
#include <vector>

namespace keel::transport {

struct TlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string trusted_ca_file;  // empty: the system's roots
  bool client_cert_auth = false;
  std::string crl_file;
  // Accept a client (peer) certificate only with one of these common names
  // or hostnames (SAN DNS or IP). Empty: any.
  std::vector<std::string> allowed_cn;
  std::vector<std::string> allowed_hostname;
  // OpenSSL cipher list for TLS 1.2 and below ("" = OpenSSL's default).
  // As in Go, TLS 1.3's suites are not configurable.
  std::string cipher_list;
  // Self-signed (auto TLS): encrypt, but neither side verifies the other,
  // as etcd's auto TLS does.
  bool self_signed = false;

  bool enabled() const { return !cert_file.empty(); }
};

}  // namespace keel::transport
