#include "transport/tls.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

namespace keel::transport {
namespace {

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

Status FileError(const std::string& what, const std::string& path) {
  return Status::InvalidArgument(what + " " + path + ": " + OpenSslError());
}

std::string BnHex(const ASN1_INTEGER* serial) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

// Does cert name host, as a SAN DNS name (or CN, as OpenSSL allows when there
// is no SAN) or as a SAN IP address?
bool CertMatchesHost(X509* cert, const std::string& host) {
  if (X509_check_ip_asc(cert, host.c_str(), 0) == 1) return true;
  return X509_check_host(cert, host.data(), host.size(), 0, nullptr) == 1;
}

bool IsIpAddress(const std::string& host) {
  asio::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::string SerialHex(X509* cert) {
  return BnHex(X509_get0_serialNumber(cert));
}

std::string CommonName(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  if (name == nullptr) return "";
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), n);
  OPENSSL_free(utf8);
  return out;
}

Result<std::set<std::string>> LoadRevokedSerials(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Status::InvalidArgument("cannot open CRL file " + path + ": " +
                                   std::strerror(errno));
  }
  X509_CRL* crl = PEM_read_X509_CRL(f, nullptr, nullptr, nullptr);
  if (crl == nullptr) {
    ERR_clear_error();
    std::rewind(f);
    crl = d2i_X509_CRL_fp(f, nullptr);
  }
  std::fclose(f);
  if (crl == nullptr) return FileError("cannot parse CRL file", path);
  std::set<std::string> out;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); i++) {
    out.insert(BnHex(
        X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i))));
  }
  X509_CRL_free(crl);
  return out;
}

