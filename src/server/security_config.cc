#include "server/security_config.h"

#include <CLI/CLI.hpp>
#include <sstream>

#include "server/bool_flags.h"
#include "server/config.h"

namespace keel::server {
namespace {

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

void AddSecurityFlags(CLI::App& app, SecurityConfig* c, SecurityFlags* raw) {
  app.add_option("--cert-file", c->client.cert_file,
                 "Path to the client server TLS cert file.")
      ->envname("ETCD_CERT_FILE");
  app.add_option("--key-file", c->client.key_file,
                 "Path to the client server TLS key file.")
      ->envname("ETCD_KEY_FILE");
  app.add_option("--trusted-ca-file", c->client.trusted_ca_file,
                 "Path to the client server TLS trusted CA cert file.")
      ->envname("ETCD_TRUSTED_CA_FILE");
  AddBoolFlag(app, "client-cert-auth", &raw->client_cert_auth,
              "ETCD_CLIENT_CERT_AUTH", "Enable client cert authentication.");
  app.add_option("--client-crl-file", c->client.crl_file,
                 "Path to the client certificate revocation list file.")
      ->envname("ETCD_CLIENT_CRL_FILE");
  app.add_option("--client-cert-allowed-hostname", raw->client_allowed_hostname,
                 "Allowed TLS hostname for client cert authentication.")
      ->envname("ETCD_CLIENT_CERT_ALLOWED_HOSTNAME");
  AddBoolFlag(app, "auto-tls", &raw->auto_tls, "ETCD_AUTO_TLS",
              "Client TLS using generated certificates.");
  app.add_option("--peer-cert-file", c->peer.cert_file,
                 "Path to the peer server TLS cert file.")
      ->envname("ETCD_PEER_CERT_FILE");
  app.add_option("--peer-key-file", c->peer.key_file,
                 "Path to the peer server TLS key file.")
      ->envname("ETCD_PEER_KEY_FILE");
  app.add_option("--peer-trusted-ca-file", c->peer.trusted_ca_file,
                 "Path to the peer server TLS trusted CA file.")
      ->envname("ETCD_PEER_TRUSTED_CA_FILE");
  AddBoolFlag(app, "peer-client-cert-auth", &raw->peer_client_cert_auth,
              "ETCD_PEER_CLIENT_CERT_AUTH",
              "Enable peer client cert authentication.");
  app.add_option("--peer-crl-file", c->peer.crl_file,
                 "Path to the peer certificate revocation list file.")
      ->envname("ETCD_PEER_CRL_FILE");
  app.add_option("--peer-cert-allowed-cn", raw->peer_allowed_cn,
                 "Required CN for client certs connecting to the peer "
                 "endpoint.")
      ->envname("ETCD_PEER_CERT_ALLOWED_CN");
  app.add_option("--peer-cert-allowed-hostname", raw->peer_allowed_hostname,
                 "Allowed TLS hostname for inter peer authentication.")
      ->envname("ETCD_PEER_CERT_ALLOWED_HOSTNAME");
  AddBoolFlag(
      app, "peer-auto-tls", &raw->peer_auto_tls, "ETCD_PEER_AUTO_TLS",
      "Peer TLS using self-generated certificates if --peer-key-file and "
      "--peer-cert-file are not provided.");
  app.add_option("--cipher-suites", c->cipher_suites,
                 "Comma-separated list of supported TLS cipher suites between "
                 "client/server and peers.")
      ->envname("ETCD_CIPHER_SUITES");
  app.add_option("--self-signed-cert-validity",
                 c->self_signed_cert_validity_years,
                 "The validity period of the client and peer certificates, "
                 "unit is year.")
      ->envname("ETCD_SELF_SIGNED_CERT_VALIDITY");
  app.add_option("--auth-token", c->auth_token,
                 "Specify a v3 authentication token type and its options "
                 "('simple' or 'jwt').")
      ->envname("ETCD_AUTH_TOKEN");
  app.add_option("--auth-token-ttl", c->auth_token_ttl_s,
                 "Time (in seconds) of the auth-token-ttl.")
      ->envname("ETCD_AUTH_TOKEN_TTL");
  app.add_option("--bcrypt-cost", c->bcrypt_cost,
                 "Specify the cost / strength of the bcrypt algorithm for "
                 "hashing auth passwords. Valid values are between 4 and 31.")
      ->envname("ETCD_BCRYPT_COST");
}

Status FinishSecurityFlags(const SecurityFlags& raw,
                           const std::vector<Url>& listen_client_urls,
                           const std::vector<Url>& listen_peer_urls,
                           SecurityConfig* c) {
  KEEL_RETURN_IF_ERROR(ParseBoolFlag("client-cert-auth", raw.client_cert_auth,
                                     &c->client.client_cert_auth));
  KEEL_RETURN_IF_ERROR(ParseBoolFlag("peer-client-cert-auth",
                                     raw.peer_client_cert_auth,
                                     &c->peer.client_cert_auth));
  KEEL_RETURN_IF_ERROR(
      ParseBoolFlag("auto-tls", raw.auto_tls, &c->client.auto_tls));
  KEEL_RETURN_IF_ERROR(
      ParseBoolFlag("peer-auto-tls", raw.peer_auto_tls, &c->peer.auto_tls));
  c->peer.allowed_cn = SplitList(raw.peer_allowed_cn);
  c->peer.allowed_hostname = SplitList(raw.peer_allowed_hostname);
  c->client.allowed_hostname = SplitList(raw.client_allowed_hostname);
  if (c->bcrypt_cost < 4 || c->bcrypt_cost > 31) {
    return Status::InvalidArgument("invalid bcrypt-cost: " +
                                   std::to_string(c->bcrypt_cost));
  }
  if (c->self_signed_cert_validity_years <= 0) {
    return Status::InvalidArgument(
        "--self-signed-cert-validity must be positive");
  }
  // As etcd: an https listener needs a certificate (or auto TLS).
  for (const Url& u : listen_client_urls) {
    if (u.scheme == "https" && !c->client.HasCert() && !c->client.auto_tls) {
      return Status::InvalidArgument(
          "TLS key/cert (--cert-file, --key-file) must be provided for "
          "client url " +
          u.String() + " with HTTPS scheme");
    }
  }
  for (const Url& u : listen_peer_urls) {
    if (u.scheme == "https" && !c->peer.HasCert() && !c->peer.auto_tls) {
      return Status::InvalidArgument(
          "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided "
          "for peer url " +
          u.String() + " with HTTPS scheme");
    }
  }
  return Status::OK();
}

}  // namespace keel::server
