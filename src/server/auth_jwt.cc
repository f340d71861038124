#include "server/auth_jwt.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "server/config.h"

namespace keel::server {
namespace {

enum class Family { kRsa, kPss, kEc, kHmac };

struct Method {
  std::string_view name;
  Family family;
  const EVP_MD* (*md)();
  int ec_bits;       // kEc: the curve size the method requires
  size_t ec_octets;  // kEc: bytes of r and of s in the signature
};

constexpr Method kMethods[] = {
    {"RS256", Family::kRsa, EVP_sha256, 0, 0},
    {"RS384", Family::kRsa, EVP_sha384, 0, 0},
    {"RS512", Family::kRsa, EVP_sha512, 0, 0},
    {"PS256", Family::kPss, EVP_sha256, 0, 0},
    {"PS384", Family::kPss, EVP_sha384, 0, 0},
    {"PS512", Family::kPss, EVP_sha512, 0, 0},
    {"ES256", Family::kEc, EVP_sha256, 256, 32},
    {"ES384", Family::kEc, EVP_sha384, 384, 48},
    {"ES512", Family::kEc, EVP_sha512, 521, 66},
    {"HS256", Family::kHmac, EVP_sha256, 0, 0},
    {"HS384", Family::kHmac, EVP_sha384, 0, 0},
    {"HS512", Family::kHmac, EVP_sha512, 0, 0},
};

const Method* FindMethod(std::string_view name) {
  for (const Method& m : kMethods) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// OpenSSL keeps failures in a per-thread queue that TLS code on the same
// thread (gRPC) reads later; a failed token check must not leave any there.
struct ClearOpensslErrors {
  ~ClearOpensslErrors() { ERR_clear_error(); }
};

std::string OpensslError() {
  unsigned long e = ERR_peek_last_error();
  if (e == 0) return "";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return std::string(": ") + buf;
}

Result<std::string> ReadKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::InvalidArgument("open " + path + ": " +
                                   std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    return Status::InvalidArgument("read " + path + ": " +
                                   std::strerror(errno));
  }
  return ss.str();
}

// Never prompts: an encrypted key file is an error, as in etcd.
int NoPassword(char*, int, int, void*) { return -1; }

Result<PkeyPtr> ParsePrivateKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr));
  if (!key) {
    return Status::InvalidArgument(
        "no PEM private key (PKCS#1, SEC 1 or unencrypted PKCS#8) found" +
        OpensslError());
  }
  return key;
}

// A PKIX "PUBLIC KEY", a PKCS#1 "RSA PUBLIC KEY" or a certificate's key,
// as golang-jwt accepts.
Result<PkeyPtr> ParsePublicKey(const std::string& pem) {
  {
    EVP_PKEY* raw = nullptr;
    OSSL_DECODER_CTX* dctx = OSSL_DECODER_CTX_new_for_pkey(
        &raw, "PEM", nullptr, nullptr, EVP_PKEY_PUBLIC_KEY, nullptr, nullptr);
    if (dctx != nullptr) {
      const auto* data = reinterpret_cast<const unsigned char*>(pem.data());
      size_t len = pem.size();
      OSSL_DECODER_from_data(dctx, &data, &len);
      OSSL_DECODER_CTX_free(dctx);
    }
    if (raw != nullptr) return PkeyPtr(raw);
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509* cert = PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr);
  if (cert != nullptr) {
    PkeyPtr key(X509_get_pubkey(cert));
    X509_free(cert);
    if (key) return key;
  }
  return Status::InvalidArgument(
      "no PEM public key (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE) found" +
      OpensslError());
}

// Checks that `key` suits `m`, in golang-jwt's words where it has some.
Status CheckKeyType(const Method& m, EVP_PKEY* key, bool is_private) {
  const int id = EVP_PKEY_get_base_id(key);
  const char* kind = is_private ? "private" : "public";
  if (m.family == Family::kRsa || m.family == Family::kPss) {
    if (id != EVP_PKEY_RSA) {
      return Status::InvalidArgument(std::string("key is not a valid RSA ") +
                                     kind + " key");
    }
    return Status::OK();
  }
  if (id != EVP_PKEY_EC) {
    return Status::InvalidArgument(std::string("key is not a valid ECDSA ") +
                                   kind + " key");
  }
  // golang-jwt only finds a wrong curve when it signs (every Authenticate
  // fails) or verifies (every token is refused); say so at startup instead.
  if (EVP_PKEY_get_bits(key) != m.ec_bits) {
    return Status::InvalidArgument(
        std::string(m.name) + " needs a P-" + std::to_string(m.ec_bits) +
        " key, this one is on a " + std::to_string(EVP_PKEY_get_bits(key)) +
        "-bit curve");
  }
  return Status::OK();
}