Result<std::string> GoCipherSuitesToOpenSsl(const std::string& go_names) {
  static const std::map<std::string, std::string> kSuites = {
      {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
      {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
      {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
      {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
      {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
      {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
      {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
      {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
      {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
       "ECDHE-ECDSA-AES128-GCM-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
      {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
       "ECDHE-ECDSA-AES256-GCM-SHA384"},
      {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
       "ECDHE-ECDSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
       "ECDHE-RSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
       "ECDHE-ECDSA-CHACHA20-POLY1305"},
  };
  std::string out;
  size_t pos = 0;
  while (pos <= go_names.size()) {
    size_t comma = go_names.find(',', pos);
    if (comma == std::string::npos) comma = go_names.size();
    std::string name = go_names.substr(pos, comma - pos);
    pos = comma + 1;
    if (name.empty()) continue;
    auto it = kSuites.find(name);
    if (it == kSuites.end()) {
      return Status::InvalidArgument("unexpected TLS cipher suite \"" + name +
                                     "\"");
    }
    if (!out.empty()) out += ':';
    out += it->second;
  }
  return out;
}

Status EnsureSelfSignedCert(const std::string& dir,
                            const std::vector<std::string>& hosts,
                            int validity_years) {
  namespace fs = std::filesystem;
  const std::string cert_path = dir + "/cert.pem";
  const std::string key_path = dir + "/key.pem";
  std::error_code ec;
  if (fs::exists(cert_path, ec) && fs::exists(key_path, ec)) {
    return Status::OK();
  }
  fs::create_directories(dir, ec);
  if (ec) {
    return Status::IOError("cannot create " + dir + ": " + ec.message());
  }
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) {
    return Status::IOError("generate key: " + OpenSslError());
  }
  X509* x = X509_new();
  X509_set_version(x, 2);
  // A random 128-bit serial, as Go's crypto/x509 users (etcd) pick one.
  BIGNUM* bn = BN_new();
  BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x),
                  static_cast<long>(validity_years) * 365 * 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("etcd"), -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  std::string san;
  for (const std::string& h : hosts) {
    if (h.empty()) continue;
    bool ip = IsIpAddress(h);
    if (!san.empty()) san += ",";
    san += (ip ? "IP:" : "DNS:") + h;
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  auto add_ext = [&](int nid, const std::string& value) {
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (e == nullptr) return false;
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return true;
  };
  bool ok =
      add_ext(NID_key_usage, "critical,digitalSignature,keyEncipherment") &&
      add_ext(NID_ext_key_usage, "serverAuth,clientAuth") &&
      (san.empty() || add_ext(NID_subject_alt_name, san));
  ok = ok && X509_sign(x, key, EVP_sha256()) > 0;
  Status s = ok ? Status::OK()
                : Status::IOError("self-signed certificate: " + OpenSslError());
  if (s.ok()) {
    // The key first, private: a crash between the two leaves no certificate
    // without its key (the next start regenerates both).
    FILE* kf = std::fopen(key_path.c_str(), "wb");
    if (kf != nullptr) chmod(key_path.c_str(), 0600);
    FILE* cf = kf ? std::fopen(cert_path.c_str(), "wb") : nullptr;
    if (kf == nullptr || cf == nullptr ||
        PEM_write_PrivateKey(kf, key, nullptr, nullptr, 0, nullptr, nullptr) !=
            1 ||
        PEM_write_X509(cf, x) != 1) {
      s = Status::IOError("cannot write " + dir + "/{cert,key}.pem");
    }
    if (kf) std::fclose(kf);
    if (cf) std::fclose(cf);
    if (!s.ok()) {
      fs::remove(cert_path, ec);
      fs::remove(key_path, ec);
    }
  }
  X509_free(x);
  EVP_PKEY_free(key);
  return s;
}

TlsContext::TlsContext(const TlsOptions& o)
    : opts_(o),
      server_(asio::ssl::context::tls_server),
      client_(asio::ssl::context::tls_client) {}

Result<std::shared_ptr<TlsContext>> TlsContext::Create(const TlsOptions& o) {
  std::shared_ptr<TlsContext> c(new TlsContext(o));
  KEEL_RETURN_IF_ERROR(c->Init());
  return c;
}

Status TlsContext::Init() {
  const long kNoOld = SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 |
                      SSL_OP_NO_TLSv1_1 | SSL_OP_NO_COMPRESSION;
  for (asio::ssl::context* ctx : {&server_, &client_}) {
    SSL_CTX* raw = ctx->native_handle();
    SSL_CTX_set_options(raw, kNoOld);
    if (!opts_.cipher_list.empty() &&
        SSL_CTX_set_cipher_list(raw, opts_.cipher_list.c_str()) != 1) {
      return Status::InvalidArgument("cipher suites " + opts_.cipher_list +
                                     ": " + OpenSslError());
    }
    if (!opts_.cert_file.empty()) {
      if (SSL_CTX_use_certificate_chain_file(raw, opts_.cert_file.c_str()) !=
          1) {
        return FileError("cannot load certificate", opts_.cert_file);
      }
      if (SSL_CTX_use_PrivateKey_file(raw, opts_.key_file.c_str(),
                                      SSL_FILETYPE_PEM) != 1) {
        return FileError("cannot load key", opts_.key_file);
      }
      if (SSL_CTX_check_private_key(raw) != 1) {
        return Status::InvalidArgument("key " + opts_.key_file +
                                       " does not match certificate " +
                                       opts_.cert_file);
      }
    }
    if (!opts_.trusted_ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(raw, opts_.trusted_ca_file.c_str(),
                                        nullptr) != 1) {
        return FileError("cannot load trusted CA file", opts_.trusted_ca_file);
      }
    } else {
      SSL_CTX_set_default_verify_paths(raw);
    }
  }
  if (opts_.client_cert_auth && !opts_.self_signed) {
    server_.set_verify_mode(asio::ssl::verify_peer |
                            asio::ssl::verify_fail_if_no_peer_cert);
    if (!opts_.trusted_ca_file.empty()) {
      // Tell clients which CA we want their certificate from.
      STACK_OF(X509_NAME)* names =
          SSL_load_client_CA_file(opts_.trusted_ca_file.c_str());
      if (names != nullptr) {
        SSL_CTX_set_client_CA_list(server_.native_handle(), names);
      }
    }
  } else {
    server_.set_verify_mode(asio::ssl::verify_none);
  }
  client_.set_verify_mode(opts_.self_signed ? asio::ssl::verify_none
                                            : asio::ssl::verify_peer);
  if (!opts_.crl_file.empty()) {
    auto revoked = LoadRevokedSerials(opts_.crl_file);
    if (!revoked.ok()) return revoked.status();
    revoked_ = std::move(revoked).value();
  }
  return Status::OK();
}

Status TlsContext::SetExpectedHost(SSL* ssl, const std::string& host) const {
  if (opts_.self_signed) return Status::OK();
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (IsIpAddress(host)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
      return Status::InvalidArgument("bad IP address " + host);
    }
  } else {
    SSL_set_tlsext_host_name(ssl, host.c_str());
    if (X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size()) != 1) {
      return Status::InvalidArgument("bad host name " + host);
    }
  }
  return Status::OK();
}

Status TlsContext::CheckPeer(SSL* ssl, bool server_side) const {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) {
    // Only possible where we did not ask for one.
    return Status::OK();
  }
  if (!revoked_.empty()) {
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
    std::vector<X509*> certs = {cert};
    for (int i = 0; chain != nullptr && i < sk_X509_num(chain); i++) {
      certs.push_back(sk_X509_value(chain, i));
    }
    for (X509* c : certs) {
      if (revoked_.count(SerialHex(c)) != 0) {
        return Status::FailedPrecondition("certificate with serial " +
                                          SerialHex(c) + " is revoked");
      }
    }
  }
  if (!server_side) return Status::OK();
  if (!opts_.allowed_cn.empty()) {
    const std::string cn = CommonName(cert);
    if (std::find(opts_.allowed_cn.begin(), opts_.allowed_cn.end(), cn) ==
        opts_.allowed_cn.end()) {
      return Status::FailedPrecondition("CommonName authentication failed (" +
                                        cn + " is not allowed)");
    }
  }
  if (!opts_.allowed_hostname.empty()) {
    bool ok = false;
    for (const std::string& h : opts_.allowed_hostname) {
      ok = ok || CertMatchesHost(cert, h);
    }
    if (!ok) {
      return Status::FailedPrecondition(
          "hostname authentication failed (certificate names none of the "
          "allowed hostnames)");
    }
  }
  return Status::OK();
}

}  // namespace keel::transport
