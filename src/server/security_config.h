// SecurityConfig: etcd's TLS and auth flags (--cert-file ... --auth-token),
// parsed with the other flags (config.cc calls AddSecurityFlags and
// FinishSecurityFlags) and checked against the listen URLs.
//
// Thread safety: values.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace CLI {
class App;
}

namespace keel::server {

struct Url;

// One side (client or peer) of etcd's TLS settings.
struct TlsSide {
  std::string cert_file;
  std::string key_file;
  std::string trusted_ca_file;
  bool client_cert_auth = false;
  std::string crl_file;
  bool auto_tls = false;
  // Peer side: --peer-cert-allowed-cn, --peer-cert-allowed-hostname;
  // client side: --client-cert-allowed-hostname. Comma-separated lists.
  std::vector<std::string> allowed_cn;
  std::vector<std::string> allowed_hostname;

  bool HasCert() const { return !cert_file.empty() && !key_file.empty(); }
};

struct SecurityConfig {
  TlsSide client;
  TlsSide peer;
  // etcd's --cipher-suites (Go names, comma-separated), for both sides.
  std::string cipher_suites;
  int self_signed_cert_validity_years = 1;
  // --auth-token: "simple" or "jwt,pub-key=...,priv-key=...,sign-method=..."
  std::string auth_token = "simple";
  int auth_token_ttl_s = 300;
  int bcrypt_cost = 10;
};

// Raw flag values, as CLI11 fills them (bools may come as "true"/"1"/"").
struct SecurityFlags {
  std::string client_cert_auth = "false";
  std::string peer_client_cert_auth = "false";
  std::string auto_tls = "false";
  std::string peer_auto_tls = "false";
  std::string peer_allowed_cn;
  std::string peer_allowed_hostname;
  std::string client_allowed_hostname;
};

void AddSecurityFlags(CLI::App& app, SecurityConfig* c, SecurityFlags* raw);
// Converts the raw values and checks them against the listen URLs.
Status FinishSecurityFlags(const SecurityFlags& raw,
                           const std::vector<Url>& listen_client_urls,
                           const std::vector<Url>& listen_peer_urls,
                           SecurityConfig* c);

}  // namespace keel::server