// Go's encoding/json string encoding (HTML-safe, invalid UTF-8 as U+FFFD,
// U+2028/U+2029 escaped), so that a token minted here is byte for byte the
// one etcd would mint.
void AppendGoJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' &&
          b != '&') {
        out->push_back(static_cast<char>(b));
      } else if (b == '"' || b == '\\') {
        out->push_back('\\');
        out->push_back(static_cast<char>(b));
      } else if (b == '\n') {
        out->append("\\n");
      } else if (b == '\r') {
        out->append("\\r");
      } else if (b == '\t') {
        out->append("\\t");
      } else {
        out->append("\\u00");
        out->push_back(kHex[b >> 4]);
        out->push_back(kHex[b & 0xf]);
      }
      i++;
      continue;
    }
    // Decode one UTF-8 sequence as Go's utf8.DecodeRuneInString does.
    size_t n = 0;
    uint32_t r = 0, min = 0;
    if (b >= 0xc2 && b <= 0xdf) {
      n = 2, r = b & 0x1f, min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      n = 3, r = b & 0x0f, min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 4, r = b & 0x07, min = 0x10000;
    }
    bool ok = n != 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; k++) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) ok = false;
      r = (r << 6) | (c & 0x3f);
    }
    if (ok && (r < min || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff))) {
      ok = false;
    }
    if (!ok) {
      out->append("\\ufffd");
      i++;
    } else if (r == 0x2028 || r == 0x2029) {
      out->append(r == 0x2028 ? "\\u2028" : "\\u2029");
      i += n;
    } else {
      out->append(s.substr(i, n));
      i += n;
    }
  }
  out->push_back('"');
}

Result<google::protobuf::Struct> ParseJsonObject(const std::string& json) {
  google::protobuf::Struct obj;
  auto st = google::protobuf::util::JsonStringToMessage(json, &obj);
  if (!st.ok()) return Status::InvalidArgument("not a JSON object");
  return obj;
}

}  // namespace

std::string Base64UrlEncode(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) |
                       (static_cast<uint8_t>(in[i + 1]) << 8) |
                       static_cast<uint8_t>(in[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const size_t rest = in.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    if (rest == 2) out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

Result<std::string> Base64UrlDecode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
  };
  if (in.size() % 4 == 1)
    return Status::InvalidArgument("bad base64url length");
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) return Status::InvalidArgument("bad base64url character");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

Result<JwtOptions> ParseJwtOptions(
    const std::map<std::string, std::string>& opts) {
  JwtOptions o;
  std::string unknown;
  for (const auto& [k, v] : opts) {
    if (k == "sign-method") {
      o.sign_method = v;
    } else if (k == "pub-key") {
      o.pub_key_file = v;
    } else if (k == "priv-key") {
      o.priv_key_file = v;
    } else if (k == "ttl") {
      // etcd keeps the 5m default only when ttl is absent or empty.
      if (v.empty()) continue;
      auto ms = ParseGoDurationMs(v);
      if (!ms.ok()) {
        return Status::InvalidArgument("ttl: " + ms.status().message());
      }
      o.ttl = std::chrono::milliseconds(*ms);
    } else {
      unknown += unknown.empty() ? k : "," + k;
    }
  }
  if (!unknown.empty()) {
    KEEL_LOG_WARN("unknown JWT options", log::F("keys", unknown));
  }
  if (o.sign_method == "EdDSA" || o.sign_method == "none") {
    // golang-jwt knows these, etcd 3.5 has no key type for them.
    return Status::InvalidArgument("unsupported signing method: " +
                                   o.sign_method);
  }
  if (FindMethod(o.sign_method) == nullptr) {
    return Status::InvalidArgument("sign-method \"" + o.sign_method + "\": " +
                                   std::string(kJwtErrInvalidAuthMethod));
  }
  return o;
}

struct JwtTokenProvider::Impl {
  const Method* method = nullptr;
  std::string method_name;
  std::chrono::milliseconds ttl{};
  Clock clock;
  std::string hmac_secret;  // kHmac
  PkeyPtr sign_key;         // null when verify-only or kHmac
  PkeyPtr verify_key;       // the private key itself when there is one
  std::string header_b64;   // base64url of {"alg":...,"typ":"JWT"}

  // What a token with a valid signature says.
  struct Verified {
    JwtAuthInfo info;
    std::optional<std::chrono::system_clock::time_point> exp, iat, nbf;
  };

