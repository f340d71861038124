#include "server/tls_setup.h"

#include <spdlog/spdlog.h>

#include "transport/tls.h"

namespace keel::server {

Result<transport::TlsOptions> MakeTlsOptions(
    const ServerConfig& config, const TlsSide& side, const char* dir_name,
    const std::vector<Url>& hosts_from) {
  transport::TlsOptions t;
  t.cert_file = side.cert_file;
  t.key_file = side.key_file;
  t.trusted_ca_file = side.trusted_ca_file;
  t.client_cert_auth = side.client_cert_auth;
  t.crl_file = side.crl_file;
  t.allowed_cn = side.allowed_cn;
  t.allowed_hostname = side.allowed_hostname;
  if (!config.security.cipher_suites.empty()) {
    auto list =
        transport::GoCipherSuitesToOpenSsl(config.security.cipher_suites);
    if (!list.ok()) return list.status();
    t.cipher_list = *list;
  }
  if (side.auto_tls && !side.HasCert()) {
    // etcd: auto TLS only when no certificate is given.
    const std::string dir = config.data_dir + "/fixtures/" + dir_name;
    std::vector<std::string> hosts;
    for (const Url& u : hosts_from) hosts.push_back(u.host);
    KEEL_RETURN_IF_ERROR(transport::EnsureSelfSignedCert(
        dir, hosts, config.security.self_signed_cert_validity_years));
    t.cert_file = dir + "/cert.pem";
    t.key_file = dir + "/key.pem";
    t.trusted_ca_file.clear();
    t.self_signed = true;
    if (side.client_cert_auth) {
      spdlog::warn(
          "{} auto TLS: self-signed certificates are not verified; client "
          "certificate authentication is off",
          dir_name);
    }
    t.client_cert_auth = false;
  }
  return t;
}

}  // namespace keel::server
