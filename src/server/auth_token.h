// TokenProvider: how a member hands out and reads the auth tokens that
// clients send (gRPC metadata "token", the gateway's Authorization header),
// as etcd's auth.TokenProvider (auth/store.go, simple_token.go, jwt.go).
//
// `--auth-token` picks the kind: "simple" (the default) or
// "jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>,ttl=<duration>".
// MakeTokenProvider parses it; the jwt kind is built by
// MakeJwtTokenProvider (auth_token_jwt.cc).
//
// How the auth store uses a provider (the contract an implementation keeps):
//  - Authenticate: the API layer checks the password, calls
//    GenTokenPrefix(), and proposes an InternalAuthenticate carrying the
//    prefix. Every member applies it and calls Assign(user, auth_revision,
//    {prefix, raft index}) on the Raft loop thread; the proposing member
//    returns the token its own Assign made. So Assign must be quick (no
//    blocking IO; a signature is fine) and must not fail for a valid user
//    except on a broken key/config (its Status is then the Authenticate
//    error, a gRPC INTERNAL-like failure).
//  - Every client request: Info(token) on a gRPC thread. It returns the
//    user and the auth revision the token is bound to, or an error whose
//    message is etcd's "etcdserver: invalid auth token" (kInvalidAuthToken
//    below). The auth store then refuses the request with etcd's
//    "etcdserver: revision of auth store is old" when the returned revision
//    is older than the current auth revision, and checks the user's
//    permissions against the current roles in any case. A provider whose
//    tokens carry no revision (simple) returns `current_revision`.
//  - Enable()/Disable(): called when auth is turned on/off (apply thread,
//    and at startup if the persisted state is enabled). Disable drops every
//    token the provider keeps (a JWT provider keeps none).
//  - InvalidateUser(user): the user was deleted or its password changed;
//    tokens the provider keeps for it stop working (JWT: nothing to do —
//    etcd's JWT tokens stay valid until expiry, but the auth revision bump
//    of that change makes them "old" anyway).
//
// Thread safety: every method may be called from any thread concurrently.
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

// The message every provider uses for a token it does not accept (the API
// layer turns it into etcd's ErrGRPCInvalidAuthToken, code UNAUTHENTICATED).
inline constexpr const char* kInvalidAuthToken =
    "etcdserver: invalid auth token";
// etcd's ErrInvalidAuthOpts ("auth: invalid auth options"): the message for
// a malformed --auth-token value (MakeTokenProvider and
// MakeJwtTokenProvider return it as InvalidArgument).
inline constexpr const char* kInvalidAuthOpts = "auth: invalid auth options";

struct TokenInfo {
  std::string user;
  uint64_t auth_revision = 0;
};

// What Assign knows of the Authenticate entry being applied.
struct AssignContext {
  std::string simple_token_prefix;  // from GenTokenPrefix() at the proposer
  uint64_t index = 0;               // the Raft index of the entry
};

class TokenProvider {
 public:
  virtual ~TokenProvider() = default;

  // "simple" or "jwt" (for logs).
  virtual std::string_view Kind() const = 0;

  // Called at the proposing member before proposing Authenticate. simple:
  // 16 random letters; jwt: "" (etcd's genTokenPrefix).
  virtual Result<std::string> GenTokenPrefix() = 0;

  // A token for `user`, bound to `auth_revision` (see the header comment).
  virtual Result<std::string> Assign(const std::string& user,
                                     uint64_t auth_revision,
                                     const AssignContext& ctx) = 0;

  // The user and auth revision of `token`; error kInvalidAuthToken
  // (Status::InvalidArgument) when the token is unknown, expired, malformed
  // or its signature does not verify.
  virtual Result<TokenInfo> Info(std::string_view token,
                                 uint64_t current_revision) = 0;

  virtual void Enable() = 0;
  virtual void Disable() = 0;
  virtual void InvalidateUser(const std::string& user) = 0;
};

// --auth-token, parsed: the kind and its "key=value" options, in order
// (etcd's decomposeOpts: a repeated key is an error).
struct TokenOptions {
  std::string kind;                           // "simple" or "jwt"
  std::map<std::string, std::string> params;  // e.g. "sign-method" -> "RS256"
  // --auth-token-ttl: the life of an unused simple token (seconds).
  std::chrono::seconds simple_ttl{300};
};
Result<TokenOptions> ParseTokenOptions(const std::string& spec,
                                       std::chrono::seconds simple_ttl);

// What the simple provider needs from its member.
struct TokenProviderDeps {
  // Waits (bounded by the deadline) until this member applied Raft entry
  // `index`; false on timeout. A simple token ends in the index of the
  // Authenticate entry that made it, so a member that has not applied it
  // yet waits instead of refusing (etcd's indexWaiter). May be empty (no
  // waiting).
  std::function<bool(uint64_t index,
                     std::chrono::steady_clock::time_point deadline)>
      wait_applied;
};

// The provider for --auth-token `spec` (errors: kInvalidAuthOpts, or what
// MakeJwtTokenProvider reports, e.g. an unreadable key file).
Result<std::unique_ptr<TokenProvider>> MakeTokenProvider(
    const std::string& spec, std::chrono::seconds simple_ttl,
    const TokenProviderDeps& deps);

// Implemented in auth_token_jwt.cc (engineer `jwt`). `options.kind` is
// "jwt"; `options.params` holds pub-key, priv-key, sign-method and ttl as
// given (etcd's jwtOptions: sign-method required; ttl a Go duration,
// default 5m; priv-key optional: without it the member only verifies, and
// Assign fails). Errors name what is wrong (etcd's messages where etcd has
// one).
Result<std::unique_ptr<TokenProvider>> MakeJwtTokenProvider(
    const TokenOptions& options);

}  // namespace keel::server