  Result<std::string> Sign(std::string_view input) const;
  bool Verify(std::string_view input, std::string_view sig) const;
  // Signature and claims; not the times (CheckTimes).
  Result<Verified> VerifyToken(std::string_view token) const;
  Status CheckTimes(const Verified& v) const;

  // Tokens whose signature verified, so that a client's every request does
  // not pay for a signature check (tens of microseconds; etcd pays it each
  // time). Keyed by the whole token: the same bytes always verify the same
  // way, and the times are checked on every use.
  static constexpr size_t kCacheMax = 4096;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const {
      return std::hash<std::string_view>{}(s);
    }
  };
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, Verified, StringHash,
                             std::equal_to<>>
      cache;  // guarded by cache_mu
};

Result<std::string> JwtTokenProvider::Impl::Sign(std::string_view input) const {
  ClearOpensslErrors clear;
  if (method->family == Family::kHmac) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(method->md(), hmac_secret.data(),
             static_cast<int>(hmac_secret.size()),
             reinterpret_cast<const unsigned char*>(input.data()), input.size(),
             mac, &len) == nullptr) {
      return Status::IOError("HMAC failed" + OpensslError());
    }
    return std::string(reinterpret_cast<char*>(mac), len);
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, method->md(), nullptr,
                                 sign_key.get()) != 1) {
    return Status::IOError("EVP_DigestSignInit failed" + OpensslError());
  }
  if (method->family == Family::kPss &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       // golang-jwt signs with a salt as long as the hash.
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)) {
    return Status::IOError("setting RSA-PSS parameters failed" +
                           OpensslError());
  }
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) {
    return Status::IOError("EVP_DigestSign failed" + OpensslError());
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()),
                     &len, in, input.size()) != 1) {
    return Status::IOError("EVP_DigestSign failed" + OpensslError());
  }
  sig.resize(len);
  if (method->family != Family::kEc) return sig;
  // JWS wants r and s as fixed-size big-endian numbers, not DER.
  const auto* der = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(sig.size()));
  if (es == nullptr) return Status::IOError("bad ECDSA signature from OpenSSL");
  std::string raw(2 * method->ec_octets, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  const int n = static_cast<int>(method->ec_octets);
  const bool ok = BN_bn2binpad(ECDSA_SIG_get0_r(es), out, n) == n &&
                  BN_bn2binpad(ECDSA_SIG_get0_s(es), out + n, n) == n;
  ECDSA_SIG_free(es);
  if (!ok) return Status::IOError("ECDSA signature does not fit the curve");
  return raw;
}

bool JwtTokenProvider::Impl::Verify(std::string_view input,
                                    std::string_view sig) const {
  ClearOpensslErrors clear;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (method->family == Family::kHmac) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(method->md(), hmac_secret.data(),
             static_cast<int>(hmac_secret.size()), in, input.size(), mac,
             &len) == nullptr) {
      return false;
    }
    return sig.size() == len && CRYPTO_memcmp(sig.data(), mac, len) == 0;
  }
  std::string der;
  if (method->family == Family::kEc) {
    if (sig.size() != 2 * method->ec_octets) return false;
    const auto* raw = reinterpret_cast<const unsigned char*>(sig.data());
    const int n = static_cast<int>(method->ec_octets);
    ECDSA_SIG* es = ECDSA_SIG_new();
    BIGNUM* r = BN_bin2bn(raw, n, nullptr);
    BIGNUM* s = BN_bin2bn(raw + n, n, nullptr);
    if (es == nullptr || r == nullptr || s == nullptr ||
        ECDSA_SIG_set0(es, r, s) != 1) {
      BN_free(r);
      BN_free(s);
      ECDSA_SIG_free(es);
      return false;
    }
    unsigned char* buf = nullptr;
    const int len = i2d_ECDSA_SIG(es, &buf);
    ECDSA_SIG_free(es);
    if (len <= 0) return false;
    der.assign(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
    OPENSSL_free(buf);
    sig = der;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, method->md(), nullptr,
                                   verify_key.get()) != 1) {
    return false;
  }
  if (method->family == Family::kPss &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       // golang-jwt verifies with any salt length.
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) != 1)) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(),
                          reinterpret_cast<const unsigned char*>(sig.data()),
                          sig.size(), in, input.size()) == 1;
}

