// Server: the gRPC channels keel's own calls to other members use (lease
// keepalive and TimeToLive forwarding, MemberPromote and `keel member
// replace` forwarding, the corruption check's HashKV).
//
// They dial a member's client URL with the credentials etcd gives its own
// internal clients: plaintext for http://; for https:// TLS that trusts
// --trusted-ca-file (the system's roots without it) and presents this
// member's --cert-file/--key-file as client certificate, so that a cluster
// started with --client-cert-auth accepts them; with --auto-tls (self-signed
// certificates) the server's certificate is not verified, as etcd does not
// verify it either.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include "server/server.h"
#include "server/tls_setup.h"

namespace keel::server {

namespace {

Result<std::string> ReadWhole(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::InvalidArgument("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Result<std::shared_ptr<grpc::ChannelCredentials>> ClientUrlCredentials(
    const ServerConfig& config) {
  auto opts = MakeTlsOptions(config, config.security.client, "client",
                             config.listen_client_urls);
  if (!opts.ok()) return opts.status();
  std::string roots;
  if (!opts->trusted_ca_file.empty()) {
    auto r = ReadWhole(opts->trusted_ca_file);
    if (!r.ok()) return r.status();
    roots = std::move(r).value();
  }
  std::vector<grpc::experimental::IdentityKeyCertPair> pairs;
  if (opts->enabled()) {
    auto cert = ReadWhole(opts->cert_file);
    if (!cert.ok()) return cert.status();
    auto key = ReadWhole(opts->key_file);
    if (!key.ok()) return key.status();
    pairs.push_back({std::move(key).value(), std::move(cert).value()});
  }
  grpc::experimental::TlsChannelCredentialsOptions o;
  if (!roots.empty() || !pairs.empty()) {
    o.set_certificate_provider(
        std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
            roots, pairs));
  }
  if (!roots.empty()) o.watch_root_certs();  // else the system's roots
  if (!pairs.empty()) o.watch_identity_key_cert_pairs();
  if (opts->self_signed) {
    o.set_verify_server_certs(false);
    o.set_certificate_verifier(
        std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  }
  return grpc::experimental::TlsCredentials(o);
}

}  // namespace

struct Server::InternalChannels {
  std::mutex mu;
  // Built at the first https URL; nullptr (and logged) if that failed.
  std::shared_ptr<grpc::ChannelCredentials> tls;  // guarded by mu
  bool tls_tried = false;                         // guarded by mu
  std::map<std::string, std::shared_ptr<grpc::Channel>> by_url;  // mu
};

std::shared_ptr<Server::InternalChannels> Server::NewInternalChannels() {
  return std::make_shared<InternalChannels>();
}

std::shared_ptr<grpc::Channel> Server::MemberChannel(
    const std::string& client_url) {
  auto u = ParseUrl(client_url);
  if (!u.ok()) return nullptr;
  InternalChannels& c = *internal_channels_;
  std::lock_guard l(c.mu);
  auto& ch = c.by_url[client_url];
  if (ch) return ch;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  if (u->scheme != "https") {
    ch = grpc::CreateCustomChannel(u->HostPort(),
                                   grpc::InsecureChannelCredentials(), args);
    return ch;
  }
  if (!c.tls_tried) {
    c.tls_tried = true;
    auto creds = ClientUrlCredentials(config_);
    if (!creds.ok()) {
      spdlog::error("cannot make TLS credentials to call other members: {}",
                    creds.status().ToString());
    } else {
      c.tls = std::move(creds).value();
    }
  }
  if (!c.tls) {
    c.by_url.erase(client_url);
    return nullptr;
  }
  ch = grpc::CreateCustomChannel(u->HostPort(), c.tls, args);
  return ch;
}

}  // namespace keel::server
