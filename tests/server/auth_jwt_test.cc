// JwtTokenProvider: every sign method round trips, and forged, tampered,
// expired, foreign and malformed tokens are refused; options and key files
// are checked as etcd checks them. Keys are generated here with OpenSSL into
// a temporary directory (none is committed).
#include "server/auth_jwt.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "server/auth_token.h"

namespace keel::server {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using TimePoint = std::chrono::system_clock::time_point;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "keel-jwt-XXXXXX").string();
    KEEL_CHECK(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TempDir& Dir() {
  static TempDir* d = new TempDir();
  return *d;
}

std::string WriteFile(const std::string& name, const std::string& content) {
  fs::path p = Dir().path() / name;
  std::ofstream(p, std::ios::binary) << content;
  return p.string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

enum class Pem { kPkcs8, kTraditional };

// Generates a key pair; returns {private key file, public key file}.
std::pair<std::string, std::string> MakeKeys(const std::string& name,
                                             EVP_PKEY* key,
                                             Pem pem = Pem::kPkcs8) {
  BIO* priv = BIO_new(BIO_s_mem());
  BIO* pub = BIO_new(BIO_s_mem());
  if (pem == Pem::kPkcs8) {
    KEEL_CHECK(PEM_write_bio_PrivateKey(priv, key, nullptr, nullptr, 0, nullptr,
                                        nullptr) == 1);
  } else {
    KEEL_CHECK(PEM_write_bio_PrivateKey_traditional(priv, key, nullptr, nullptr,
                                                    0, nullptr, nullptr) == 1);
  }
  KEEL_CHECK(PEM_write_bio_PUBKEY(pub, key) == 1);
  auto str = [](BIO* b) {
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    return std::string(data, static_cast<size_t>(n));
  };
  auto out = std::make_pair(WriteFile(name + ".key", str(priv)),
                            WriteFile(name + ".pub", str(pub)));
  BIO_free(priv);
  BIO_free(pub);
  EVP_PKEY_free(key);
  return out;
}

EVP_PKEY* NewRsa() {
  return EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
}
EVP_PKEY* NewEc(const char* curve) {
  return EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve);
}

// Key files, made once for all tests: two of each kind (the second one is
// "a wrong key").
struct Keys {
  std::pair<std::string, std::string> rsa, rsa2, p256, p256b, p384, p384b, p521,
      p521b, hmac, hmac2;
};

const Keys& K() {
  static const Keys* k = [] {
    auto* k = new Keys;
    k->rsa = MakeKeys("rsa", NewRsa());
    k->rsa2 = MakeKeys("rsa2", NewRsa(), Pem::kTraditional);
    k->p256 = MakeKeys("p256", NewEc("P-256"), Pem::kTraditional);
    k->p256b = MakeKeys("p256b", NewEc("P-256"));
    k->p384 = MakeKeys("p384", NewEc("P-384"));
    k->p384b = MakeKeys("p384b", NewEc("P-384"), Pem::kTraditional);
    k->p521 = MakeKeys("p521", NewEc("P-521"));
    k->p521b = MakeKeys("p521b", NewEc("P-521"));
    k->hmac = {WriteFile("hmac.secret", "correct horse battery staple\n"), ""};
    k->hmac2 = {WriteFile("hmac2.secret", "another secret\n"), ""};
    return k;
  }();
  return *k;
}

// The key pair a method needs, and a second, wrong one.
std::pair<std::pair<std::string, std::string>,
          std::pair<std::string, std::string>>
KeysFor(const std::string& method) {
  const Keys& k = K();
  if (method[0] == 'R' || method[0] == 'P') return {k.rsa, k.rsa2};
  if (method[0] == 'H') return {k.hmac, k.hmac2};
  if (method == "ES256") return {k.p256, k.p256b};
  if (method == "ES384") return {k.p384, k.p384b};
  return {k.p521, k.p521b};
}

struct FakeClock {
  TimePoint now = TimePoint(seconds(1'700'000'000)) + milliseconds(250);
  JwtTokenProvider::Clock fn() {
    return [this] { return now; };
  }
};

std::unique_ptr<JwtTokenProvider> MustMake(
    const std::map<std::string, std::string>& opts,
    JwtTokenProvider::Clock clock = nullptr) {
  auto p = JwtTokenProvider::Make(opts, std::move(clock));
  KEEL_CHECK(p.ok()) << p.status().ToString();
  return std::move(*p);
}

std::string Part(const std::string& token, int i) {
  size_t a = 0;
  for (int k = 0; k < i; k++) a = token.find('.', a) + 1;
  size_t b = token.find('.', a);
  return token.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

std::string Decode(const std::string& part) {
  auto r = Base64UrlDecode(part);
  KEEL_CHECK(r.ok());
  return *r;
}

// An HMAC token over arbitrary header and claims, to reach the checks that
// come after the signature.
std::string HsToken(const std::string& secret, const std::string& header,
                    const std::string& claims) {
  std::string input = Base64UrlEncode(header) + "." + Base64UrlEncode(claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
       &len);
  return input + "." +
         Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), len));
}

class JwtMethodTest : public ::testing::TestWithParam<std::string> {};

TEST_P(JwtMethodTest, RoundTripAndRefusals) {
  const std::string method = GetParam();
  auto [keys, wrong] = KeysFor(method);
  FakeClock clock;
  auto p = MustMake({{"sign-method", method},
                     {"priv-key", keys.first},
                     {"pub-key", keys.second},
                     {"ttl", "90s"}},
                    clock.fn());
  EXPECT_FALSE(p->verify_only());

  auto token = p->Assign("alice", 42);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(Decode(Part(*token, 0)),
            "{\"alg\":\"" + method + "\",\"typ\":\"JWT\"}");
  // exp = floor(now + ttl) in Unix seconds.
  EXPECT_EQ(Decode(Part(*token, 1)),
            "{\"exp\":1700000090,\"revision\":42,\"username\":\"alice\"}");

  auto info = p->Info(*token);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->username, "alice");
  EXPECT_EQ(info->revision, 42u);

  // Tampered signature: flip one bit of its first byte.
  {
    std::string sig = Decode(Part(*token, 2));
    sig[0] ^= 1;
    std::string bad =
        Part(*token, 0) + "." + Part(*token, 1) + "." + Base64UrlEncode(sig);
    EXPECT_FALSE(p->Info(bad).ok());
  }
  // Tampered payload under the original signature.
  {
    std::string bad =
        Part(*token, 0) + "." +
        Base64UrlEncode(
            "{\"exp\":1700000090,\"revision\":42,\"username\":\"root\"}") +
        "." + Part(*token, 2);
    auto r = p->Info(bad);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "signature is invalid");
  }
  // Expiry: valid while now < exp, refused from exp on.
  clock.now = TimePoint(seconds(1'700'000'090)) - milliseconds(1);
  EXPECT_TRUE(p->Info(*token).ok());
  clock.now = TimePoint(seconds(1'700'000'090));
  auto expired = p->Info(*token);
  EXPECT_FALSE(expired.ok());
  EXPECT_EQ(expired.status().message(), "token is expired");
  clock.now = TimePoint(seconds(1'700'000'000));

  // A member with another key refuses the token.
  std::map<std::string, std::string> other = {{"sign-method", method},
                                              {"priv-key", wrong.first}};
  auto q = MustMake(other, clock.fn());
  auto r = q->Info(*token);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "signature is invalid");
  // ... and the first refuses the other's tokens.
  auto t2 = q->Assign("alice", 42);
  ASSERT_TRUE(t2.ok());
  EXPECT_FALSE(p->Info(*t2).ok());
}

TEST_P(JwtMethodTest, PublicKeyOnlyVerifiesButCannotSign) {
  const std::string method = GetParam();
  if (method[0] == 'H') return;  // HMAC has no public key
  auto [keys, wrong] = KeysFor(method);
  auto signer = MustMake({{"sign-method", method}, {"priv-key", keys.first}});
  auto verifier = MustMake({{"sign-method", method}, {"pub-key", keys.second}});
  EXPECT_TRUE(verifier->verify_only());
  auto a = verifier->Assign("alice", 1);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message(),
            "auth: token signing attempted with verify-only key");

  auto token = signer->Assign("alice", 3);
  ASSERT_TRUE(token.ok());
  auto info = verifier->Info(*token);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->username, "alice");
  EXPECT_EQ(info->revision, 3u);
}

INSTANTIATE_TEST_SUITE_P(AllMethods, JwtMethodTest,
                         ::testing::Values("RS256", "RS384", "RS512", "PS256",
                                           "PS384", "PS512", "ES256", "ES384",
                                           "ES512", "HS256", "HS384", "HS512"),
                         [](const auto& info) { return info.param; });

// A token computed outside keel (Python's hmac and base64) for a fixed
// secret and time: pins the byte format (key order, no padding, header).
TEST(JwtTest, KnownAnswerHs256) {
  std::string secret = WriteFile("kat.secret", "keel-test-secret\n");
  FakeClock clock;
  clock.now = TimePoint(seconds(1'700'000'000));
  auto p =
      MustMake({{"sign-method", "HS256"}, {"priv-key", secret}, {"ttl", "5m"}},
               clock.fn());
  const std::string expected =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      "eyJleHAiOjE3MDAwMDAzMDAsInJldmlzaW9uIjo3LCJ1c2VybmFtZSI6InJvb3QifQ."
      "H88gGEXattX2DXevo5RwFt_GbeMKbH1E1w-gtoGc5Fs";
  auto token = p->Assign("root", 7);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(*token, expected);
}

TEST(JwtTest, UsernameEncodedAsGoEncodingJson) {
  FakeClock clock;
  auto p = MustMake({{"sign-method", "HS256"}, {"priv-key", K().hmac.first}},
                    clock.fn());
  const std::string user =
      std::string("a\"b\\c<d>e&f\n\x01 \xc3\xa9 \xe2\x80\xa8 \xff");
  auto token = p->Assign(user, 1);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(Decode(Part(*token, 1)),
            "{\"exp\":1700000300,\"revision\":1,\"username\":"
            "\"a\\\"b\\\\c\\u003cd\\u003ee\\u0026f\\n\\u0001 \xc3\xa9 "
            "\\u2028 \\ufffd\"}");
  auto info = p->Info(*token);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(
      info->username,
      std::string("a\"b\\c<d>e&f\n\x01 \xc3\xa9 \xe2\x80\xa8 \xef\xbf\xbd"));
}

TEST(JwtTest, ClaimChecks) {
  const std::string secret = ReadFile(K().hmac.first);
  FakeClock clock;
  auto p = MustMake({{"sign-method", "HS256"}, {"priv-key", K().hmac.first}},
                    clock.fn());
  const std::string hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  auto check = [&](const std::string& header, const std::string& claims) {
    return p->Info(HsToken(secret, header, claims));
  };
  // No exp: golang-jwt v4 does not require one.
  auto ok = check(hs, "{\"revision\":5,\"username\":\"u\"}");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->revision, 5u);
  EXPECT_FALSE(
      check(hs, "{\"exp\":\"never\",\"revision\":5,\"username\":\"u\"}").ok());
  EXPECT_FALSE(
      check(hs, "{\"nbf\":1800000000,\"revision\":5,\"username\":\"u\"}").ok());
  EXPECT_FALSE(
      check(hs, "{\"iat\":1800000000,\"revision\":5,\"username\":\"u\"}").ok());
  EXPECT_TRUE(check(hs,
                    "{\"iat\":1600000000,\"nbf\":1600000000,\"revision\":5,"
                    "\"username\":\"u\"}")
                  .ok());
  EXPECT_FALSE(check(hs, "{\"revision\":5}").ok());
  EXPECT_FALSE(check(hs, "{\"username\":\"u\"}").ok());
  EXPECT_FALSE(check(hs, "{\"revision\":\"5\",\"username\":\"u\"}").ok());
  EXPECT_FALSE(check(hs, "{\"revision\":-1,\"username\":\"u\"}").ok());
  EXPECT_FALSE(check(hs, "{\"revision\":5,\"username\":7}").ok());
  EXPECT_FALSE(check(hs, "[1,2]").ok());
  EXPECT_FALSE(check(hs, "not json").ok());
  // The header's alg must be the configured method, whatever the signature.
  EXPECT_FALSE(check("{\"alg\":\"HS384\",\"typ\":\"JWT\"}",
                     "{\"revision\":5,\"username\":\"u\"}")
                   .ok());
  EXPECT_FALSE(
      check("{\"typ\":\"JWT\"}", "{\"revision\":5,\"username\":\"u\"}").ok());
  auto none =
      p->Info(Base64UrlEncode("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." +
              Base64UrlEncode("{\"revision\":5,\"username\":\"u\"}") + ".");
  EXPECT_FALSE(none.ok());
}

// Info remembers verified tokens; the times still count on every use.
TEST(JwtTest, RememberedTokensStillExpireAndNotYetValidOnesWait) {
  const std::string secret = ReadFile(K().hmac.first);
  FakeClock clock;
  auto p = MustMake({{"sign-method", "HS256"}, {"priv-key", K().hmac.first}},
                    clock.fn());
  const std::string hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  const std::string t = HsToken(
      secret, hs,
      "{\"exp\":1700000010,\"nbf\":1700000005,\"revision\":5,\"username\":"
      "\"u\"}");
  EXPECT_EQ(p->Info(t).status().message(), "token is not valid yet");
  clock.now = TimePoint(seconds(1'700'000'005));
  ASSERT_TRUE(p->Info(t).ok());
  ASSERT_TRUE(p->Info(t).ok());
  clock.now = TimePoint(seconds(1'700'000'010));
  EXPECT_EQ(p->Info(t).status().message(), "token is expired");
  EXPECT_EQ(p->Info(t).status().message(), "token is expired");
  clock.now = TimePoint(seconds(1'700'000'004));
  EXPECT_EQ(p->Info(t).status().message(), "token is not valid yet");

  // More tokens than the cache holds: every one still verifies, and a
  // forged one is still refused.
  clock.now = TimePoint(seconds(1'700'000'000));
  std::vector<std::string> tokens;
  for (uint64_t rev = 1; rev <= 5000; rev++) {
    auto tok = p->Assign("u", rev);
    ASSERT_TRUE(tok.ok());
    tokens.push_back(*tok);
  }
  for (uint64_t rev = 1; rev <= 5000; rev++) {
    auto info = p->Info(tokens[rev - 1]);
    ASSERT_TRUE(info.ok());
    ASSERT_EQ(info->revision, rev);
  }
  for (int64_t rev = 5000; rev >= 1; rev -= 7) {
    ASSERT_EQ(p->Info(tokens[rev - 1])->revision, static_cast<uint64_t>(rev));
  }
  std::string forged = tokens[0];
  forged[forged.size() - 2] = forged[forged.size() - 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(p->Info(forged).ok());
}

TEST(JwtTest, MalformedTokensRefused) {
  auto p = MustMake({{"sign-method", "HS256"}, {"priv-key", K().hmac.first}});
  auto good = p->Assign("u", 1);
  ASSERT_TRUE(good.ok());
  for (const std::string& t :
       {std::string(""), std::string("."), std::string(".."),
        std::string("abc"), std::string("a.b"), *good + ".x", *good + "=",
        "!" + *good, Part(*good, 0) + "." + Part(*good, 1),
        std::string("simpletoken.5")}) {
    EXPECT_FALSE(p->Info(t).ok()) << t;
  }
}

TEST(JwtTest, OptionsAsEtcd) {
  auto o = ParseJwtOptions({{"sign-method", "RS256"}});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->ttl, std::chrono::minutes(5));
  o = ParseJwtOptions({{"sign-method", "RS256"}, {"ttl", ""}});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->ttl, std::chrono::minutes(5));
  o = ParseJwtOptions({{"sign-method", "RS256"}, {"ttl", "1h2m3.5s"}});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->ttl, milliseconds(3723500));
  // Unknown options are ignored (etcd logs them).
  EXPECT_TRUE(
      ParseJwtOptions({{"sign-method", "RS256"}, {"colour", "red"}}).ok());

  auto bad = ParseJwtOptions({{"sign-method", "RS256"}, {"ttl", "5"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("time: invalid duration \"5\""),
            std::string::npos);
  bad = ParseJwtOptions({{"priv-key", "x"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("auth: invalid auth signature method"),
            std::string::npos);
  bad = ParseJwtOptions({{"sign-method", "RS1024"}});
  EXPECT_FALSE(bad.ok());
  // golang-jwt knows EdDSA and none, etcd 3.5 supports neither.
  bad = ParseJwtOptions({{"sign-method", "EdDSA"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unsupported signing method"),
            std::string::npos);
  EXPECT_FALSE(ParseJwtOptions({{"sign-method", "none"}}).ok());
}

// Key problems stop the member at startup with a message naming the file.
TEST(JwtTest, KeyErrorsNameTheFile) {
  auto err = [](const std::map<std::string, std::string>& opts) {
    auto p = JwtTokenProvider::Make(opts);
    EXPECT_FALSE(p.ok());
    return p.ok() ? std::string() : p.status().message();
  };
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos;
  };
  const Keys& k = K();
  const std::string missing = (Dir().path() / "nope.pem").string();
  std::string m = err({{"sign-method", "RS256"}, {"priv-key", missing}});
  EXPECT_TRUE(has(m, "open " + missing + ": No such file or directory")) << m;

  const std::string garbage = WriteFile("garbage.pem", "hello\n");
  m = err({{"sign-method", "RS256"}, {"priv-key", garbage}});
  EXPECT_TRUE(has(m, "priv-key " + garbage)) << m;
  m = err({{"sign-method", "RS256"}, {"pub-key", garbage}});
  EXPECT_TRUE(has(m, "pub-key " + garbage)) << m;

  m = err({{"sign-method", "RS256"}, {"priv-key", k.p256.first}});
  EXPECT_TRUE(has(m, k.p256.first + ": key is not a valid RSA private key"))
      << m;
  m = err({{"sign-method", "ES256"}, {"pub-key", k.rsa.second}});
  EXPECT_TRUE(has(m, k.rsa.second + ": key is not a valid ECDSA public key"))
      << m;
  m = err({{"sign-method", "ES256"}, {"priv-key", k.p384.first}});
  EXPECT_TRUE(has(m, "ES256 needs a P-256 key")) << m;

  m = err({{"sign-method", "RS256"},
           {"priv-key", k.rsa.first},
           {"pub-key", k.rsa2.second}});
  EXPECT_TRUE(has(m, "auth: public and private keys don't match")) << m;
  m = err({{"sign-method", "ES256"}});
  EXPECT_TRUE(has(m, "auth: missing key data")) << m;
  m = err({{"sign-method", "HS256"}, {"pub-key", k.rsa.second}});
  EXPECT_TRUE(has(m, "auth: missing key data")) << m;
  const std::string empty = WriteFile("empty.secret", "");
  m = err({{"sign-method", "HS512"}, {"priv-key", empty}});
  EXPECT_TRUE(has(m, "auth: missing key data")) << m;

  // An encrypted key is refused without prompting for a passphrase.
  EVP_PKEY* key = NewEc("P-256");
  BIO* b = BIO_new(BIO_s_mem());
  const char pass[] = "secret";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(b, key, EVP_aes_128_cbc(), pass,
                                          sizeof(pass) - 1, nullptr, nullptr),
            1);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  const std::string enc = WriteFile("enc.key", std::string(data, n));
  BIO_free(b);
  EVP_PKEY_free(key);
  m = err({{"sign-method", "ES256"}, {"priv-key", enc}});
  EXPECT_TRUE(has(m, "priv-key " + enc)) << m;
}

TEST(JwtTest, CertificateAsPublicKey) {
  // golang-jwt takes the key out of a certificate given as pub-key.
  EVP_PKEY* key = NewEc("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("keel"), -1,
                             -1, 0);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  const std::string cert_file = WriteFile("cert.pem", std::string(data, n));
  BIO_free(b);
  X509_free(cert);
  EVP_PKEY_up_ref(key);
  auto files = MakeKeys("certkey", key);

  auto signer = MustMake({{"sign-method", "ES256"}, {"priv-key", files.first}});
  auto verifier = MustMake({{"sign-method", "ES256"}, {"pub-key", cert_file}});
  auto t = signer->Assign("u", 9);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(verifier->Info(*t).ok());
  EVP_PKEY_free(key);
}

TEST(JwtTest, Base64Url) {
  for (const std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar",
                              "\xff\xfe\xfd", "\xfb\xff"}) {
    auto d = Base64UrlDecode(Base64UrlEncode(s));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("Zm9v=").ok());
  EXPECT_FALSE(Base64UrlDecode("Zm9v+").ok());
  EXPECT_FALSE(Base64UrlDecode("Z").ok());
}

// The TokenProvider the auth store gets for --auth-token jwt,...
TEST(JwtTest, TokenProviderFromAuthTokenFlag) {
  const Keys& k = K();
  auto p = MakeTokenProvider("jwt,pub-key=" + k.p256.second + ",priv-key=" +
                                 k.p256.first + ",sign-method=ES256,ttl=1m",
                             seconds(300), {});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ((*p)->Kind(), "jwt");
  auto prefix = (*p)->GenTokenPrefix();
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(*prefix, "");
  auto token = (*p)->Assign("bob", 12, {"", 99});
  ASSERT_TRUE(token.ok());
  auto info = (*p)->Info(*token, 40);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->user, "bob");
  EXPECT_EQ(info->auth_revision, 12u);  // the token's, not the current one
  (*p)->Disable();  // keeps nothing: the token still verifies
  EXPECT_TRUE((*p)->Info(*token, 40).ok());
  auto bad = (*p)->Info(*token + "x", 40);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "etcdserver: invalid auth token");

  auto verify_only = MakeTokenProvider(
      "jwt,pub-key=" + k.p256.second + ",sign-method=ES256", seconds(300), {});
  ASSERT_TRUE(verify_only.ok());
  EXPECT_TRUE((*verify_only)->Info(*token, 1).ok());
  auto a = (*verify_only)->Assign("bob", 12, {});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message(),
            "auth: token signing attempted with verify-only key");

  auto missing = MakeTokenProvider(
      "jwt,priv-key=/nonexistent/key,sign-method=RS256", seconds(300), {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/key"),
            std::string::npos);
}

}  // namespace
}  // namespace keel::server