JwtTokenProvider::JwtTokenProvider(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
JwtTokenProvider::~JwtTokenProvider() = default;

Result<std::unique_ptr<JwtTokenProvider>> JwtTokenProvider::Make(
    const std::map<std::string, std::string>& opts, Clock clock) {
  auto o = ParseJwtOptions(opts);
  if (!o.ok()) return o.status();
  return Make(*o, std::move(clock));
}

Result<std::unique_ptr<JwtTokenProvider>> JwtTokenProvider::Make(
    const JwtOptions& opts, Clock clock) {
  ClearOpensslErrors clear;
  const Method* m = FindMethod(opts.sign_method);
  if (m == nullptr) {
    return Status::InvalidArgument(
        "sign-method \"" + opts.sign_method +
        "\": " + std::string(kJwtErrInvalidAuthMethod));
  }
  auto impl = std::make_unique<Impl>();
  impl->method = m;
  impl->method_name = std::string(m->name);
  impl->ttl = opts.ttl;
  impl->clock = clock ? std::move(clock)
                      : [] { return std::chrono::system_clock::now(); };
  std::string header =
      "{\"alg\":\"" + std::string(m->name) + "\",\"typ\":\"JWT\"}";
  impl->header_b64 = Base64UrlEncode(header);

  // As etcd, both files are read whatever the method; an empty name or an
  // empty file counts as not given.
  auto fail = [](const char* opt, const std::string& file,
                 const Status& st) -> Status {
    return Status::InvalidArgument(std::string(opt) + " " + file + ": " +
                                   st.message());
  };
  std::string pub_pem, priv_pem;
  if (!opts.pub_key_file.empty()) {
    auto r = ReadKeyFile(opts.pub_key_file);
    if (!r.ok())
      return Status::InvalidArgument("pub-key: " + r.status().message());
    pub_pem = std::move(*r);
  }
  if (!opts.priv_key_file.empty()) {
    auto r = ReadKeyFile(opts.priv_key_file);
    if (!r.ok())
      return Status::InvalidArgument("priv-key: " + r.status().message());
    priv_pem = std::move(*r);
  }

  if (m->family == Family::kHmac) {
    if (priv_pem.empty()) {
      return Status::InvalidArgument(std::string(m->name) +
                                     " needs priv-key (the HMAC secret): " +
                                     std::string(kJwtErrMissingKey));
    }
    impl->hmac_secret = std::move(priv_pem);
    return std::unique_ptr<JwtTokenProvider>(
        new JwtTokenProvider(std::move(impl)));
  }

  PkeyPtr priv, pub;
  if (!priv_pem.empty()) {
    auto k = ParsePrivateKey(priv_pem);
    if (!k.ok()) return fail("priv-key", opts.priv_key_file, k.status());
    Status st = CheckKeyType(*m, k->get(), true);
    if (!st.ok()) return fail("priv-key", opts.priv_key_file, st);
    priv = std::move(*k);
  }
  if (!pub_pem.empty()) {
    auto k = ParsePublicKey(pub_pem);
    if (!k.ok()) return fail("pub-key", opts.pub_key_file, k.status());
    Status st = CheckKeyType(*m, k->get(), false);
    if (!st.ok()) return fail("pub-key", opts.pub_key_file, st);
    pub = std::move(*k);
  }
  if (!priv && !pub) {
    return Status::InvalidArgument(
        std::string(m->name) +
        " needs priv-key and/or pub-key: " + std::string(kJwtErrMissingKey));
  }
  if (priv && pub && EVP_PKEY_eq(priv.get(), pub.get()) != 1) {
    return Status::InvalidArgument("pub-key " + opts.pub_key_file +
                                   " and priv-key " + opts.priv_key_file +
                                   ": " + std::string(kJwtErrKeyMismatch));
  }
  if (priv) {
    EVP_PKEY_up_ref(priv.get());
    impl->verify_key.reset(priv.get());
    impl->sign_key = std::move(priv);
  } else {
    impl->verify_key = std::move(pub);
  }
  return std::unique_ptr<JwtTokenProvider>(
      new JwtTokenProvider(std::move(impl)));
}

bool JwtTokenProvider::verify_only() const {
  return impl_->method->family != Family::kHmac && !impl_->sign_key;
}

const std::string& JwtTokenProvider::sign_method() const {
  return impl_->method_name;
}

std::chrono::milliseconds JwtTokenProvider::ttl() const { return impl_->ttl; }

Result<std::string> JwtTokenProvider::Assign(std::string_view username,
                                             uint64_t revision) const {
  if (verify_only()) {
    return Status::FailedPrecondition(kJwtErrVerifyOnly);
  }
  // Go: time.Now().Add(ttl).Unix(), whole seconds.
  const auto exp = std::chrono::floor<std::chrono::seconds>(
                       (impl_->clock() + impl_->ttl).time_since_epoch())
                       .count();
  std::string claims = "{\"exp\":" + std::to_string(exp) +
                       ",\"revision\":" + std::to_string(revision) +
                       ",\"username\":";
  AppendGoJsonString(username, &claims);
  claims.push_back('}');
  std::string input = impl_->header_b64 + "." + Base64UrlEncode(claims);
  auto sig = impl_->Sign(input);
  if (!sig.ok()) return sig.status();
  input.push_back('.');
  input += Base64UrlEncode(*sig);
  return input;
}

Result<JwtTokenProvider::Impl::Verified> JwtTokenProvider::Impl::VerifyToken(
    std::string_view token) const {
  auto invalid = [](std::string why) {
    return Status::InvalidArgument(std::move(why));
  };
  const size_t dot1 = token.find('.');
  const size_t dot2 =
      dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos ||
      token.find('.', dot2 + 1) != std::string_view::npos) {
    return invalid("token contains an invalid number of segments");
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view claims_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view input = token.substr(0, dot2);

  auto header_json = Base64UrlDecode(header_b64);
  if (!header_json.ok()) {
    return invalid("header: " + header_json.status().message());
  }
  auto header = ParseJsonObject(*header_json);
  if (!header.ok()) return invalid("header: " + header.status().message());
  auto alg = header->fields().find("alg");
  if (alg == header->fields().end() || !alg->second.has_string_value()) {
    return invalid("signing method (alg) is unspecified");
  }
  if (alg->second.string_value() != method->name) {
    return invalid("invalid signing method " + alg->second.string_value());
  }

  auto sig = Base64UrlDecode(token.substr(dot2 + 1));
  if (!sig.ok()) return invalid("signature: " + sig.status().message());
  if (!Verify(input, *sig)) return invalid("signature is invalid");

  auto claims_json = Base64UrlDecode(claims_b64);
  if (!claims_json.ok()) {
    return invalid("claims: " + claims_json.status().message());
  }
  auto claims = ParseJsonObject(*claims_json);
  if (!claims.ok()) return invalid("claims: " + claims.status().message());
  const auto& f = claims->fields();

  // golang-jwt v4 MapClaims.Valid: exp, iat and nbf are optional, but when
  // present must be numbers (whole seconds count).
  Verified v;
  for (const char* name : {"exp", "iat", "nbf"}) {
    auto it = f.find(name);
    if (it == f.end()) continue;
    if (!it->second.has_number_value()) {
      return invalid(std::string(name) + " is not a number");
    }
    const auto t = std::chrono::system_clock::time_point(std::chrono::seconds(
        static_cast<int64_t>(std::trunc(it->second.number_value()))));
    (name[0] == 'e' ? v.exp : name[0] == 'i' ? v.iat : v.nbf) = t;
  }

  auto user = f.find("username");
  if (user == f.end() || !user->second.has_string_value()) {
    return invalid("failed to obtain user claims from jwt token");
  }
  v.info.username = user->second.string_value();
  auto rev = f.find("revision");
  if (rev == f.end() || !rev->second.has_number_value()) {
    return invalid("failed to obtain revision claims from jwt token");
  }
  const double r = rev->second.number_value();
  if (!(r >= 0 && r < 18446744073709551616.0)) {
    return invalid("revision claim out of range");
  }
  v.info.revision = static_cast<uint64_t>(r);
  return v;
}

Status JwtTokenProvider::Impl::CheckTimes(const Verified& v) const {
  const std::chrono::system_clock::time_point now = clock();
  // golang-jwt v4: valid while now < exp; not before iat and nbf.
  if (v.exp && !(now < *v.exp)) {
    return Status::InvalidArgument("token is expired");
  }
  if (v.iat && now < *v.iat) {
    return Status::InvalidArgument("token used before issued");
  }
  if (v.nbf && now < *v.nbf) {
    return Status::InvalidArgument("token is not valid yet");
  }
  return Status::OK();
}

Result<JwtAuthInfo> JwtTokenProvider::Info(std::string_view token) const {
  Impl& impl = *impl_;
  {
    std::lock_guard l(impl.cache_mu);
    auto it = impl.cache.find(token);
    if (it != impl.cache.end()) {
      Status st = impl.CheckTimes(it->second);
      if (!st.ok()) {
        impl.cache.erase(it);
        return st;
      }
      return it->second.info;
    }
  }
  auto v = impl.VerifyToken(token);
  if (!v.ok()) return v.status();
  KEEL_RETURN_IF_ERROR(impl.CheckTimes(*v));
  std::lock_guard l(impl.cache_mu);
  // Bounded without bookkeeping: tokens live minutes, so starting over now
  // and then costs one verification per client.
  if (impl.cache.size() >= Impl::kCacheMax) impl.cache.clear();
  impl.cache.emplace(std::string(token), *v);
  return v->info;
}

}  // namespace keel::server
