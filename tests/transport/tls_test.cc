// Peer TLS: members with certificates from the test CA talk; a peer without
// a valid certificate (another CA, none, revoked, a common name or hostname
// not allowed) is refused by the listener; a dialer refuses a listener whose
// certificate does not name the host it dialled; auto TLS encrypts without
// verification. Certificates are generated per run by tests/tls/make_certs.sh.
#include "transport/tls.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "test_util.h"

namespace keel::transport {
namespace {

using namespace testing;  // NOLINT

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::filesystem::temp_directory_path() /
           ("keel-tls-test-" + std::to_string(::getpid()));
    std::string cmd = std::string(KEEL_SOURCE_DIR) +
                      "/tests/tls/make_certs.sh " + dir_.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  static std::string F(const std::string& name) {
    return (dir_ / name).string();
  }
  // Mutual TLS with the test CA, as member `name`.
  static TlsOptions Mtls(const std::string& name) {
    TlsOptions t;
    t.cert_file = F(name + ".crt");
    t.key_file = F(name + ".key");
    t.trusted_ca_file = F("ca.crt");
    t.client_cert_auth = true;
    return t;
  }
  static std::function<void(Options&)> With(TlsOptions t,
                                            std::string host = "127.0.0.1") {
    return [t, host](Options& o) {
      o.tls = t;
      o.listen_url = "https://" + host + ":0";
    };
  }
  static std::string Url(Member& m, std::string host = "127.0.0.1") {
    return "https://" + host + ":" + std::to_string(m.t->port());
  }

  // a dials b; expects the link to come up and a message to arrive.
  static void ExpectConnects(Member& a, Member& b) {
    a.t->AddPeer(2, {Url(b)});
    a.t->Send({App(1, 2, 0)});
    ASSERT_TRUE(WaitFor([&] { return b.handler.Count() == 1; }));
    EXPECT_TRUE(a.t->Stats(2).connected);
  }
  // a dials b; expects the link to stay down and nothing to arrive.
  static void ExpectRefused(Member& a, Member& b, LogCapture& logs,
                            const std::string& log_line) {
    a.t->AddPeer(2, {Url(b)});
    a.t->Send({App(1, 2, 0)});
    ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(2) >= 1; }));
    ASSERT_TRUE(WaitFor([&] { return logs.Contains(log_line); }))
        << "no log line containing: " << log_line;
    EXPECT_FALSE(a.t->Stats(2).connected);
    EXPECT_EQ(b.handler.Count(), 0u);
  }

  static std::filesystem::path dir_;
};
std::filesystem::path TlsTest::dir_;

TEST_F(TlsTest, MutualTlsCarriesMessagesAndSnapshots) {
  Member a(1, 0xc1, 0, With(Mtls("m1"))), b(2, 0xc1, 0, With(Mtls("m2")));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  b.t->AddPeer(1, {Url(a)});
  ExpectConnects(a, b);
  // Thousands of messages in both directions, then a snapshot: the TLS
  // stream must keep full-duplex reads and writes apart.
  constexpr uint64_t kN = 2000;
  for (uint64_t i = 1; i < kN; i += 100) {
    std::vector<raft::Message> ab, ba;
    for (uint64_t k = i; k < i + 100 && k < kN; k++) {
      ab.push_back(App(1, 2, k, 300));
      ba.push_back(App(2, 1, k, 300));
    }
    a.t->Send(std::move(ab));
    b.t->Send(std::move(ba));
    ASSERT_TRUE(WaitFor([&] {
      return b.handler.Count() >= std::min(i + 100, kN) &&
             a.handler.Count() + 1 >= std::min(i + 100, kN);
    }));
  }
  constexpr uint64_t kSnapBytes = 3 * 1024 * 1024 + 17;
  auto payload = std::make_shared<raft::Snapshot>();
  payload->metadata.index = 10;
  payload->metadata.term = 1;
  payload->data = std::to_string(kSnapBytes);
  raft::Message snap;
  snap.type = raft::MessageType::kSnap;
  snap.from = 1;
  snap.to = 2;
  snap.term = 1;
  snap.snapshot = std::move(payload);
  a.t->Send({snap});
  ASSERT_TRUE(WaitFor([&] { return !a.handler.SnapStatus().empty(); }));
  EXPECT_TRUE(a.handler.SnapStatus()[0].second);
  EXPECT_EQ(b.store.bytes(), kSnapBytes);
  EXPECT_EQ(b.store.crc(), TestStore::ExpectedCrc(kSnapBytes));
}

TEST_F(TlsTest, PeerWithCertificateFromAnotherCaIsRefused) {
  LogCapture logs;
  Member a(1, 0xc1, 0, With(Mtls("rogue"))), b(2, 0xc1, 0, With(Mtls("m2")));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  ExpectRefused(a, b, logs, "TLS handshake");
}

TEST_F(TlsTest, PeerWithoutCertificateIsRefused) {
  LogCapture logs;
  TlsOptions none;
  none.trusted_ca_file = F("ca.crt");
  Member a(1, 0xc1, 0,
           [none](Options&o) { o.tls = none; }),  // dials https, no cert
      b(2, 0xc1, 0, With(Mtls("m2")));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  ExpectRefused(a, b, logs, "TLS handshake");
}

