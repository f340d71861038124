#include "api/client_tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/server_context.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <fstream>
#include <set>
#include <sstream>

#include "server/tls_setup.h"
#include "transport/tls.h"

namespace keel::api {
namespace {

Result<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    return Status::InvalidArgument(std::string("cannot read ") + what + " " +
                                   path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// What etcd checks beyond the chain: the CRL's serials, the allowed hostname.
class EtcdChecks final
    : public grpc::experimental::ExternalCertificateVerifier {
 public:
  EtcdChecks(std::set<std::string> revoked, std::vector<std::string> hosts)
      : revoked_(std::move(revoked)), hosts_(std::move(hosts)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    *sync_status = Check(request->peer_cert());
    return true;  // synchronous
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {
  }

 private:
  grpc::Status Check(grpc::string_ref pem) const {
    if (pem.empty()) return grpc::Status::OK;  // no client certificate asked
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (cert == nullptr) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "unparsable client certificate");
    }
    grpc::Status s = grpc::Status::OK;
    if (revoked_.count(transport::SerialHex(cert)) != 0) {
      s = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                       "client certificate is revoked");
    } else if (!hosts_.empty()) {
      bool ok = false;
      for (const std::string& h : hosts_) {
        ok = ok || X509_check_ip_asc(cert, h.c_str(), 0) == 1 ||
             X509_check_host(cert, h.data(), h.size(), 0, nullptr) == 1;
      }
      if (!ok) {
        s = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                         "client certificate names no allowed hostname");
      }
    }
    X509_free(cert);
    return s;
  }

  const std::set<std::string> revoked_;
  const std::vector<std::string> hosts_;
};

}  // namespace

Result<std::shared_ptr<grpc::ServerCredentials>> ClientTlsCredentials(
    const server::ServerConfig& config) {
  auto opts = server::MakeTlsOptions(config, config.security.client, "client",
                                     config.listen_client_urls);
  if (!opts.ok()) return opts.status();
  if (!opts->cipher_list.empty()) {
    // gRPC reads its TLS 1.2 cipher list from this variable when it builds
    // its first TLS context, which is after this point.
    setenv("GRPC_SSL_CIPHER_SUITES", opts->cipher_list.c_str(), 1);
  }
  auto cert = ReadFile(opts->cert_file, "certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(opts->key_file, "key");
  if (!key.ok()) return key.status();
  // Load the files through OpenSSL too, so that a mismatched key or a bad
  // file fails the start with a clear message rather than each handshake.
  KEEL_RETURN_IF_ERROR(transport::TlsContext::Create(*opts).status());
  std::string roots;
  if (!opts->trusted_ca_file.empty()) {
    auto r = ReadFile(opts->trusted_ca_file, "trusted CA file");
    if (!r.ok()) return r.status();
    roots = std::move(r).value();
  }
  std::set<std::string> revoked;
  if (!opts->crl_file.empty()) {
    auto r = transport::LoadRevokedSerials(opts->crl_file);
    if (!r.ok()) return r.status();
    revoked = std::move(r).value();
  }
  using grpc::experimental::IdentityKeyCertPair;
  std::vector<IdentityKeyCertPair> pairs = {{*key, *cert}};
  auto provider =
      roots.empty()
          ? std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
                pairs)
          : std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
                roots, pairs);
  grpc::experimental::TlsServerCredentialsOptions o(provider);
  o.watch_identity_key_cert_pairs();
  if (!roots.empty()) o.watch_root_certs();
  if (opts->client_cert_auth) {
    if (roots.empty()) {
      return Status::InvalidArgument(
          "--client-cert-auth needs --trusted-ca-file");
    }
    o.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    o.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  o.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<EtcdChecks>(
          std::move(revoked), opts->allowed_hostname));
  return grpc::experimental::TlsServerCredentials(o);
}

std::string PeerCommonName(const grpc::ServerContext* ctx) {
  auto auth = ctx->auth_context();
  if (!auth) return "";
  auto v = auth->FindPropertyValues("x509_common_name");
  if (v.empty()) return "";
  return std::string(v[0].data(), v[0].size());
}

}  // namespace keel::api
