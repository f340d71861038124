// JWT auth tokens: what `--auth-token jwt,pub-key=...,priv-key=...,
// sign-method=...,ttl=...` makes, with etcd's options and token format, so
// that a token minted by etcd with the same key verifies here and the other
// way round.
//
// A token is base64url(header) "." base64url(claims) "." base64url(sig),
// without padding; header {"alg":"<method>","typ":"JWT"}, claims
// {"exp":<unix s>,"revision":<auth revision>,"username":"<user>"} (keys in
// the order Go's encoding/json writes a map). Sign methods: RS256/384/512,
// PS256/384/512, ES256/384/512 and HS256/384/512 (HMAC keyed by the bytes of
// the priv-key file), as etcd 3.5; EdDSA is refused at startup as etcd 3.5
// refuses it (3.6 added it). A member given only pub-key verifies tokens but
// cannot mint them: Assign fails with etcd's ErrVerifyOnly message.
//
// Verification follows etcd 3.5 (golang-jwt v4): the header's alg must equal
// the configured method, the signature must verify, and exp/nbf/iat, when
// present, must hold (valid while now < exp). Every failure is one error,
// which the auth layer turns into "etcdserver: invalid auth token"; the
// Status message says why, for the log.
//
// The signature arithmetic is OpenSSL's (EVP); this file only frames it.
//
// Info remembers the tokens whose signature it checked (bounded), so that
// a client's later requests cost a lookup instead of a signature check;
// the times (exp) are checked on every use.
//
// Thread safety: Assign and Info may be called from many threads at once
// (the keys are immutable after Make(); the token cache has its own mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace keel::server {

// etcd's messages for the errors an operator or a client may see.
inline constexpr std::string_view kJwtErrVerifyOnly =
    "auth: token signing attempted with verify-only key";
inline constexpr std::string_view kJwtErrMissingKey = "auth: missing key data";
inline constexpr std::string_view kJwtErrKeyMismatch =
    "auth: public and private keys don't match";
inline constexpr std::string_view kJwtErrInvalidAuthMethod =
    "auth: invalid auth signature method";

inline constexpr std::chrono::seconds kJwtDefaultTtl{300};  // etcd: 5m

// The options after "jwt," in --auth-token, as etcd reads them.
struct JwtOptions {
  std::string sign_method;                         // sign-method (required)
  std::string pub_key_file;                        // pub-key
  std::string priv_key_file;                       // priv-key
  std::chrono::milliseconds ttl = kJwtDefaultTtl;  // ttl (Go duration)
};

// Reads sign-method, pub-key, priv-key and ttl from `opts` (the key=value
// pairs of --auth-token after "jwt"). Unknown keys are ignored, as etcd does
// (it logs them; so does this). Does not read the key files.
Result<JwtOptions> ParseJwtOptions(
    const std::map<std::string, std::string>& opts);

// What a valid token says.
struct JwtAuthInfo {
  std::string username;
  uint64_t revision = 0;
};

class JwtTokenProvider {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  // Loads the key files named in `opts`; errors name the file and say what
  // is wrong with it. `clock` (tests) defaults to the system clock.
  static Result<std::unique_ptr<JwtTokenProvider>> Make(const JwtOptions& opts,
                                                        Clock clock = nullptr);
  // ParseJwtOptions then Make.
  static Result<std::unique_ptr<JwtTokenProvider>> Make(
      const std::map<std::string, std::string>& opts, Clock clock = nullptr);

  ~JwtTokenProvider();
  JwtTokenProvider(const JwtTokenProvider&) = delete;
  JwtTokenProvider& operator=(const JwtTokenProvider&) = delete;

  // A signed token for `username` at auth `revision`, expiring after ttl.
  // FailedPrecondition(kJwtErrVerifyOnly) on a pub-key-only member.
  Result<std::string> Assign(std::string_view username,
                             uint64_t revision) const;
  // The claims of a valid token; InvalidArgument (reason in the message)
  // for a malformed, forged, expired or otherwise invalid one.
  Result<JwtAuthInfo> Info(std::string_view token) const;

  bool verify_only() const;
  const std::string& sign_method() const;
  std::chrono::milliseconds ttl() const;

 private:
  struct Impl;
  explicit JwtTokenProvider(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Base64url without padding (RFC 7515 section 2), exposed for tests.
std::string Base64UrlEncode(std::string_view in);
// Refuses padding and characters outside the URL alphabet.
Result<std::string> Base64UrlDecode(std::string_view in);

}  // namespace keel::server