TEST_F(TlsTest, PlainDialerToTlsListenerIsRefused) {
  LogCapture logs;
  Member a(1), b(2, 0xc1, 0, With(Mtls("m2")));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {"http://127.0.0.1:" + std::to_string(b.t->port())});
  a.t->Send({App(1, 2, 0)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(2) >= 1; }));
  ASSERT_TRUE(WaitFor([&] { return logs.Contains("TLS handshake"); }));
  EXPECT_EQ(b.handler.Count(), 0u);
}

TEST_F(TlsTest, RevokedCertificateIsRefused) {
  LogCapture logs;
  TlsOptions listener = Mtls("m2");
  listener.crl_file = F("crl.pem");
  Member a(1, 0xc1, 0, With(Mtls("revoked"))), b(2, 0xc1, 0, With(listener));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  ExpectRefused(a, b, logs, "is revoked");
  // A certificate the CRL does not list still gets in.
  Member c(1, 0xc1, 0, With(Mtls("m1")));
  ASSERT_TRUE(c.t->Start().ok());
  ExpectConnects(c, b);
}

TEST_F(TlsTest, AllowedCommonNameIsEnforced) {
  LogCapture logs;
  TlsOptions listener = Mtls("m2");
  listener.allowed_cn = {"m3"};
  Member a(1, 0xc1, 0, With(Mtls("m1"))), b(2, 0xc1, 0, With(listener));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  ExpectRefused(a, b, logs, "CommonName authentication failed");
  Member c(1, 0xc1, 0, With(Mtls("m3")));
  ASSERT_TRUE(c.t->Start().ok());
  ExpectConnects(c, b);
}

TEST_F(TlsTest, AllowedHostnameIsEnforced) {
  LogCapture logs;
  TlsOptions listener = Mtls("m2");
  listener.allowed_hostname = {"localhost"};
  // nosan.crt names only example.org.
  Member a(1, 0xc1, 0, With(Mtls("nosan"))), b(2, 0xc1, 0, With(listener));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  ExpectRefused(a, b, logs, "hostname authentication failed");
  Member c(1, 0xc1, 0, With(Mtls("m1")));
  ASSERT_TRUE(c.t->Start().ok());
  ExpectConnects(c, b);
}

TEST_F(TlsTest, DialerChecksTheListenerNamesTheHostDialled) {
  LogCapture logs;
  // The listener presents nosan.crt (example.org) for 127.0.0.1.
  Member a(1, 0xc1, 0, With(Mtls("m1"))), b(2, 0xc1, 0, With(Mtls("nosan")));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  a.t->AddPeer(2, {Url(b)});
  a.t->Send({App(1, 2, 0)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.Unreachable(2) >= 1; }));
  ASSERT_TRUE(
      WaitFor([&] { return logs.Contains("certificate verify failed"); }));
  EXPECT_EQ(b.handler.Count(), 0u);
}

TEST_F(TlsTest, AutoTlsEncryptsWithoutVerification) {
  std::string dir_a = F("auto-a"), dir_b = F("auto-b");
  ASSERT_TRUE(EnsureSelfSignedCert(dir_a, {"127.0.0.1"}, 1).ok());
  ASSERT_TRUE(EnsureSelfSignedCert(dir_b, {"127.0.0.1"}, 1).ok());
  // A second call keeps the files (etcd reuses them across restarts).
  auto mtime = std::filesystem::last_write_time(dir_a + "/cert.pem");
  ASSERT_TRUE(EnsureSelfSignedCert(dir_a, {"127.0.0.1"}, 1).ok());
  EXPECT_EQ(std::filesystem::last_write_time(dir_a + "/cert.pem"), mtime);
  auto self = [](const std::string& d) {
    TlsOptions t;
    t.cert_file = d + "/cert.pem";
    t.key_file = d + "/key.pem";
    t.self_signed = true;
    return t;
  };
  Member a(1, 0xc1, 0, With(self(dir_a))), b(2, 0xc1, 0, With(self(dir_b)));
  ASSERT_TRUE(a.t->Start().ok());
  ASSERT_TRUE(b.t->Start().ok());
  ExpectConnects(a, b);
  // The generated certificate names the host and is an ECDSA P-256 key.
  FILE* f = std::fopen((dir_a + "/cert.pem").c_str(), "r");
  ASSERT_NE(f, nullptr);
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(cert)), EVP_PKEY_EC);
  X509_free(cert);
}

TEST_F(TlsTest, BadFilesFailStartNamingTheFile) {
  TlsOptions t = Mtls("m1");
  t.key_file = F("m2.key");  // not m1's key
  Member a(1, 0xc1, 0, With(t));
  Status s = a.t->Start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("m2.key"), std::string::npos) << s.message();
  TlsOptions missing = Mtls("m1");
  missing.cert_file = F("nope.crt");
  Member b(1, 0xc1, 0, With(missing));
  s = b.t->Start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("nope.crt"), std::string::npos) << s.message();
}

TEST(CipherSuitesTest, GoNamesMapToOpenSsl) {
  auto r = GoCipherSuitesToOpenSsl(
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
      "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384");
  auto bad = GoCipherSuitesToOpenSsl("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,X");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "unexpected TLS cipher suite \"X\"");
}

}  // namespace
}  // namespace keel::transport
