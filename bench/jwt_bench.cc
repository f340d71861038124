// JWT token cost: Assign (sign, once per Authenticate, on the Raft apply
// thread) and Info (once per authenticated request, on a gRPC thread: the
// first use of a token checks its signature, later uses hit the provider's
// cache), per sign method, with keys of the usual sizes (RSA 2048).
//
//   keel_jwt_bench [--benchmark_filter=ES256]
//
// Keys are generated at startup into a temporary directory, removed at exit.
//
// Thread safety: single-threaded.
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "server/auth_jwt.h"

namespace {

namespace fs = std::filesystem;
using keel::server::JwtTokenProvider;

struct KeyDir {
  fs::path path;
  KeyDir() {
    std::string tmpl = (fs::temp_directory_path() / "keel-jwt-bench-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path = tmpl;
  }
  ~KeyDir() { fs::remove_all(path); }
};

KeyDir& Dir() {
  static KeyDir d;
  return d;
}

std::string WritePrivateKey(const std::string& name, EVP_PKEY* key) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  fs::path p = Dir().path / name;
  std::ofstream(p, std::ios::binary) << std::string(data, n);
  BIO_free(b);
  EVP_PKEY_free(key);
  return p.string();
}

std::string KeyFor(const std::string& method) {
  static std::map<std::string, std::string> files;
  std::string kind = method[0] == 'R' || method[0] == 'P' ? "rsa" : method;
  if (method[0] == 'H') kind = "hmac";
  auto it = files.find(kind);
  if (it != files.end()) return it->second;
  std::string file;
  if (kind == "rsa") {
    file = WritePrivateKey(
        kind, EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  } else if (kind == "hmac") {
    file = (Dir().path / "hmac").string();
    std::ofstream(file) << "0123456789abcdef0123456789abcdef\n";
  } else {
    const char* curve = method == "ES256"   ? "P-256"
                        : method == "ES384" ? "P-384"
                                            : "P-521";
    file =
        WritePrivateKey(kind, EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
  }
  files[kind] = file;
  return file;
}

std::unique_ptr<JwtTokenProvider> Provider(const std::string& method) {
  auto p = JwtTokenProvider::Make(
      {{"sign-method", method}, {"priv-key", KeyFor(method)}});
  if (!p.ok()) std::abort();
  return std::move(*p);
}

void BM_Assign(benchmark::State& state, std::string method) {
  auto p = Provider(method);
  uint64_t rev = 1;
  for (auto _ : state) {
    auto t = p->Assign("alice", rev++);
    benchmark::DoNotOptimize(t);
  }
}

void BM_Info(benchmark::State& state, std::string method) {
  auto p = Provider(method);
  auto token = p->Assign("alice", 7);
  if (!token.ok()) std::abort();
  for (auto _ : state) {
    auto info = p->Info(*token);
    if (!info.ok()) std::abort();
    benchmark::DoNotOptimize(info);
  }
}

// A token's first use: the signature is checked (later uses hit the cache).
void BM_InfoFirstUse(benchmark::State& state, std::string method) {
  auto p = Provider(method);
  uint64_t rev = 1;
  for (auto _ : state) {
    state.PauseTiming();
    auto token = p->Assign("alice", rev++);
    if (!token.ok()) std::abort();
    state.ResumeTiming();
    auto info = p->Info(*token);
    if (!info.ok()) std::abort();
    benchmark::DoNotOptimize(info);
  }
}

const int kRegistered = [] {
  for (const char* m : {"RS256", "PS256", "ES256", "ES384", "ES512", "HS256"}) {
    benchmark::RegisterBenchmark((std::string("Assign/") + m).c_str(),
                                 BM_Assign, std::string(m))
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((std::string("InfoFirstUse/") + m).c_str(),
                                 BM_InfoFirstUse, std::string(m))
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((std::string("InfoAgain/") + m).c_str(),
                                 BM_Info, std::string(m))
        ->Unit(benchmark::kMicrosecond);
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
